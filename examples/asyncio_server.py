"""An asyncio program using AsyncManager: an HTTP server whose handler hands work to
asyncio coroutines and answers from a timer on the poll thread.

    python examples/asyncio_server.py [PORT]     # then: curl http://127.0.0.1:8000/
"""

import asyncio
import sys

from cymongoose import MG_EV_HTTP_MSG, AsyncManager


async def main(port: int, seconds: float) -> None:
    answered = asyncio.Event()

    async def note(uri: str) -> None:  # runs on the asyncio loop
        print(f"asyncio saw a request for {uri}", flush=True)
        answered.set()

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:  # runs on the poll thread
            am.schedule(note(data.uri))
            # Reentrant: calling am.timer_add from a handler does not deadlock.
            am.timer_add(10, lambda: conn.reply(200, "hello from AsyncManager\n"))

    async with AsyncManager(handler) as am:
        listener = am.listen(f"http://127.0.0.1:{port}")
        print(f"listening on http://127.0.0.1:{listener.local_addr[1]}", flush=True)
        try:
            await asyncio.wait_for(answered.wait(), seconds)
            await asyncio.sleep(0.2)  # the reply leaves
        except asyncio.TimeoutError:
            pass


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 8000,
            float(sys.argv[2]) if len(sys.argv) > 2 else 3600,
        )
    )
