"""Hello-world aiohttp.web server on asyncio's default event loop (a peer).

python aiohttp_hello.py PORT
"""

import sys

from aiohttp import web

BODY = b'{"hello":"world"}'


async def hello(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_get("/", hello)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        keepalive_timeout=300,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
