"""cymongoose.asgi WebSocket (SPEC 1.13, ASGI WebSocket spec), against the `websockets`
client: accept with subprotocol and headers, text and bytes, close codes both ways,
websocket.disconnect, close before accept (403)."""

from __future__ import annotations

import asyncio

import pytest

from cymongoose import Connection
from cymongoose.asgi import ASGIServer

if not hasattr(Connection, "ws_upgrade"):
    pytest.skip("WebSocket is not in this build", allow_module_level=True)
websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402


def run(app, client):
    async def main():
        server = ASGIServer(app)
        port = (await server.start("http://127.0.0.1:0")).local_addr[1]
        try:
            return await asyncio.wait_for(client(f"ws://127.0.0.1:{port}"), 20)
        finally:
            await server.stop()

    return asyncio.run(main())


def test_accept_echo_and_server_close_code():
    seen = {}

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        seen["scope"] = scope
        assert (await receive())["type"] == "websocket.connect"
        await send(
            {"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x-hi", b"there")]}
        )
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                seen["disconnect"] = m["code"]
                return
            if m.get("text") == "bye":
                await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
                continue
            if m.get("text") is not None:
                await send({"type": "websocket.send", "text": m["text"].upper()})
            else:
                await send({"type": "websocket.send", "bytes": m["bytes"][::-1]})

    async def client(url):
        async with connect(url + "/chat?room=1", subprotocols=["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"
            assert ws.response.headers["x-hi"] == "there"
            await ws.send("héllo")
            text = await ws.recv()
            await ws.send(b"\x00\x01\x02")
            data = await ws.recv()
            await ws.send("bye")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return text, data, closed.value.rcvd.code, closed.value.rcvd.reason

    assert run(app, client) == ("HÉLLO", b"\x02\x01\x00", 4001, "asked")
    s = seen["scope"]
    assert (s["type"], s["path"], s["query_string"], s["scheme"]) == (
        "websocket",
        "/chat",
        b"room=1",
        "ws",
    )
    assert s["subprotocols"] == ["chat", "other"]
    assert seen["disconnect"] == 1000


def test_client_close_reaches_the_app():
    got = asyncio.Queue()

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                got.put_nowait(m)
                return

    async def client(url):
        async with connect(url) as ws:
            await ws.close(code=1000, reason="done")
        return await asyncio.wait_for(got.get(), 10)

    assert run(app, client)["type"] == "websocket.disconnect"


def test_close_before_accept_is_403():
    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.close"})

    async def client(url):
        with pytest.raises(websockets.InvalidStatus) as err:
            async with connect(url):
                pass
        return err.value.response.status_code

    assert run(app, client) == 403


def test_app_returning_closes_with_1000():
    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "only"})

    async def client(url):
        async with connect(url) as ws:
            first = await ws.recv()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            return first, closed.value.rcvd.code

    assert run(app, client) == ("only", 1000)
