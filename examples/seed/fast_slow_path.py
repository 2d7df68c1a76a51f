# The threading guide's "Fast Path vs Slow Path" fragment, run as a program:
# /status is answered inside the handler, /process by a worker thread that
# takes PROCESS_SECONDS. The guide's own lines are unchanged; every line that
# is not the guide's is marked "# completion:".
# Usage: python fast_slow_path.py [PORT] (default 8000).
import queue  # completion:
import sys  # completion: the port comes from argv
import threading  # completion:
import time  # completion:

from cymongoose import MG_EV_HTTP_MSG, MG_EV_WAKEUP, Manager  # completion:

PROCESS_SECONDS = 1.5  # completion:
connections = {}  # completion: {conn_id: conn}, as in the guide's complete example
work_queue = queue.Queue()  # completion:


def worker():  # completion: the slow path's worker
    while True:  # completion:
        work = work_queue.get()  # completion:
        time.sleep(PROCESS_SECONDS)  # completion:
        manager.wakeup(work["conn_id"], b"PROCESSED:" + work["data"])  # completion:


def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        # Fast path: simple request
        if data.uri == "/status":
            conn.reply(200, b'{"status": "ok"}')
            conn.drain()

        # Slow path: complex request
        elif data.uri == "/process":
            connections[conn.id] = conn
            work_queue.put(
                {
                    "conn_id": conn.id,
                    "data": data.body_bytes,
                }
            )
    elif ev == MG_EV_WAKEUP:  # completion: the slow path's result is ready
        connections.pop(conn.id).reply(200, data)  # completion:
        conn.drain()  # completion:


# completion: a manager, workers, a listen call and a bounded poll loop
manager = Manager(handler, enable_wakeup=True)  # completion:
for _ in range(2):  # completion:
    threading.Thread(target=worker, daemon=True).start()  # completion:
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8000  # completion:
manager.listen(f"http://127.0.0.1:{PORT}", http=True)  # completion:
print("listening", PORT, flush=True)  # completion:
deadline = time.monotonic() + 120  # completion: never run forever
while time.monotonic() < deadline:  # completion:
    manager.poll(100)  # completion:
manager.close()  # completion:
