"""Wakeup throughput: ONE script for ours and the original cymongoose.

    python wakeup_bench.py PORT PER_THREAD THREADS MAX_SECONDS

THREADS sender threads each call mgr.wakeup(target, <64 bytes>) PER_THREAD
times, as fast as they can, while the main thread polls and counts the
MG_EV_WAKEUP events delivered to the target connection (a TCP listener on
127.0.0.1:PORT).  The original cymongoose drops wakeups silently under load, so
what counts is what is delivered: the run ends when every accepted wakeup
arrived, when nothing arrived for one second after the senders finished, or
after MAX_SECONDS.  Prints one JSON line.
"""

import json
import sys
import threading
import time

from cymongoose import MG_EV_WAKEUP, Manager

PAYLOAD = bytes(range(64))
QUIET_SECONDS = 1.0


class State:
    target = -1
    delivered = 0
    wrong = 0  # wrong connection or wrong payload
    last = 0.0


def main() -> None:
    port, per_thread, nthreads = (int(a) for a in sys.argv[1:4])
    max_seconds = float(sys.argv[4])
    st = State()

    def handler(conn, ev, data):
        if ev == MG_EV_WAKEUP:
            if conn.id == st.target and data == PAYLOAD:
                st.delivered += 1
            else:
                st.wrong += 1
            st.last = time.perf_counter()

    mgr = Manager(handler, enable_wakeup=True)
    st.target = mgr.listen(f"tcp://127.0.0.1:{port}").id
    accepted = [0] * nthreads
    stop = threading.Event()
    go = threading.Barrier(nthreads + 1)

    def sender(i: int) -> None:
        go.wait()
        ok = 0
        for _ in range(per_thread):
            if stop.is_set():
                break
            ok += bool(mgr.wakeup(st.target, PAYLOAD))
        accepted[i] = ok

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    senders_done = 0.0
    while True:
        mgr.poll(50)
        now = time.perf_counter()
        if not senders_done and not any(t.is_alive() for t in threads):
            senders_done = now
        if senders_done:
            if st.delivered + st.wrong >= sum(accepted):
                break
            if now - max(st.last, senders_done) > QUIET_SECONDS:
                break
        if now - t0 > max_seconds:
            stop.set()
            break
    for t in threads:
        t.join()
    elapsed = (st.last or time.perf_counter()) - t0
    print(
        json.dumps(
            {
                "threads": nthreads,
                "payload_bytes": len(PAYLOAD),
                "sent": nthreads * per_thread,
                "accepted": sum(accepted),
                "delivered": st.delivered,
                "wrong": st.wrong,
                "send_seconds": (senders_done or time.perf_counter()) - t0,
                "seconds": elapsed,
                "timed_out": stop.is_set(),
                "per_second": st.delivered / elapsed if elapsed > 0 else 0.0,
            }
        ),
        flush=True,
    )
    mgr.close()


if __name__ == "__main__":
    main()
