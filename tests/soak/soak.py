"""Bounded soak of a cymongoose HTTP server (issue 5, item 3).

The server is a cymongoose Manager in its own process (``soak.py serve``), so
its memory and descriptors are its own.  The driver (``soak.py``) runs, at
full scale:

* 1,000,000 keep-alive HTTP requests from several client processes, each on
  one connection, pipelined in batches; every answer is checked byte for byte;
* 100,000 connect/close cycles: plain connect + close, connect + RST, and
  connect + one request with "Connection: close" (the server closes);
* 10,000 wakeups with payloads of 64 KiB .. 1 MiB, sent by a thread inside
  the server process (Manager.wakeup is the cross-thread entry point) and
  checked byte for byte and in order by the handler.

A warm-up phase runs the same mix at 1/5 of the counts; then the server's
VmRSS and open descriptors are measured (baseline), the main phase runs (in
4 slices, each measured and printed), and they are measured again.  Each
measurement is taken at rest: every connection but the control one closed,
every wakeup delivered, gc.collect() and malloc_trim(0) done in the server,
which runs with MALLOC_ARENA_MAX=1 (see Soak.__init__ for why).  The soak
fails if RSS grew by 5 % or more, if CPython's allocated block count grew by
1 % or more (objects kept alive), if a descriptor was left over, if any
answer or wakeup was wrong or missing, if a handler raised, if the server
did not exit cleanly, or if anything ran past its deadline.

    soak.py [--quick] [--scale F] [--clients N] [--max-seconds S]

``--quick`` is 1/20 of the counts (CI); the default is the full scale.
Everything talks to 127.0.0.1 only, and every loop is bounded in count and
time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import socket
import struct
import subprocess
import sys
import time

HOST = "127.0.0.1"
FULL = {"requests": 1_000_000, "cycles": 100_000, "wakeups": 10_000}
WARMUP_FRACTION = 0.2
MAX_RSS_GROWTH = 0.05
BATCH = 64  # pipelined requests per round trip
WAKEUP_MIN, WAKEUP_MAX = 64 << 10, 1 << 20
WAKEUP_WINDOW = 8  # wakeups in flight: bounds the queued payload memory
WAKEUP_HDR = struct.Struct("<QII")  # seq, body length, body offset
POOL_SEED = 20240607
POOL_SIZE = 2 << 20


def pool() -> bytes:
    return random.Random(POOL_SEED).randbytes(POOL_SIZE)


def wakeup_plan(seq: int) -> tuple[int, int]:
    """(length, offset in the pool) of wakeup `seq`'s body: 64 KiB .. 1 MiB."""
    rnd = random.Random(seq * 7919 + 1)
    n = rnd.randrange(WAKEUP_MIN, WAKEUP_MAX - WAKEUP_HDR.size + 1)
    return n, rnd.randrange(0, POOL_SIZE - n + 1)


# ==========================================================================
# The server process


