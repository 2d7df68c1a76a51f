"""Hello-world ASGI app on uvicorn with httptools and uvloop (a peer).

python uvicorn_hello.py PORT
"""

import sys

import uvicorn

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


def main() -> None:
    port = int(sys.argv[1])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=300,  # the idle-connection test holds them open
        backlog=4096,
    )


if __name__ == "__main__":
    main()
