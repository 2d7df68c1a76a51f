import threading
import queue
import time
from cymongoose import Manager, MG_EV_HTTP_MSG, MG_EV_WAKEUP

# Connection tracking
connections = {}  # {conn_id: conn}

# Work queues
work_queue = queue.Queue()
result_queue = queue.Queue()


def process_image(image_data):
    """Simulate expensive image processing."""
    time.sleep(2)  # CPU-intensive work
    return b"PROCESSED_" + image_data


def worker():
    """Background image processor."""
    while True:
        work = work_queue.get()
        if work is None:
            break

        try:
            result = process_image(work["data"])
            result_queue.put(
                {
                    "conn_id": work["conn_id"],
                    "result": result,
                    "error": None,
                }
            )
        except Exception as e:
            result_queue.put(
                {
                    "conn_id": work["conn_id"],
                    "result": None,
                    "error": str(e),
                }
            )

        # Wake up event loop
        manager.wakeup(work["conn_id"], b"processed")


def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        # Track connection
        connections[conn.id] = conn

        # Offload to worker
        work_queue.put(
            {
                "conn_id": conn.id,
                "data": data.body_bytes,
            }
        )

    elif ev == MG_EV_WAKEUP:
        # Result ready
        result = result_queue.get()

        # Look up connection
        conn = connections.get(result["conn_id"])
        if conn:
            if result["error"]:
                conn.reply(500, result["error"].encode())
            else:
                conn.reply(200, result["result"])
            conn.drain()

            # Clean up
            del connections[conn.id]


# Create manager with wakeup support
manager = Manager(handler, enable_wakeup=True)

# Start worker threads
num_workers = 4
for _ in range(num_workers):
    t = threading.Thread(target=worker, daemon=True)
    t.start()

manager.listen("http://0.0.0.0:8000", http=True)

while True:
    manager.poll(100)
