"""Wakeup stress (issue 2, Decision 8): 8 threads x 10,000 wakeups to one
connection; every payload arrives exactly once, intact, in each thread's order.

Payload = 16-byte header (thread, seq, body length, crc32(body)) + body.
Bodies are slices of one deterministic 2 MiB pool, so nothing needs to be
stored per message: the receiver recomputes the expected body from (thread, seq).
Sizes: most bodies are 0 bytes to 4 KiB (about 30% empty); every hundredth
payload is 64 KiB .. 1 MiB, every thousandth exactly 1 MiB.
"""

from __future__ import annotations

import random
import struct
import threading
import time
import zlib

import pytest
from conftest import listen_free

from cymongoose import MG_EV_WAKEUP

N_THREADS = 8
PER_THREAD = 10_000
TOTAL = N_THREADS * PER_THREAD
HDR = struct.Struct("<IIII")
MAX_PAYLOAD = 1 << 20
POOL = random.Random(20240602).randbytes(2 << 20)
WINDOW = 256  # in-flight payloads per thread: keeps memory bounded
HARD_LIMIT = 110.0

pytestmark = pytest.mark.timeout(150)


def body_len(k: int, seq: int) -> int:
    if seq % 1000 == 999:
        return MAX_PAYLOAD - HDR.size
    if seq % 100 == 99:
        return max(64 << 10, (k * 7919 + seq * 104729) % (MAX_PAYLOAD - HDR.size))
    if (k * 31 + seq * 17) % 10 < 3:
        return 0
    return (k * 131 + seq * 977) % 4097


def body_off(k: int, seq: int) -> int:
    return (k * 1009 + seq * 7919) % (len(POOL) - MAX_PAYLOAD)


def make_payload(k: int, seq: int) -> bytes:
    n = body_len(k, seq)
    off = body_off(k, seq)
    body = POOL[off:off + n]
    return HDR.pack(k, seq, n, zlib.crc32(body)) + body


def test_payload_plan_matches_the_brief():
    sizes = [len(make_payload(k, s)) - HDR.size for k in range(2) for s in range(PER_THREAD)]
    assert max(sizes) == MAX_PAYLOAD - HDR.size
    big = [n for n in sizes if n > 4096]
    assert len(big) == 2 * PER_THREAD // 100
    assert sum(1 for n in sizes if n == 0) > len(sizes) // 5


def test_eight_threads_ten_thousand_wakeups_each(make_manager):
    expected_seq = [0] * N_THREADS
    windows = [threading.Semaphore(WINDOW) for _ in range(N_THREADS)]
    errors: list[str] = []
    counters = {"received": 0, "bytes": 0, "wrong_conn": 0}
    holder = {}

    def fail(msg: str) -> None:
        if len(errors) < 50:
            errors.append(msg)

    def handler(conn, ev, data):
        if ev != MG_EV_WAKEUP:
            return
        if conn is not holder["lst"]:
            counters["wrong_conn"] += 1
            return
        counters["received"] += 1
        counters["bytes"] += len(data)
        if type(data) is not bytes or len(data) < HDR.size:
            fail(f"short payload {len(data)}")
            return
        k, seq, n, crc = HDR.unpack_from(data)
        if k >= N_THREADS:
            fail(f"bad thread id {k}")
            return
        windows[k].release()
        if seq != expected_seq[k]:
            fail(f"thread {k}: got seq {seq}, expected {expected_seq[k]}")
        expected_seq[k] = seq + 1
        body = memoryview(data)[HDR.size:]
        if len(body) != n or n != body_len(k, seq):
            fail(f"thread {k} seq {seq}: length {len(body)} (header {n})")
            return
        off = body_off(k, seq)
        if zlib.crc32(body) != crc or body != POOL[off:off + n]:
            fail(f"thread {k} seq {seq}: body corrupted")

    m = make_manager(handler, enable_wakeup=True)
    lst, _ = listen_free(m)
    holder["lst"] = lst
    target = lst.id
    barrier = threading.Barrier(N_THREADS + 1)
    sent = [0] * N_THREADS
    rejected = []
    abort = threading.Event()

    def producer(k: int) -> None:
        barrier.wait(10)
        for seq in range(PER_THREAD):
            if abort.is_set():
                return
            if not windows[k].acquire(timeout=30):
                rejected.append((k, seq, "window stalled: payloads stopped arriving"))
                return
            if m.wakeup(target, make_payload(k, seq)) is not True:
                rejected.append((k, seq, "wakeup() returned False"))
                return
            sent[k] += 1

    threads = [threading.Thread(target=producer, args=(k,), daemon=True)
               for k in range(N_THREADS)]
    for t in threads:
        t.start()
    barrier.wait(10)
    t0 = time.monotonic()
    deadline = t0 + HARD_LIMIT
    for _ in range(int(HARD_LIMIT * 1000)):
        if counters["received"] >= TOTAL or time.monotonic() >= deadline or rejected:
            break
        m.poll(50)
    # Anything still queued must show up promptly; then nothing more may arrive.
    for _ in range(20):
        m.poll(10)
    abort.set()
    for t in threads:
        t.join(35)
    elapsed = time.monotonic() - t0

    assert not any(t.is_alive() for t in threads), "producer threads hung"
    assert rejected == [], rejected[:5]
    assert errors == [], errors[:10]
    assert counters["wrong_conn"] == 0
    assert sent == [PER_THREAD] * N_THREADS
    assert counters["received"] == TOTAL, (
        f"received {counters['received']} of {TOTAL} in {elapsed:.1f}s")
    assert expected_seq == [PER_THREAD] * N_THREADS