def serve_main(max_seconds: float) -> int:
    """Run the server until /quit (or max_seconds); print its port first."""
    import ctypes
    import gc
    import queue
    import threading
    import traceback

    from cymongoose import MG_EV_CLOSE, MG_EV_HTTP_MSG, MG_EV_OPEN, MG_EV_WAKEUP, Manager

    def release_free_memory() -> None:
        """Collect garbage, then hand free heap pages back to the kernel.

        What is freed but kept by malloc (the top of a heap, whole free
        pages inside it, other threads' arenas) moves RSS by a few hundred
        KiB either way from one moment to the next, which is several percent
        of this small process.  malloc_trim(0) returns those pages; memory
        that is still allocated (a leak) stays in RSS."""
        gc.collect()
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            pass  # not glibc: measure as it is

    body_pool = pool()
    stats = {"requests": 0, "opened": 0, "closed": 0, "wakeups": 0, "wakeup_bytes": 0,
             "wakeup_errors": 0, "handler_errors": 0, "sender_errors": 0, "wakeup_sent": 0}
    state = {"quit": False, "next_seq": 0}
    window = threading.Semaphore(WAKEUP_WINDOW)
    jobs: queue.Queue[int | None] = queue.Queue()

    def on_wakeup(payload: bytes) -> None:
        seq, n, off = WAKEUP_HDR.unpack_from(payload)
        ok = (seq == state["next_seq"] and (n, off) == wakeup_plan(seq)
              and len(payload) == WAKEUP_HDR.size + n
              and payload[WAKEUP_HDR.size:] == body_pool[off:off + n])
        if not ok:
            stats["wakeup_errors"] += 1
            if stats["wakeup_errors"] <= 5:
                print(f"soak server: bad wakeup seq={seq} want={state['next_seq']} "
                      f"len={len(payload)}", file=sys.stderr, flush=True)
        state["next_seq"] = seq + 1
        stats["wakeups"] += 1
        stats["wakeup_bytes"] += len(payload)
        window.release()

    def on_request(conn, hm) -> None:
        uri = hm.uri
        stats["requests"] += 1
        if uri.startswith("/r/"):
            conn.reply(200, uri)
        elif uri == "/stats":
            if hm.query_var("gc"):
                release_free_memory()
            out = dict(stats, live=len(mgr.connections) - 1, pending=jobs.qsize(),
                       py_blocks=sys.getallocatedblocks())
            conn.reply(200, json.dumps(out), {"Content-Type": "application/json"})
        elif uri == "/wakeups":
            n = int(hm.query_var("n") or 0)
            jobs.put(n)
            conn.reply(200, "queued")
        elif uri == "/quit":
            state["quit"] = True
            conn.reply(200, "bye")
        else:
            conn.reply(404, "no")

    def handler(conn, ev, data) -> None:
        if ev == MG_EV_HTTP_MSG:
            on_request(conn, data)
        elif ev == MG_EV_WAKEUP:
            on_wakeup(data)
        elif ev == MG_EV_OPEN:
            stats["opened"] += 1
        elif ev == MG_EV_CLOSE:
            stats["closed"] += 1

    def on_error(exc: BaseException) -> None:
        stats["handler_errors"] += 1
        traceback.print_exception(exc, file=sys.stderr)

    mgr = Manager(handler, enable_wakeup=True, error_handler=on_error)
    listener = mgr.listen(f"http://{HOST}:0")
    target = listener.id

    def sender() -> None:
        seq = 0
        for _ in range(1_000_000):
            n = jobs.get()
            if n is None:
                return
            for _ in range(n):
                if not window.acquire(timeout=30):
                    stats["sender_errors"] += 1
                    print("soak server: a wakeup was not delivered in 30 s",
                          file=sys.stderr, flush=True)
                    return
                blen, off = wakeup_plan(seq)
                payload = WAKEUP_HDR.pack(seq, blen, off) + body_pool[off:off + blen]
                if not mgr.wakeup(target, payload):
                    stats["sender_errors"] += 1
                    return
                stats["wakeup_sent"] += 1
                seq += 1

    thread = threading.Thread(target=sender, name="wakeup-sender", daemon=True)
    thread.start()
    print(listener.local_addr[1], flush=True)
    deadline = time.monotonic() + max_seconds
    while not state["quit"] and time.monotonic() < deadline:
        mgr.poll(100)
    for _ in range(20):  # let the answer to /quit leave
        mgr.poll(10)
    jobs.put(None)
    thread.join(10)
    mgr.close()
    return 0 if state["quit"] else 3


# ==========================================================================
# The driver: clients


def recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def http_get(s: socket.socket, path: str) -> bytes:
    """GET on a keep-alive raw socket; returns the body (Content-Length framed)."""
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise ConnectionError("closed while reading a head")
        head += chunk
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return recv_exact(s, length)


def request(i: int) -> bytes:
    return b"GET /r/%010d HTTP/1.1\r\nHost: soak\r\nUser-Agent: soak\r\n\r\n" % i


def keepalive_client(port: int, first: int, count: int, head: bytes,
                     deadline: float) -> tuple[int, str]:
    """`count` requests on one connection, BATCH pipelined at a time; every
    answer must be exactly `head` + the URI.  Returns (answers, error)."""
    done = 0
    try:
        with socket.create_connection((HOST, port), timeout=30) as s:
            while done < count:
                if time.monotonic() > deadline:
                    return done, "deadline passed"
                n = min(BATCH, count - done)
                ids = range(first + done, first + done + n)
                s.sendall(b"".join(request(i) for i in ids))
                want = b"".join(head + b"/r/%010d" % i for i in ids)
                got = recv_exact(s, len(want))
                if got != want:
                    return done, f"wrong answer in batch at {first + done}"
                done += n
    except OSError as exc:
        return done, f"{exc!r}"
    return done, ""


def cycle_client(port: int, count: int, deadline: float) -> tuple[int, str]:
    """`count` connect/close cycles, three kinds in turn."""
    req = b"GET /r/0000000000 HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
    linger0 = struct.pack("ii", 1, 0)
    for i in range(count):
        if time.monotonic() > deadline:
            return i, "deadline passed"
        try:
            s = socket.create_connection((HOST, port), timeout=30)
            kind = i % 3
            if kind == 0:  # connect, close (FIN)
                s.close()
            elif kind == 1:  # connect, reset
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
                s.close()
            else:  # one request, the server closes after its answer
                s.sendall(req)
                data = b""
                for _ in range(1000):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                s.close()
                if not data.endswith(b"\r\n\r\n/r/0000000000"):
                    return i, f"cycle {i}: bad answer {data[:60]!r}"
        except OSError as exc:
            return i, f"cycle {i}: {exc!r}"
    return count, ""


