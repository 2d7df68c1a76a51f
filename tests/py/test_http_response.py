"""Connection.http_response(): the response writer of the WSGI/ASGI servers."""

from __future__ import annotations

import socket
import threading

import pytest

from cymongoose import MG_EV_HTTP_MSG, Manager

CASES = {
    "/whole": lambda c: c.http_response(
        201, [(b"set-cookie", b"a=1"), ("Set-Cookie", "b=2")], b"hi"
    ),
    "/given": lambda c: c.http_response(200, [(b"content-length", b"2")], b"ok"),
    "/empty": lambda c: c.http_response(204, [], b""),
    "/stream": lambda c: (
        c.http_response(200, [], None),
        c.send(b"3\r\nabc\r\n0\r\n\r\n"),
        c.http_end(),
    ),
    "/latin": lambda c: c.http_response(200, [("X-Name", "caf\xe9")], b""),
    "/head": lambda c: c.http_response(200, [], b"body", True),
}


def exchange(raw: bytes) -> bytes:
    results = {}

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            uri = data.uri
            try:
                results[uri] = CASES[uri](conn)
            except Exception as exc:  # noqa: BLE001
                results[uri] = exc
                conn.reply(599, b"")

    with Manager(handler) as m:
        port = m.listen("http://127.0.0.1:0").local_addr[1]
        got = bytearray()

        def client():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(raw)
                s.shutdown(socket.SHUT_WR)
                while chunk := s.recv(65536):
                    got.extend(chunk)

        t = threading.Thread(target=client)
        t.start()
        for _ in range(1000):
            if not t.is_alive():
                break
            m.poll(10)
        t.join(10)
    exchange.results = results  # type: ignore[attr-defined]
    return bytes(got)


def test_whole_response_keeps_duplicates_and_adds_length():
    out = exchange(b"GET /whole HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out == (
        b"HTTP/1.1 201 Created\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert exchange.results["/whole"] == 0  # type: ignore[attr-defined]


def test_given_length_is_not_repeated_204_has_none_and_head_has_no_body():
    out = exchange(
        b"GET /given HTTP/1.1\r\nHost: x\r\n\r\nGET /empty HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /latin HTTP/1.1\r\nHost: x\r\n\r\nHEAD /head HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert out.lower().count(b"content-length") == 3  # /given's own, /latin, /head; not 204
    assert b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" in out
    assert b"HTTP/1.1 204 No Content\r\n\r\n" in out
    assert b"X-Name: caf\xe9\r\n" in out  # str headers are Latin-1
    assert out.endswith(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")  # HEAD: no body


def test_stream_head_is_chunked():
    out = exchange(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    assert exchange.results["/stream"][0] == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "bad", [[(b"x", b"a\r\nInjected: 1")], [(b"x\n", b"a")], [(b"x", b"a\x00")]]
)
def test_header_injection_is_refused(bad):
    CASES["/bad"] = lambda c: c.http_response(200, bad, b"")
    try:
        out = exchange(b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        del CASES["/bad"]
    assert isinstance(exchange.results["/bad"], ValueError)  # type: ignore[attr-defined]
    assert b"Injected" not in out and out.startswith(b"HTTP/1.1 599")
