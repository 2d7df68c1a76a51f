"""Streaming responses and the response-finished call (SPEC 1.5, 2.5.3, Decision 5):
http_chunk / http_sse wire format, http_end() after raw send()s letting pipelined
requests through, deferred chunks from a timer, HEAD, argument checks, and the
signatures of the HTTP methods of Connection."""

from __future__ import annotations

import inspect
import time

import pytest
from conftest import HttpReader, listen_free, raw_connect, recv_exact, recv_until_eof, serve

from cymongoose import MG_EV_HTTP_MSG, Connection

pytestmark = pytest.mark.timeout(60)

CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def start(make_manager, handler, **kw):
    mgr = make_manager()
    _, port = listen_free(mgr, handler=handler, **kw)
    return mgr, port


def exchange(port, request: bytes, nbytes: int, timeout: float = 5.0) -> bytes:
    s = raw_connect(port)
    try:
        s.sendall(request)
        return recv_exact(s, nbytes, timeout)
    finally:
        s.close()


def test_http_chunk_wire_format(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.send(CHUNKED_HEAD)
            conn.http_chunk("abc")
            conn.http_chunk(b"z" * 26)
            conn.http_chunk(bytearray(b"\x00\r\n"))
            conn.http_chunk(memoryview(b"mv"))
            conn.http_chunk("é")  # str: UTF-8
            conn.http_chunk(b"")

    want = (CHUNKED_HEAD + b"3\r\nabc\r\n1a\r\n" + b"z" * 26 + b"\r\n3\r\n\x00\r\n\r\n"
            b"2\r\nmv\r\n2\r\n\xc3\xa9\r\n0\r\n\r\n")
    mgr, port = start(make_manager, handler)
    with serve(mgr):
        got = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", len(want))
    assert got == want


def test_http_sse_wire_format(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.send(CHUNKED_HEAD)
            conn.http_sse("tick", "1")
            conn.http_sse("multi", "a\r\nb\nc\rd")  # every line break starts a data: line
            conn.http_sse("bytes", b"raw")
            conn.http_sse("", "")
            conn.http_chunk(b"")

    payloads = [b"event: tick\ndata: 1\n\n",
                b"event: multi\ndata: a\ndata: b\ndata: c\ndata: d\n\n",
                b"event: bytes\ndata: raw\n\n",
                b"event: \ndata: \n\n"]
    want = CHUNKED_HEAD + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in payloads) + b"0\r\n\r\n"
    mgr, port = start(make_manager, handler)
    with serve(mgr):
        got = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", len(want))
    assert got == want


def test_http_sse_event_type_checked_before_sending(make_manager):
    errors = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            for bad in ("a\nb", "a\rb", "a\x00b"):
                try:
                    conn.http_sse(bad, "x")
                except ValueError as exc:
                    errors.append(str(exc))
            for args in ((b"bytes", "x"), ("t", 5)):
                try:
                    conn.http_sse(*args)
                except TypeError as exc:
                    errors.append(type(exc).__name__)
            errors.append(conn.send_len)  # nothing was queued
            conn.reply(200, "ok")

    mgr, port = start(make_manager, handler)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            resp = HttpReader(s).read_response()
        finally:
            s.close()
    assert resp.endswith(b"ok")
    assert all(e.startswith("SSE event type contains illegal character") for e in errors[:3])
    assert errors[3:] == ["TypeError", "TypeError", 0]


def test_http_end_after_raw_sends_lets_pipelined_requests_through(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            body = data.uri.encode()
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
            conn.send(body)
            conn.http_end()

    mgr, port = start(make_manager, handler)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"".join(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
            reader = HttpReader(s)
            bodies = [reader.read_response().partition(b"\r\n\r\n")[2] for _ in range(5)]
        finally:
            s.close()
    assert bodies == [b"/r0", b"/r1", b"/r2", b"/r3", b"/r4"]


def test_without_http_end_the_next_request_waits(make_manager):
    """The raw response alone does not finish the response; http_end() (here called
    later, from a timer) does, and the waiting request is then answered."""
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            body = data.uri.encode()
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            if data.uri == "/first":
                mgr.timer_add(400, conn.http_end)
            else:
                conn.http_end()

    mgr, port = start(make_manager, handler)
    with serve(mgr):
        s = raw_connect(port)
        try:
            t0 = time.monotonic()
            s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = HttpReader(s)
            assert reader.read_response().endswith(b"/first")
            assert reader.read_response(0.2) is None  # held back ...
            assert reader.read_response(5).endswith(b"/second")  # ... until http_end()
            assert time.monotonic() - t0 >= 0.35
        finally:
            s.close()


def test_http_end_applies_connection_close(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.http_end()

    mgr, port = start(make_manager, handler)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data, eof = recv_until_eof(s, timeout=3)
        finally:
            s.close()
    assert eof and data.endswith(b"\r\n\r\nok")


def test_chunks_from_a_timer_then_pipelined_request(make_manager):
    def handler(conn, ev, data):
        if ev != MG_EV_HTTP_MSG:
            return
        if data.uri == "/stream":
            conn.send(CHUNKED_HEAD)
            left = [3]

            def tick():
                if left[0] == 0:
                    conn.http_chunk(b"")
                    timer.cancel()
                    return
                conn.http_sse("n", str(left[0]))
                left[0] -= 1

            timer = mgr.timer_add(30, tick, repeat=True)
        else:
            conn.reply(200, "after")

    mgr, port = start(make_manager, handler)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            deadline = time.monotonic() + 5
            while not data.endswith(b"after") and time.monotonic() < deadline:
                s.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
    stream, _, rest = data.partition(b"0\r\n\r\n")
    for n in (3, 2, 1):
        assert b"event: n\ndata: %d\n\n" % n in stream
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"after")


def test_head_with_chunks_sends_the_head_only(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.send(CHUNKED_HEAD)
            conn.http_chunk("body")
            conn.http_sse("e", "d")
            conn.http_chunk(b"")

    mgr, port = start(make_manager, handler)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            want = CHUNKED_HEAD + CHUNKED_HEAD + b"4\r\nbody\r\n"
            got = recv_exact(s, len(want))
        finally:
            s.close()
    assert got == want


def test_streaming_methods_on_closed_and_closing_connections(make_manager):
    seen = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            try:
                conn.http_chunk(42)
            except TypeError:
                seen.append("TypeError")
            conn.close()
            conn.http_chunk("ignored")  # closing: dropped, no error
            conn.http_sse("e", "ignored")
            conn.http_end()
            conn.http_basic_auth("u", "p")
            seen.append(conn)

    mgr, port = start(make_manager, handler)
    with serve(mgr):
        s = raw_connect(port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, eof = recv_until_eof(s, timeout=3)
        s.close()
        assert eof and data == b""
        time.sleep(0.05)
    mgr.poll(10)
    assert seen[0] == "TypeError"
    conn = seen[1]
    for call in (lambda: conn.http_chunk("x"), lambda: conn.http_sse("e", "d"),
                 conn.http_end, conn.resolve_cancel, lambda: conn.http_basic_auth("u", "p")):
        with pytest.raises(RuntimeError, match="closed"):
            call()


def test_signatures():
    def params(name):
        return list(inspect.signature(getattr(Connection, name)).parameters)

    assert params("serve_dir") == ["self", "message", "root_dir", "extra_headers", "mime_types",
                                   "page404"]
    assert params("serve_file") == ["self", "message", "path", "extra_headers", "mime_types"]
    assert params("http_chunk") == ["self", "data"]
    assert params("http_sse") == ["self", "event_type", "data"]
    assert params("http_end") == ["self"]
    assert params("resolve") == ["self", "url"]
    assert params("resolve_cancel") == ["self"]
    assert params("http_basic_auth") == ["self", "username", "password"]
    sig = inspect.signature(Connection.serve_dir)
    assert sig.parameters["extra_headers"].default == ""
    assert sig.parameters["page404"].default == ""
