# The threading guide's "Basic Pattern" fragment, run as a program.
# The guide's own lines are unchanged; every line that is not the guide's is
# marked "# completion:". Usage: python basic_pattern.py [PORT] (default 8000).
import threading
import queue
from cymongoose import Manager, MG_EV_HTTP_MSG, MG_EV_WAKEUP
import sys  # completion: the port comes from argv
import time  # completion: for the bounded poll loop


# completion: handler moved above its first use (Manager(handler, ...) below)
def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        # Offload to worker
        work_queue.put(
            {
                "conn_id": conn.id,  # Use ID, not Connection object
                "data": data.body_bytes,
            }
        )

    elif ev == MG_EV_WAKEUP:
        # Result ready
        result = result_queue.get()
        conn.reply(200, result["result"])
        conn.drain()


# completion: the guide leaves expensive_computation undefined
def expensive_computation(data):  # completion:
    return b"COMPUTED_" + data[::-1]  # completion:


# Enable wakeup support
manager = Manager(handler, enable_wakeup=True)

# Work queues
work_queue = queue.Queue()
result_queue = queue.Queue()


def worker():
    """Background worker thread."""
    while True:
        work = work_queue.get()
        if work is None:
            break

        # Process work
        result = expensive_computation(work["data"])

        # Store result
        result_queue.put(
            {
                "conn_id": work["conn_id"],
                "result": result,
            }
        )

        # Wake up event loop
        manager.wakeup(work["conn_id"], b"result_ready")


# Start worker
worker_thread = threading.Thread(target=worker, daemon=True)
worker_thread.start()

# completion: a listen call and a bounded poll loop
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8000  # completion:
manager.listen(f"http://127.0.0.1:{PORT}", http=True)  # completion:
print("listening", PORT, flush=True)  # completion:
deadline = time.monotonic() + 120  # completion: never run forever
while time.monotonic() < deadline:  # completion:
    manager.poll(100)  # completion:
work_queue.put(None)  # completion:
manager.close()  # completion:
