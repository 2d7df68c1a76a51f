# The threading guide's ">8 KB stash" fragment (Thread Safety Rules, 3.), run
# as a program: a worker sends results over 8000 bytes through the stash and
# smaller ones inline. The guide's own lines are unchanged; every line that is
# not the guide's is marked "# completion:".
# Usage: python stash_large.py [PORT] (default 8000); GET /?n=<size> answers
# with <size> deterministic bytes.
import threading
import uuid
import sys  # completion: the port comes from argv
import time  # completion: for the bounded poll loop
from cymongoose import Manager, MG_EV_HTTP_MSG, MG_EV_WAKEUP  # completion:

stash = {}
stash_lock = threading.Lock()


def worker(manager, conn_id, result_bytes):
    if len(result_bytes) > 8000:
        # Stash the data, send only the key
        key = uuid.uuid4().hex
        with stash_lock:
            stash[key] = result_bytes
        manager.wakeup(conn_id, b"KEY:" + key.encode())
    else:
        # Small enough to send inline
        manager.wakeup(conn_id, result_bytes)


def handler(conn, ev, data):
    if ev == MG_EV_WAKEUP:
        if data.startswith(b"KEY:"):
            key = data[4:].decode()
            with stash_lock:
                result = stash.pop(key)
            conn.reply(200, result)
        else:
            conn.reply(200, data)
    elif ev == MG_EV_HTTP_MSG:  # completion: hand each request to a worker thread
        result_bytes = make_result(int(data.query_var("n") or 0))  # completion:
        threading.Thread(
            target=worker,
            args=(manager, conn.id, result_bytes),  # completion:
            daemon=True,
        ).start()  # completion:


def make_result(n):  # completion: deterministic bytes (NULs included) to check
    return (bytes(range(256)) * (n // 256 + 1))[:n]  # completion:


# completion: a manager, a listen call and a bounded poll loop
manager = Manager(handler, enable_wakeup=True)  # completion:
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8000  # completion:
manager.listen(f"http://127.0.0.1:{PORT}", http=True)  # completion:
print("listening", PORT, flush=True)  # completion:
deadline = time.monotonic() + 120  # completion: never run forever
while time.monotonic() < deadline:  # completion:
    manager.poll(100)  # completion:
manager.close()  # completion:
