"""Hello-world ASGI app: the same app under `python -m cymongoose asgi` and under uvicorn
(bench/adapters.py)."""

BODY = b'{"hello":"world"}'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"17")],
}
END = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] != "http":  # lifespan: nothing to set up
        return
    await send(START)
    await send(END)
