"""A small HTTP server on cymongoose: one event loop, one handler, a worker thread.

    python examples/http_server.py            # http://127.0.0.1:8000
    PORT=9000 python examples/http_server.py  # another port (0: any free port)
    HOST=0.0.0.0 PORT=8080 python examples/http_server.py

Routes:
    GET  /              hello text
    GET  /json          a JSON document (reply_json), echoing the query string
    POST /echo          the request body back, byte for byte, with its Content-Type
    GET  /slow?ms=500   answered by a worker thread after `ms` milliseconds
                        (at most 5000), through Manager.wakeup()

Try it:
    curl http://127.0.0.1:8000/
    curl 'http://127.0.0.1:8000/json?name=ada'
    curl --data-binary 'hello' http://127.0.0.1:8000/echo
    curl 'http://127.0.0.1:8000/slow?ms=300'

Threading: everything on a Manager runs on the thread that polls it, except
Manager.wakeup(), which any thread may call.  A slow job therefore never
blocks the loop: the handler hands it to a worker and returns; the worker
sends its result back with wakeup(conn_id, payload); the loop delivers it as
MG_EV_WAKEUP on that connection, and the handler replies there.
"""

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from cymongoose import MG_EV_HTTP_MSG, MG_EV_WAKEUP, Manager

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
MAX_SLOW_MS = 5000


class App:
    def __init__(self) -> None:
        # enable_wakeup=True is what lets other threads reach this loop.
        self.manager = Manager(self.handler, enable_wakeup=True)
        self.workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="slow")

    def handler(self, conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            self.route(conn, data)
        elif ev == MG_EV_WAKEUP:
            # A worker finished: `data` is the bytes it passed to wakeup().
            conn.reply(200, data, {"Content-Type": "application/json"})

    def route(self, conn, hm):
        # `hm` is a view valid only during this call: copy what a worker needs.
        if hm.uri == "/":
            conn.reply(200, "Hello from cymongoose\n")
        elif hm.uri == "/json":
            conn.reply_json({"message": "hello", "method": hm.method, "name": hm.query_var("name")})
        elif hm.uri == "/echo":
            if hm.method != "POST":
                conn.reply(405, "POST a body to /echo\n", {"Allow": "POST"})
                return
            ctype = hm.header("Content-Type", "application/octet-stream")
            conn.reply(200, hm.body_bytes, {"Content-Type": ctype})
        elif hm.uri == "/slow":
            try:
                ms = min(max(int(hm.query_var("ms") or 500), 0), MAX_SLOW_MS)
            except ValueError:
                conn.reply(400, "ms must be an integer\n")
                return
            # No reply now: the response stays open until MG_EV_WAKEUP.
            self.workers.submit(self.slow_job, conn.id, ms)
        else:
            conn.reply(404, "Not found\n")

    def slow_job(self, conn_id: int, ms: int) -> None:
        """Runs on a worker thread: never touch a Connection here, only its id."""
        time.sleep(ms / 1000)
        result = {"slept_ms": ms, "thread": threading.current_thread().name}
        try:
            self.manager.wakeup(conn_id, json.dumps(result).encode())
        except RuntimeError:
            pass  # the server stopped meanwhile (Manager has been freed)

    def run(self) -> None:
        listener = self.manager.listen(f"http://{HOST}:{PORT}")
        host, port, _ = listener.local_addr
        print(f"Serving on http://{host}:{port}/  (Ctrl-C to stop)", flush=True)
        try:
            self.manager.run()  # polls until SIGINT/SIGTERM, then closes the manager
        finally:
            self.workers.shutdown(wait=False, cancel_futures=True)
        print("Stopped.", flush=True)


if __name__ == "__main__":
    App().run()
