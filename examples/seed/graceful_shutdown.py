# The threading guide's "Graceful Shutdown" fragment, run as a program: SIGINT
# sets the flag and sends poison pills, the loop ends, workers are joined and
# the manager is closed; the process exits with status 0. The guide's own
# lines are unchanged; every line that is not the guide's is marked
# "# completion:" (here: the server the fragment shuts down, from the guide's
# complete example). Usage: python graceful_shutdown.py [PORT] (default 8000).
import queue  # completion:
import signal  # completion:
import sys  # completion: the port comes from argv
import threading  # completion:

from cymongoose import MG_EV_HTTP_MSG, MG_EV_WAKEUP, Manager  # completion:

work_queue = queue.Queue()  # completion:
result_queue = queue.Queue()  # completion:
connections = {}  # completion:
num_workers = 2  # completion:


def worker():  # completion:
    while True:  # completion:
        work = work_queue.get()  # completion:
        if work is None:  # completion: the poison pill
            break  # completion:
        result_queue.put((work["conn_id"], b"DONE:" + work["data"]))  # completion:
        manager.wakeup(work["conn_id"], b"done")  # completion:


def handler(conn, ev, data):  # completion:
    if ev == MG_EV_HTTP_MSG:  # completion:
        connections[conn.id] = conn  # completion:
        work_queue.put({"conn_id": conn.id, "data": data.body_bytes})  # completion:
    elif ev == MG_EV_WAKEUP:  # completion:
        conn_id, result = result_queue.get()  # completion:
        connections.pop(conn_id).reply(200, result)  # completion:


manager = Manager(handler, enable_wakeup=True)  # completion:
worker_threads = [threading.Thread(target=worker) for _ in range(num_workers)]  # completion:
for t in worker_threads:  # completion:
    t.start()  # completion:
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8000  # completion:
manager.listen(f"http://127.0.0.1:{PORT}", http=True)  # completion:
print("listening", PORT, flush=True)  # completion:

shutdown_requested = False


def signal_handler(sig, frame):
    global shutdown_requested
    shutdown_requested = True

    # Stop workers
    for _ in range(num_workers):
        work_queue.put(None)  # Poison pill


signal.signal(signal.SIGINT, signal_handler)

# Main loop
while not shutdown_requested:
    manager.poll(100)

# Wait for workers
for thread in worker_threads:
    thread.join(timeout=5.0)

manager.close()
print("workers stopped:", not any(t.is_alive() for t in worker_threads), flush=True)  # completion:
