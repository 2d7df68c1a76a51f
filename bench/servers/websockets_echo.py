"""WebSocket echo server on the `websockets` library (asyncio), the peer.

    python websockets_echo.py PORT

Echoes each message back; no compression (the load client offers none).
Stops on SIGTERM/SIGINT.
"""

import asyncio
import signal
import sys

from websockets.asyncio.server import serve


async def echo(ws) -> None:
    async for msg in ws:
        await ws.send(msg)


async def main(port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(echo, "127.0.0.1", port, compression=None, max_size=None):
        await stop


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
