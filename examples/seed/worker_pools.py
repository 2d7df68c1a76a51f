# The threading guide's "Multiple Worker Pools" fragment, run as a program:
# /db/... requests are answered by the 2 db_worker threads, /compute/... by the
# 4 compute_worker threads. The guide's own lines are unchanged except its
# "..." placeholders, which are filled in; every line that is not the guide's
# is marked "# completion:". Usage: python worker_pools.py [PORT] (default 8000).
import queue  # completion:
import sys  # completion: the port comes from argv
import threading  # completion:
import time  # completion:

from cymongoose import MG_EV_HTTP_MSG, MG_EV_WAKEUP, Manager  # completion:


def answer(work, pool):  # completion: a worker answers through the event loop
    time.sleep(0.2)  # completion: the simulated database / CPU work
    name = threading.current_thread().name  # completion:
    manager.wakeup(work["conn_id"], f"{pool}|{name}|{work['uri']}".encode())  # completion:


db_queue = queue.Queue()
file_queue = queue.Queue()
compute_queue = queue.Queue()


def db_worker():
    while True:
        work = db_queue.get()
        # Database operations
        answer(work, "db")  # completion:


def file_worker():
    while True:
        work = file_queue.get()
        # File I/O


def compute_worker():
    while True:
        work = compute_queue.get()
        # CPU-intensive work
        answer(work, "compute")  # completion:


# Start different worker pools
for _ in range(2):
    threading.Thread(target=db_worker, daemon=True).start()

for _ in range(4):
    threading.Thread(target=compute_worker, daemon=True).start()


def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        if data.uri.startswith("/db/"):
            db_queue.put({"conn_id": conn.id, "uri": data.uri})  # completion: "..." filled in
        elif data.uri.startswith("/compute/"):
            compute_queue.put({"conn_id": conn.id, "uri": data.uri})  # completion: "..."
    elif ev == MG_EV_WAKEUP:  # completion: send the worker's answer
        conn.reply(200, data)  # completion:


# completion: a manager, a listen call and a bounded poll loop
manager = Manager(handler, enable_wakeup=True)  # completion:
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8000  # completion:
manager.listen(f"http://127.0.0.1:{PORT}", http=True)  # completion:
print("listening", PORT, flush=True)  # completion:
deadline = time.monotonic() + 120  # completion: never run forever
while time.monotonic() < deadline:  # completion:
    manager.poll(100)  # completion:
manager.close()  # completion:
