"""Cost of one poll iteration: ONE script for ours and the original cymongoose.

    python iter_bench.py PORT MIN_ITERATIONS MIN_SECONDS

Serves the same hello world as cm_hello.py.  bench/run.py first opens the idle
connections, then starts one busy client (`wrk -t1 -c1`: sequential keep-alive
requests).  After WARM_REQUESTS requests this script times calls of
mgr.poll(0), at least MIN_ITERATIONS of them and for at least MIN_SECONDS
(bounded by MAX_SECONDS), prints one JSON line and exits.  Iterations that
served a request ("busy") and those that did not ("empty") are also reported
apart, since their mix differs with the cost of an iteration.
"""

import json
import statistics
import sys
import time

from cymongoose import MG_EV_HTTP_MSG, Manager

BODY = b'{"hello":"world"}'
HEADERS = {"Content-Type": "application/json"}
WARM_REQUESTS = 200
MAX_WAIT_SECONDS = 300.0
MAX_SECONDS = 120.0


class State:
    served = 0


def mean_us(ns: list[int]) -> float | None:
    return statistics.fmean(ns) / 1e3 if ns else None


def main() -> None:
    port, min_iterations, min_seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    st = State()

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, BODY, HEADERS)
            st.served += 1

    mgr = Manager(handler)
    mgr.listen(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + MAX_WAIT_SECONDS
    while st.served < WARM_REQUESTS:
        mgr.poll(10)
        if time.monotonic() > deadline:
            sys.exit("iter_bench: the busy client sent no requests")
    nconns = len(mgr.connections) - 1  # minus the listener
    clock = time.perf_counter_ns
    min_ns, max_ns = int(min_seconds * 1e9), int(MAX_SECONDS * 1e9)
    busy: list[int] = []
    empty: list[int] = []
    served0 = st.served
    t0 = clock()
    while True:
        before = st.served
        t = clock()
        mgr.poll(0)
        now = clock()
        (busy if st.served != before else empty).append(now - t)
        n = len(busy) + len(empty)
        if (n >= min_iterations and now - t0 >= min_ns) or now - t0 >= max_ns:
            break
    total = clock() - t0
    every = busy + empty
    print(
        json.dumps(
            {
                "iterations": n,
                "seconds": total / 1e9,
                "connections": nconns,
                "served": st.served - served0,
                "busy_fraction": len(busy) / n,
                "mean_us": total / n / 1e3,
                "median_us": statistics.median(every) / 1e3,
                "p99_us": sorted(every)[int(0.99 * (n - 1))] / 1e3,
                "empty_mean_us": mean_us(empty),
                "busy_mean_us": mean_us(busy),
            }
        ),
        flush=True,
    )
    mgr.close()


if __name__ == "__main__":
    main()