def _run_task(args: tuple) -> tuple[int, str]:
    kind, rest = args[0], args[1:]
    return keepalive_client(*rest) if kind == "ka" else cycle_client(*rest)


# ==========================================================================
# The driver: phases and measurements


class Soak:
    def __init__(self, counts: dict[str, int], clients: int, max_seconds: float):
        self.counts = counts
        self.clients = clients
        self.deadline = time.monotonic() + max_seconds
        self.next_request = 0
        self.wakeups_asked = 0
        self.requests_sent = 0
        here = os.path.abspath(__file__)
        # One malloc arena: otherwise the wakeup thread gets an arena of its
        # own whose free top (up to a few MiB, never trimmed by
        # malloc_trim) comes and goes with the payloads: RSS noise of the
        # size of the allowance.  See also release_free_memory().
        env = dict(os.environ, MALLOC_ARENA_MAX="1")
        self.proc = subprocess.Popen([sys.executable, here, "serve", "--max-seconds",
                                      str(max_seconds + 30)], stdout=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            raise SystemExit(f"soak: the server did not start (said {line!r})")
        self.port = int(line)
        self.ctl = socket.create_connection((HOST, self.port), timeout=60)
        # The exact head of an answer to /r/<10 digits>, learnt once.
        probe = socket.create_connection((HOST, self.port), timeout=10)
        probe.sendall(request(0))
        raw = b""
        while not raw.endswith(b"/r/0000000000"):
            chunk = probe.recv(4096)
            if not chunk:
                raise SystemExit(f"soak: bad probe answer {raw!r}")
            raw += chunk
        probe.close()
        self.head = raw[: -len(b"/r/0000000000")]
        self.requests_sent = 1

    # -- server state -----------------------------------------------------

    def stats(self, gc: bool = False) -> dict:
        self.requests_sent += 1
        return json.loads(http_get(self.ctl, "/stats?gc=1" if gc else "/stats"))

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def nfds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def settle(self) -> dict:
        """Wait until the server has closed every connection but ours and
        delivered every wakeup asked for; then collect garbage there."""
        give_up = min(self.deadline, time.monotonic() + 60)
        for _ in range(2000):
            st = self.stats()
            if st["live"] == 1 and st["wakeups"] == self.wakeups_asked and st["pending"] == 0:
                return self.stats(gc=True)
            if time.monotonic() > give_up:
                break
            time.sleep(0.05)
        raise SystemExit(f"soak: the server did not settle (connections still open or "
                         f"wakeups undelivered): {st}")

    # -- one phase --------------------------------------------------------

    def phase(self, requests: int, cycles: int, wakeups: int) -> float:
        t0 = time.monotonic()
        self.wakeups_asked += wakeups
        self.requests_sent += 1
        if http_get(self.ctl, f"/wakeups?n={wakeups}") != b"queued":
            raise SystemExit("soak: /wakeups refused")
        tasks = []
        per = requests // self.clients
        for k in range(self.clients):
            n = per if k < self.clients - 1 else requests - per * (self.clients - 1)
            tasks.append(("ka", self.port, self.next_request, n, self.head, self.deadline))
            self.next_request += n
        # connect/close cycles in two processes, next to the request clients
        half = cycles // 2
        tasks += [("cy", self.port, half, self.deadline),
                  ("cy", self.port, cycles - half, self.deadline)]
        with mp.get_context("fork").Pool(len(tasks)) as workers:
            results = workers.map(_run_task, tasks, chunksize=1)
        for task, (done, err) in zip(tasks, results, strict=True):
            if err:
                raise SystemExit(f"soak: {task[0]} client failed after {done}: {err}")
        # every third cycle carries one request (cycle_client's kind 2)
        self.requests_sent += requests + half // 3 + (cycles - half) // 3
        return time.monotonic() - t0

    def quit(self) -> int:
        """Stop the server; its exit status (negative: killed by that signal)."""
        try:
            http_get(self.ctl, "/quit")
        except OSError as exc:  # it died: its exit status tells how
            print(f"soak: /quit failed: {exc!r}", flush=True)
        self.ctl.close()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="drive", choices=["drive", "serve"])
    ap.add_argument("--quick", action="store_true", help="1/20 of the full counts (CI)")
    ap.add_argument("--scale", type=float, default=None, help="fraction of the full counts")
    ap.add_argument("--clients", type=int, default=4, help="keep-alive client processes")
    ap.add_argument("--max-seconds", type=float, default=None, help="give up after this")
    args = ap.parse_args(argv)
    if args.mode == "serve":
        return serve_main(args.max_seconds or 3600)

    scale = args.scale if args.scale is not None else (0.05 if args.quick else 1.0)
    max_seconds = args.max_seconds or (120 if scale <= 0.05 else 1500)
    counts = {k: max(30, int(v * scale)) for k, v in FULL.items()}
    warm = {k: max(10, int(v * WARMUP_FRACTION)) for k, v in counts.items()}
    main_counts = {k: counts[k] - warm[k] for k in counts}
    print(f"soak: scale {scale:g}: {counts['requests']} keep-alive requests, "
          f"{counts['cycles']} connect/close cycles, {counts['wakeups']} wakeups of "
          f"{WAKEUP_MIN >> 10} KiB..{WAKEUP_MAX >> 20} MiB; {args.clients} clients; "
          f"limit {max_seconds:g}s", flush=True)

    t_start = time.monotonic()
    soak = Soak(counts, args.clients, max_seconds)
    failures: list[str] = []
    try:
        fds0 = soak.nfds()
        # Warm-up in two halves: the first one's RSS is printed only; the
        # baseline comes after the second, once the heap has its shape.
        t = 0.0
        for k in range(2):
            half = {n: warm[n] // 2 + (warm[n] % 2 if k else 0) for n in warm}
            t += soak.phase(half["requests"], half["cycles"], half["wakeups"])
            st = soak.settle()
            if k == 0:
                print(f"soak: warm-up 1/2: RSS {soak.rss_kib()} KiB", flush=True)
        rss0, fds1, blocks0 = soak.rss_kib(), soak.nfds(), st["py_blocks"]
        print(f"soak: warm-up {t:.1f}s; server RSS {rss0} KiB, {fds1} fds "
              f"({fds0} before it), {st['py_blocks']} Python blocks", flush=True)
        # The main phase, in 4 slices so that the RSS curve shows a trend.
        for k in range(4):
            part = {n: main_counts[n] // 4 + (main_counts[n] % 4 if k == 3 else 0)
                    for n in main_counts}
            t = soak.phase(part["requests"], part["cycles"], part["wakeups"])
            st = soak.settle()
            print(f"soak: slice {k + 1}/4 {t:.1f}s ({part['requests'] / t:,.0f} req/s); "
                  f"RSS {soak.rss_kib()} KiB, {soak.nfds()} fds, "
                  f"{st['py_blocks']} Python blocks", flush=True)
        rss1, fds2 = soak.rss_kib(), soak.nfds()
        growth = (rss1 - rss0) / rss0
        blocks_growth = (st["py_blocks"] - blocks0) / blocks0
        print(f"soak: RSS {rss0} -> {rss1} KiB ({growth * 100:+.2f} %), fds {fds1} -> {fds2}; "
              f"server stats {st}", flush=True)
        if growth >= MAX_RSS_GROWTH:
            failures.append(f"RSS grew {growth * 100:.2f} % (limit {MAX_RSS_GROWTH * 100:.0f} %)")
        if blocks_growth >= 0.01:
            # Python objects that outlive their connection or event (views,
            # Connection wrappers, payloads) show here before they show in RSS.
            failures.append(f"Python allocated blocks grew {blocks_growth * 100:.2f} % "
                            f"({blocks0} -> {st['py_blocks']})")
        if fds2 != fds1:
            failures.append(f"{fds2 - fds1} file descriptors left over")
        if st["wakeups"] != counts["wakeups"] or st["wakeup_errors"] or st["sender_errors"]:
            failures.append(f"wakeups: {st['wakeups']} of {counts['wakeups']}, "
                            f"{st['wakeup_errors']} wrong, {st['sender_errors']} send errors")
        if st["handler_errors"]:
            failures.append(f"{st['handler_errors']} handler exceptions in the server")
        want_requests = soak.requests_sent  # the last /stats counted itself
        if st["requests"] != want_requests:
            failures.append(f"server saw {st['requests']} requests, sent {want_requests}")
        if st["opened"] != st["closed"] + st["live"] + 1:  # + the listener
            failures.append(f"opened {st['opened']} != closed {st['closed']} + live {st['live']}")
    finally:
        rc = soak.quit()
    if rc != 0:
        failures.append(f"server exited with {rc}")
    elapsed = time.monotonic() - t_start
    for f in failures:
        print(f"soak: FAILED: {f}", flush=True)
    print(f"soak: {'FAILED' if failures else 'ok'} in {elapsed:.1f}s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
