"""A Starlette app served by cymongoose's command line (ASGI).

    python -m cymongoose asgi starlette_app:app --listen http://127.0.0.1:8000

The lifespan startup opens a "database" that every request sees through
``request.state``; ``/stream`` streams; ``/ws`` is a WebSocket echo (once WebSocket is
in the build).
"""

import asyncio
import contextlib
import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
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


async def ws_echo(websocket: WebSocket):
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(message)


app = Starlette(
    routes=[
        Route("/", index),
        Route("/echo", echo, methods=["POST"]),
        Route("/stream", stream),
        WebSocketRoute("/ws", ws_echo),
    ],
    lifespan=lifespan,
)
