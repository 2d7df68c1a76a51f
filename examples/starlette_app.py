"""A Starlette app served by cymongoose's command line (ASGI).

    python -m cymongoose asgi starlette_app:app --listen http://127.0.0.1:8000

The lifespan startup opens a "database" that every request sees through
``request.state``; ``/stream`` streams; ``/ticks`` streams server-sent events until the
client goes; ``/ws`` is a WebSocket echo (it speaks the "echo" subprotocol when asked, and
"bye" closes it with code 4000); ``/old`` redirects; ``/boom`` is a 500.
"""

import asyncio
import contextlib
import itertools
import os

from starlette.applications import Starlette
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    StreamingResponse,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"db": {"greeting": "hello from the lifespan"}}


async def index(request):
    return JSONResponse({"greeting": request.state.db["greeting"], "pid": os.getpid()})


async def echo(request):
    return PlainTextResponse(
        await request.body(), headers={"X-Length": str(len(await request.body()))}
    )


async def stream(request):
    async def numbers():
        for i in range(5):
            yield f"{i}\n"
            await asyncio.sleep(0.01)

    return StreamingResponse(numbers(), media_type="text/plain")


async def ticks(request):
    async def events():  # endless: Starlette stops it when the client disconnects
        for n in itertools.count():
            yield f"data: tick {n}\n\n"
            await asyncio.sleep(0.2)

    return StreamingResponse(events(), media_type="text/event-stream")


async def old(request):
    return RedirectResponse(request.url_for("index"))


async def boom(request):
    raise RuntimeError("an application error: the client gets a 500, the server goes on")


async def ws_echo(websocket: WebSocket):
    asked = websocket.scope["subprotocols"]
    await websocket.accept(subprotocol="echo" if "echo" in asked else None)
    async for message in websocket.iter_text():
        if message == "bye":
            await websocket.close(code=4000, reason="see you")  # an application close code
            return
        await websocket.send_text(message)


app = Starlette(
    routes=[
        Route("/", index, name="index"),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        Route("/ticks", ticks),
        Route("/old", old),
        Route("/boom", boom),
        WebSocketRoute("/ws", ws_echo),
    ],
    lifespan=lifespan,
)
