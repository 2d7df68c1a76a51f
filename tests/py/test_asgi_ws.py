"""cymongoose.asgi WebSocket (SPEC 1.13, ASGI WebSocket spec), against the `websockets`
client: accept with subprotocol and headers, text and bytes, close codes both ways,
websocket.disconnect with the client's close code, close before accept (403), and accepting
after the app awaited something (the upgrade answered later, with a copy of the request)."""

from __future__ import annotations

import asyncio

import pytest
from ws_peers import UPGRADE_REQUEST

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
    assert seen["disconnect"] == 4001  # the client echoed our close code (RFC 6455 5.5.1)


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


# ---- accepting after the app awaited something (the upgrade answered later) ----------------


def _late_echo_app(wait):
    """An app that awaits `wait()` before it accepts (sleep, an auth lookup), then echoes
    until the client leaves; returns the list its disconnect codes go into."""
    codes = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        if not await wait(scope):
            await send({"type": "websocket.close", "code": 1008})
            return
        accept = {"type": "websocket.accept", "subprotocol": "chat", "headers": [(b"x-late", b"1")]}
        await send(accept)
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                codes.append(m["code"])
                return
            await send({"type": "websocket.send", "text": "echo:" + m["text"]})

    return app, codes


async def _sleep(scope):
    await asyncio.sleep(0.05)
    return True


async def _auth(scope):
    """A fake async auth check: a lookup answered from another task, as a database is."""
    fut = asyncio.get_running_loop().create_future()
    ok = scope["query_string"] == b"token=ok"
    asyncio.get_running_loop().call_later(0.02, fut.set_result, ok)
    return await fut


@pytest.mark.parametrize("wait", [_sleep, _auth], ids=["sleep", "auth"])
def test_accept_after_an_await(wait):
    app, codes = _late_echo_app(wait)

    async def client(url):
        async with connect(url + "/chat?token=ok", subprotocols=["chat"]) as ws:
            assert ws.subprotocol == "chat" and ws.response.headers["x-late"] == "1"
            await ws.send("one")
            first = await ws.recv()
            await ws.send("two")
            return first, await ws.recv()

    assert run(app, client) == ("echo:one", "echo:two")


def test_refusal_after_an_await_is_403():
    app, _ = _late_echo_app(_auth)

    async def client(url):
        with pytest.raises(websockets.InvalidStatus) as err:
            async with connect(url + "/chat?token=bad"):
                pass
        return err.value.response.status_code

    assert run(app, client) == 403


@pytest.mark.parametrize("ending", ["return", "raise"])
def test_app_ending_after_an_await_without_accepting(ending):
    """Returning without accepting is a 403 (as uvicorn answers), failing a 500."""

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await asyncio.sleep(0.01)
        if ending == "raise":
            raise ValueError("no database")

    async def client(url):
        with pytest.raises(websockets.InvalidStatus) as err:
            async with connect(url):
                pass
        return err.value.response.status_code

    errors = []

    async def main():
        server = ASGIServer(app, error_handler=errors.append)
        port = (await server.start("http://127.0.0.1:0")).local_addr[1]
        try:
            return await asyncio.wait_for(client(f"ws://127.0.0.1:{port}"), 20)
        finally:
            await server.stop()

    assert asyncio.run(main()) == (403 if ending == "return" else 500)
    assert [type(e) for e in errors] == ([] if ending == "return" else [ValueError])


def test_client_gone_before_the_late_accept():
    """The client leaves while the app waits: the app hears websocket.disconnect (1006),
    its accept afterwards is no error, and nothing is answered."""
    seen = asyncio.Queue()

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        m = await receive()  # nothing can come before accept but the disconnect
        await send({"type": "websocket.accept"})
        with pytest.raises(OSError):
            await send({"type": "websocket.send", "text": "too late"})
        seen.put_nowait(m)

    async def client(url):
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(UPGRADE_REQUEST)
        await writer.drain()
        writer.close()
        return await asyncio.wait_for(seen.get(), 10)

    assert run(app, client) == {"type": "websocket.disconnect", "code": 1006}


@pytest.mark.parametrize("how", [1000, 4001, 1006])
def test_disconnect_carries_the_client_close_code(how):
    """websocket.disconnect reports the code of the client's close frame, 1006 when the
    connection dropped without one (the ASGI spec; uvicorn does the same)."""
    got = asyncio.Queue()

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await asyncio.sleep(0)  # a late accept, as well
        await send({"type": "websocket.accept"})
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                got.put_nowait(m["code"])
                return
            await send({"type": "websocket.send", "text": m["text"]})

    async def client(url):
        ws = await connect(url)
        await ws.send("ping")
        assert await ws.recv() == "ping"
        if how == 1006:
            ws.transport.abort()  # TCP gone, no close frame
        else:
            await ws.close(code=how)
        return await asyncio.wait_for(got.get(), 10)

    assert run(app, client) == how


def test_starlette_dependency_before_accept():
    """A Starlette endpoint that awaits an async check (what an auth dependency does)
    before websocket.accept: accepted with a good token, refused (403) without one."""
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def current_user(ws: WebSocket):
        await asyncio.sleep(0.01)  # a database lookup
        return "alice" if ws.query_params.get("token") == "ok" else None

    async def endpoint(ws: WebSocket):
        user = await current_user(ws)
        if user is None:
            await ws.close(code=1008)
            return
        await ws.accept()
        name = await ws.receive_text()
        await ws.send_text(f"hello {name}, you are {user}")
        await ws.close()

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])

    async def client(url):
        async with connect(url + "/ws?token=ok") as ws:
            await ws.send("bob")
            greeting = await ws.recv()
        with pytest.raises(websockets.InvalidStatus) as err:
            async with connect(url + "/ws"):
                pass
        return greeting, err.value.response.status_code

    assert run(app, client) == ("hello bob, you are alice", 403)
