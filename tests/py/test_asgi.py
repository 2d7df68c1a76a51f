"""cymongoose.asgi (SPEC 1.13): scope, body pieces, streaming, disconnect, lifespan, 500."""

from __future__ import annotations

import asyncio
import http.client
import socket

import pytest

from cymongoose.asgi import ASGIServer


def fetch(port: int, method: str, path: str, body: bytes | None = None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        c.close()


def run_with(app, client, **kw):
    """Start `app`, run the blocking `client(port)` in a thread, stop; returns its result."""

    async def main():
        server = ASGIServer(app, **kw)
        listener = await server.start("http://127.0.0.1:0")
        try:
            return await asyncio.wait_for(asyncio.to_thread(client, listener.local_addr[1]), 30)
        finally:
            await server.stop()

    return asyncio.run(main())


def test_scope_body_pieces_and_lifespan_state():
    events = []
    scopes = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                m = await receive()
                events.append(m["type"])
                if m["type"] == "lifespan.startup":
                    scope["state"]["db"] = "open"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        scopes.append(scope)
        pieces = []
        while True:
            m = await receive()
            pieces.append(len(m["body"]))
            if not m["more_body"]:
                break
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"x-a", b"1"), (b"x-a", b"2")],
            }
        )
        await send(
            {
                "type": "http.response.body",
                "body": b"%d:%s" % (len(pieces), scope["state"]["db"].encode()),
            }
        )

    body = b"q" * 200_000
    status, headers, got = run_with(app, lambda port: fetch(port, "POST", "/p%20q?z=1", body))
    assert status == 201 and got == b"4:open"  # 200 000 bytes in 64 KiB pieces
    assert [v for k, v in headers if k.lower() == "x-a"] == ["1", "2"]
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    s = scopes[0]
    assert (s["type"], s["method"], s["path"], s["raw_path"], s["query_string"]) == (
        "http",
        "POST",
        "/p q",
        b"/p%20q",
        b"z=1",
    )
    assert s["asgi"]["version"] == "3.0" and s["http_version"] == "1.1" and s["scheme"] == "http"
    assert s["client"][0] == "127.0.0.1" and s["server"][1] > 0
    assert (b"content-length", b"200000") in s["headers"]


def test_streaming_head_and_500():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return  # no lifespan: tolerated
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(100):
            await send({"type": "http.response.body", "body": b"%d;" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})

    errors = []

    def client(port):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        out = []
        for method, path in (("GET", "/s"), ("HEAD", "/s"), ("GET", "/boom"), ("GET", "/s")):
            c.request(method, path)
            r = c.getresponse()
            out.append((r.status, r.getheader("transfer-encoding"), r.read()))
        c.close()
        return out

    out = run_with(app, client, error_handler=errors.append)
    expected = b"".join(b"%d;" % i for i in range(100)) + b"end"
    assert out[0] == (200, "chunked", expected)
    assert out[1][0] == 200 and out[1][2] == b""
    assert out[2][0] == 500
    assert out[3] == (200, "chunked", expected)
    assert [str(e) for e in errors] == ["boom"]


def test_head_of_a_streamed_response_then_the_next_request():
    """HEAD of a streamed response: the head says chunked as GET's would, and nothing
    follows it, not even the last chunk, or the next response on the connection would
    start with "0" (http.client closes after HEAD, so it cannot see this: raw socket)."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"piece", "more_body": True})
        await send({"type": "http.response.body", "body": b"end"})

    def client(port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"HEAD /s HTTP/1.1\r\nHost: h\r\n\r\n")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += c.recv(1)
            c.sendall(b"GET /s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            rest = b""
            while chunk := c.recv(65536):
                rest += chunk
        return head, rest

    head, rest = run_with(app, client)
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head
    assert rest.startswith(b"HTTP/1.1 200")
    assert rest.endswith(b"\r\n\r\n5\r\npiece\r\n3\r\nend\r\n0\r\n\r\n")


def test_http_disconnect_reaches_the_app():
    got = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()  # the (empty) body
        got.append((await receive())["type"])  # waits until the client leaves

    def client(port):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
        for _ in range(500):
            if got:
                break
            import time

            time.sleep(0.01)

    run_with(app, client)
    assert got == ["http.disconnect"]


def test_lifespan_startup_failure_stops_start():
    async def app(scope, receive, send):
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    async def main():
        server = ASGIServer(app)
        with pytest.raises(RuntimeError, match="ASGI lifespan startup failed: no database"):
            await server.start("http://127.0.0.1:0")

    asyncio.run(main())


def test_back_pressure_bounds_the_send_buffer():
    """A client that does not read: the app's send() waits instead of growing the buffer."""
    high = []
    sent = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(400):  # 400 x 64 KiB = 25 MiB if nothing held it back
            await send({"type": "http.response.body", "body": b"b" * 65536, "more_body": True})
            sent.append(1)
        await send({"type": "http.response.body", "body": b""})

    async def main():
        server = ASGIServer(app)
        port = (await server.start("http://127.0.0.1:0")).local_addr[1]
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ in range(100):
            await asyncio.sleep(0.01)
            high.append(max((c.send_len for c in server.manager.connections), default=0))
        stalled = len(sent)
        s.close()
        await server.stop()
        return stalled

    stalled = asyncio.run(main())
    assert stalled < 400
    assert max(high) < 4 << 20
