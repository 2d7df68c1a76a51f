"""A response after which the server closes says ``Connection: close`` (RFC 9112 9.6),
whichever writer made its head: reply(), serve_file()/serve_dir() (200, 304, listing),
http_response() (whole and streamed), the WSGI and the ASGI servers; once only when
the application gave a Connection field itself; never on a connection that stays."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from cymongoose import MG_EV_HTTP_MSG, Manager
from cymongoose.asgi import ASGIServer
from cymongoose.wsgi import WSGIServer

CLOSE_11 = "GET {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"
CLOSE_10 = "GET {uri} HTTP/1.0\r\n{extra}\r\n"
KEEP_10 = "GET {uri} HTTP/1.0\r\nConnection: keep-alive\r\n{extra}\r\n"
KEEP_11 = "GET {uri} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"


def read_all(port: int, raw: bytes, until_close: bool) -> bytes:
    """Send `raw`; read until EOF (`until_close`) or until a whole response is in."""
    got = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        while chunk := s.recv(65536):
            got.extend(chunk)
            if not until_close and complete(bytes(got)):
                break
    return bytes(got)


def complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    fields = head.lower().split(b"\r\n")
    for f in fields:
        if f.startswith(b"content-length:"):
            return len(body) >= int(f.split(b":", 1)[1])
    if b"transfer-encoding: chunked" in fields:
        return body.endswith(b"0\r\n\r\n")
    return True


def connection_fields(resp: bytes) -> list[bytes]:
    head = resp.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 "), resp[:80]
    return [f for f in head.split(b"\r\n")[1:] if f.lower().startswith(b"connection:")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "a.txt").write_text("hello\n")
    (root / "sub").mkdir()
    (root / "sub" / "b.txt").write_text("b\n")
    return root


def handler_for(root):
    def handler(conn, ev, hm):
        if ev != MG_EV_HTTP_MSG:
            return
        uri = hm.uri
        if uri == "/reply":
            conn.reply(200, b"ok")
        elif uri == "/reply-own":
            conn.reply(200, b"ok", {"Connection": "close"})
        elif uri == "/reply-keep":
            conn.reply(200, b"ok", {"connection": "keep-alive"})
        elif uri == "/file":
            conn.serve_file(hm, str(root / "a.txt"))
        elif uri == "/file-own":
            conn.serve_file(hm, str(root / "a.txt"), extra_headers="Connection: close\r\n")
        elif uri == "/resp":
            conn.http_response(200, [(b"x-a", b"1")], b"whole")
        elif uri == "/resp-own":
            conn.http_response(200, [(b"connection", b"close")], b"whole")
        elif uri == "/resp-stream":
            conn.http_response(200, [], None)
            conn.send(b"3\r\nabc\r\n0\r\n\r\n")
            conn.http_end()
        else:
            conn.serve_dir(hm, str(root))  # /a.txt, /sub/ (listing), 304 with If-None-Match

    return handler


def run_manager(root, requests: list[tuple[str, bool]]) -> list[bytes]:
    """Each (raw request, closes) on its own connection; the responses in order."""
    out: list[bytes] = []
    with Manager(handler_for(root)) as m:
        port = m.listen("http://127.0.0.1:0").local_addr[1]

        def client():
            for raw, closes in requests:
                out.append(read_all(port, raw.encode(), closes))

        t = threading.Thread(target=client)
        t.start()
        for _ in range(3000):
            if not t.is_alive():
                break
            m.poll(10)
        t.join(10)
    assert len(out) == len(requests)
    return out


URIS = ["/reply", "/file", "/resp", "/resp-stream", "/a.txt", "/sub/"]


@pytest.mark.parametrize("form", [CLOSE_11, CLOSE_10], ids=["http11-close", "http10"])
def test_closing_request_gets_connection_close(files, form):
    resps = run_manager(files, [(form.format(uri=u, extra=""), True) for u in URIS])
    for uri, resp in zip(URIS, resps, strict=True):
        assert connection_fields(resp) == [b"Connection: close"], (uri, resp[:300])


def test_not_modified_says_close_too(files):
    first = run_manager(files, [(KEEP_11.format(uri="/a.txt", extra=""), False)])[0]
    etag = next(f for f in first.split(b"\r\n") if f.lower().startswith(b"etag:"))
    req = CLOSE_11.format(uri="/a.txt", extra=f"If-None-Match: {etag[5:].strip().decode()}\r\n")
    resp = run_manager(files, [(req, True)])[0]
    assert resp.startswith(b"HTTP/1.1 304 ")
    assert connection_fields(resp) == [b"Connection: close"]


def test_own_connection_field_is_not_doubled(files):
    cases = ["/reply-own", "/file-own", "/resp-own", "/reply-keep"]
    resps = run_manager(files, [(CLOSE_11.format(uri=u, extra=""), True) for u in cases])
    assert [len(connection_fields(r)) for r in resps] == [1, 1, 1, 1]
    assert connection_fields(resps[3])[0].lower() == b"connection: keep-alive"


@pytest.mark.parametrize("form", [KEEP_11, KEEP_10], ids=["http11", "http10-keep-alive"])
def test_kept_connection_has_no_close(files, form):
    resps = run_manager(files, [(form.format(uri=u, extra=""), False) for u in URIS])
    for uri, resp in zip(URIS, resps, strict=True):
        assert connection_fields(resp) == [], (uri, resp[:300])


def wsgi_app(environ, start_response):
    own = environ["PATH_INFO"] == "/own"
    extra = [("Connection", "close")] if own else []
    start_response("200 OK", [("Content-Type", "text/plain"), *extra])
    if environ["PATH_INFO"] == "/stream":
        return iter([b"a", b"b"])
    return [b"ok"]


@pytest.mark.parametrize(
    ("form", "want"),
    [(CLOSE_11, 1), (CLOSE_10, 1), (KEEP_11, 0), (KEEP_10, 0)],
    ids=["http11-close", "http10", "http11", "http10-keep-alive"],
)
def test_wsgi(form, want):
    server = WSGIServer(wsgi_app, workers=1)
    port = server.listen("http://127.0.0.1:0").local_addr[1]
    t = threading.Thread(target=server.run, kwargs={"poll_ms": 20}, daemon=True)
    t.start()
    try:
        for uri in ("/", "/own", "/stream"):
            # HTTP/1.0 keep-alive streams without framing: the end of the body is the
            # close, which the head then announces (the one exception to `want`).
            unframed = form is KEEP_10 and uri == "/stream"
            resp = read_all(port, form.format(uri=uri, extra="").encode(), want == 1 or unframed)
            expect = 1 if want or uri == "/own" or unframed else 0
            assert len(connection_fields(resp)) == expect, (uri, resp)
    finally:
        server.stop()
        t.join(15)


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    own = scope["path"] == "/own"
    headers = [(b"content-type", b"text/plain")] + ([(b"connection", b"close")] if own else [])
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["path"] == "/stream":
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    ("form", "want"),
    [(CLOSE_11, 1), (CLOSE_10, 1), (KEEP_11, 0)],
    ids=["http11-close", "http10", "http11"],
)
def test_asgi(form, want):
    def client(port):
        out = []
        for uri in ("/", "/own", "/stream"):
            resp = read_all(port, form.format(uri=uri, extra="").encode(), want == 1)
            out.append((uri, resp))
        return out

    async def main():
        server = ASGIServer(asgi_app)
        listener = await server.start("http://127.0.0.1:0")
        try:
            return await asyncio.wait_for(asyncio.to_thread(client, listener.local_addr[1]), 30)
        finally:
            await server.stop()

    for uri, resp in asyncio.run(main()):
        expect = 1 if want or uri == "/own" else 0
        assert len(connection_fields(resp)) == expect, (uri, resp)
