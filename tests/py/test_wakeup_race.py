"""Results from worker threads reach the connection they belong to (README,
"Give each result to its own connection"; issue 12 item 5).

The threading guide's basic pattern (kept verbatim in examples/seed) pairs
results with wakeups through a second, shared queue: a worker switched out
between its put() and its wakeup() lets another worker's wakeup take its
result.  The first test forces that interleaving to show the race is real;
the others hammer the two race-free patterns of the README: the result as
the wakeup payload, and a dict keyed by connection id.
"""

from __future__ import annotations

import queue
import threading
import time

from conftest import listen_free, poll_until, raw_connect, serve

from cymongoose import MG_EV_CLOSE, MG_EV_HTTP_MSG, MG_EV_WAKEUP

CLIENTS = 48  # concurrent requests per round
ROUNDS = 3
WORKERS = 6


def post(port: int, body: bytes):
    """Open a connection and send one request; the socket, to read later."""
    s = raw_connect(port, timeout=15)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return s


def answer(s) -> bytes:
    data = b""
    with s:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep and b"Content-Length: %d" % len(rest) in head:
                break
    return data.partition(b"\r\n\r\n")[2]


def hammer(port: int) -> list[tuple[bytes, bytes]]:
    """ROUNDS rounds of CLIENTS concurrent requests; (sent, received) pairs."""
    pairs = []
    for r in range(ROUNDS):
        bodies = [b"req-%d-%d" % (r, i) for i in range(CLIENTS)]
        socks = [post(port, b) for b in bodies]
        pairs += [(b, answer(s)) for b, s in zip(bodies, socks, strict=True)]
    return pairs


def start_workers(jobs: queue.Queue, work) -> list[threading.Thread]:
    def run():
        while (job := jobs.get()) is not None:
            work(*job)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    return threads


def stop_workers(jobs: queue.Queue, threads) -> None:
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join(5)


def test_shared_result_queue_can_mismatch(make_manager):
    """The race, made to happen: worker A puts its result and is switched out
    before its wakeup; worker B puts and wakes first, and B's connection takes
    A's result from the shared queue."""
    results: queue.Queue = queue.Queue()
    a_put = threading.Event()
    got = {}

    def handler(conn, ev, data):
        if ev == MG_EV_WAKEUP:
            got[conn.id] = results.get()

    mgr = make_manager(handler, enable_wakeup=True)
    lsn_a, _ = listen_free(mgr, "tcp")
    lsn_b, _ = listen_free(mgr, "tcp")

    def worker_a():
        results.put(b"result for A")
        a_put.set()
        time.sleep(0.3)  # the thread switch between put() and wakeup()
        mgr.wakeup(lsn_a.id, b"")

    def worker_b():
        a_put.wait(5)
        results.put(b"result for B")
        mgr.wakeup(lsn_b.id, b"")

    threads = [threading.Thread(target=worker_a), threading.Thread(target=worker_b)]
    for t in threads:
        t.start()
    assert poll_until(mgr, lambda: len(got) == 2)
    for t in threads:
        t.join(5)
    assert got[lsn_b.id] == b"result for A" and got[lsn_a.id] == b"result for B"


def test_result_in_the_wakeup_payload(make_manager):
    jobs: queue.Queue = queue.Queue()

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            jobs.put((conn.id, data.body_bytes))
        elif ev == MG_EV_WAKEUP:
            conn.reply(200, data)

    mgr = make_manager(handler, enable_wakeup=True)
    _, port = listen_free(mgr)

    def work(conn_id, body):
        time.sleep(0.0005 * (hash(body) % 5))  # finish out of order
        mgr.wakeup(conn_id, b"done:" + body)

    threads = start_workers(jobs, work)
    try:
        with serve(mgr):
            pairs = hammer(port)
    finally:
        stop_workers(jobs, threads)
    assert len(pairs) == CLIENTS * ROUNDS
    wrong = [(sent, got) for sent, got in pairs if got != b"done:" + sent]
    assert wrong == []


def test_results_keyed_by_connection_id(make_manager):
    jobs: queue.Queue = queue.Queue()
    results: dict[int, dict] = {}

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            jobs.put((conn.id, data.body_bytes))
        elif ev == MG_EV_WAKEUP:
            conn.reply_json(results.pop(conn.id))
        elif ev == MG_EV_CLOSE:
            results.pop(conn.id, None)  # closed before its result came

    mgr = make_manager(handler, enable_wakeup=True)
    _, port = listen_free(mgr)

    def work(conn_id, body):
        time.sleep(0.0005 * (hash(body) % 5))
        results[conn_id] = {"for": body.decode()}
        mgr.wakeup(conn_id)  # only "ready": the result is found by id

    threads = start_workers(jobs, work)
    try:
        with serve(mgr):
            pairs = hammer(port)
    finally:
        stop_workers(jobs, threads)
    assert len(pairs) == CLIENTS * ROUNDS
    assert all(got == b'{"for": "%s"}' % sent for sent, got in pairs)
    assert results == {}


def test_wakeup_for_a_closed_connection_is_dropped(make_manager):
    seen = []

    def handler(conn, ev, data):
        if ev == MG_EV_WAKEUP:
            seen.append(data)

    mgr = make_manager(handler, enable_wakeup=True)
    lsn, _ = listen_free(mgr, "tcp")
    gone = lsn.id
    lsn.close()
    poll_until(mgr, lambda: lsn.id == 0)
    assert mgr.wakeup(gone, b"late") is True
    mgr.poll(20)
    assert seen == []
