"""wakeup() (SPEC 1.4, 2.11, Decision 8)."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from conftest import (
    Recorder,
    http_get,
    listen_free,
    poll_for,
    poll_until,
    raw_connect,
    serve,
    wait_until,
)

from cymongoose import MG_EV_ACCEPT, MG_EV_HTTP_MSG, MG_EV_WAKEUP

pytestmark = pytest.mark.timeout(60)


def _wake_mgr(make_manager):
    rec = Recorder()
    m = make_manager(rec, enable_wakeup=True)
    lst, _ = listen_free(m)
    return m, lst, rec


def _payloads(rec, conn=None):
    return [d for c, e, d in list(rec.events)
            if e == MG_EV_WAKEUP and (conn is None or c is conn)]


def test_wakeup_argument_types(make_manager):
    m, lst, _ = _wake_mgr(make_manager)
    with pytest.raises(TypeError):
        m.wakeup(lst.id, "text")
    with pytest.raises(TypeError):
        m.wakeup(lst.id, bytearray(b"x"))
    with pytest.raises(OverflowError):
        m.wakeup(-1, b"x")
    assert m.wakeup(lst.id, b"ok") is True


def test_wakeup_not_enabled_returns_false(make_manager):
    rec = Recorder()
    m = make_manager(rec)
    lst, _ = listen_free(m)
    assert m.wakeup_id == 0
    assert m.wakeup(lst.id, b"x") is False
    poll_for(m, 0.03)
    assert _payloads(rec) == []


def test_empty_and_default_payload(make_manager):
    m, lst, rec = _wake_mgr(make_manager)
    assert m.wakeup(lst.id, b"") is True
    assert m.wakeup(lst.id) is True
    assert poll_until(m, lambda: len(_payloads(rec)) == 2)
    for p in _payloads(rec, lst):
        assert type(p) is bytes and p == b""


def test_payload_reaches_only_target_connection(make_manager):
    m, lst, rec = _wake_mgr(make_manager)
    _, port = listen_free(m, "tcp")
    s = raw_connect(port)
    try:
        assert poll_until(m, lambda: rec.conns(MG_EV_ACCEPT))
        child = rec.conns(MG_EV_ACCEPT)[0]
        assert m.wakeup(child.id, b"for-child") is True
        assert m.wakeup(lst.id, b"for-listener") is True
        assert poll_until(m, lambda: len(_payloads(rec)) == 2)
        poll_for(m, 0.03)
        assert _payloads(rec, child) == [b"for-child"]
        assert _payloads(rec, lst) == [b"for-listener"]
        assert len(_payloads(rec)) == 2
    finally:
        s.close()


def test_three_quick_wakeups_and_fifo_order(make_manager):
    m, lst, rec = _wake_mgr(make_manager)
    for i in range(3):
        m.wakeup(lst.id, b"quick%d" % i)
    assert poll_until(m, lambda: len(_payloads(rec)) == 3)
    assert _payloads(rec) == [b"quick0", b"quick1", b"quick2"]
    for i in range(500):
        m.wakeup(lst.id, b"%d" % i)
    assert poll_until(m, lambda: len(_payloads(rec)) == 503)
    assert _payloads(rec)[3:] == [b"%d" % i for i in range(500)]


def test_all_pending_wakeups_delivered_in_one_iteration(make_manager):
    m, lst, rec = _wake_mgr(make_manager)
    m.poll(0)  # settle
    for i in range(100):
        assert m.wakeup(lst.id, b"p%d" % i)
    m.poll(100)  # exactly one iteration
    assert _payloads(rec) == [b"p%d" % i for i in range(100)]


def test_wakeup_interrupts_blocking_poll(make_manager):
    m = make_manager(enable_wakeup=True)
    listen_free(m)
    elapsed = []
    started = threading.Event()

    def blocker():
        started.set()
        t0 = time.monotonic()
        m.poll(2000)
        elapsed.append(time.monotonic() - t0)

    t = threading.Thread(target=blocker)
    t.start()
    assert started.wait(5)
    time.sleep(0.1)
    assert m.wakeup(m.wakeup_id, b"") is True
    t.join(5)
    assert elapsed, "poll(2000) did not return"
    assert elapsed[0] < 1.5


@pytest.mark.parametrize("size", [1 << 20, 16 << 20])
def test_large_payload_intact(make_manager, size):
    m, lst, rec = _wake_mgr(make_manager)
    block = hashlib.sha256(b"seed").digest()
    payload = (block * (size // len(block) + 1))[:size - 3] + b"\x00\xff\x00"
    assert len(payload) == size
    assert m.wakeup(lst.id, payload) is True
    assert poll_until(m, lambda: _payloads(rec), timeout=20)
    got = _payloads(rec)
    assert len(got) == 1
    assert len(got[0]) == size
    assert got[0] == payload


def test_large_payload_from_another_thread(make_manager):
    m, lst, rec = _wake_mgr(make_manager)
    payload = bytes(range(256)) * 4096  # 1 MiB
    results = []
    t = threading.Thread(target=lambda: results.append(m.wakeup(lst.id, payload)))
    t.start()
    t.join(10)
    assert results == [True]
    assert poll_until(m, lambda: _payloads(rec))
    assert _payloads(rec) == [payload]


def test_wakeup_from_many_threads_per_thread_order(make_manager):
    m, lst, rec = _wake_mgr(make_manager)
    n_threads, per = 4, 300
    start = threading.Barrier(n_threads)

    def producer(k):
        start.wait(5)
        for i in range(per):
            m.wakeup(lst.id, b"%d:%d" % (k, i))

    with serve(m, step_ms=5):
        threads = [threading.Thread(target=producer, args=(k,)) for k in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        assert wait_until(lambda: len(_payloads(rec)) == n_threads * per, timeout=10)
    got = _payloads(rec)
    for k in range(n_threads):
        mine = [p for p in got if p.startswith(b"%d:" % k)]
        assert mine == [b"%d:%d" % (k, i) for i in range(per)]


def test_wakeup_for_unknown_or_closed_id_is_harmless(make_manager):
    m, lst, rec = _wake_mgr(make_manager)
    _, port = listen_free(m, "tcp")
    s = raw_connect(port)
    assert poll_until(m, lambda: rec.conns(MG_EV_ACCEPT))
    child = rec.conns(MG_EV_ACCEPT)[0]
    child_id = child.id
    s.close()
    assert poll_until(m, lambda: child.id == 0)
    assert m.wakeup(child_id, b"late") in (True, False)
    assert m.wakeup(10_000_000, b"nobody") in (True, False)
    poll_for(m, 0.05)
    assert _payloads(rec) == []
    m.wakeup(lst.id, b"alive")
    assert poll_until(m, lambda: _payloads(rec) == [b"alive"])


def test_wakeup_after_close_raises(make_manager):
    m, lst, _ = _wake_mgr(make_manager)
    m.close()
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        m.wakeup(1, b"x")


def test_wakeup_reply_to_http_request(make_manager):
    # The guide's basic shape: a worker thread answers through wakeup().
    holder = {}

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            body = data.body_bytes
            cid = conn.id
            threading.Thread(target=lambda: holder["m"].wakeup(cid, body[::-1])).start()
        elif ev == MG_EV_WAKEUP:
            conn.reply(200, data)
            conn.drain()

    m = make_manager(handler, enable_wakeup=True)
    holder["m"] = m
    _, port = listen_free(m)
    with serve(m):
        status, _, body = http_get(f"http://127.0.0.1:{port}/", data=b"abc\x00def")
    assert (status, body) == (200, b"fed\x00cba")


def test_huge_payload_from_small_stack_thread(make_manager):
    # Decision 8: no payload is copied onto the calling thread's stack.
    m, lst, rec = _wake_mgr(make_manager)
    payload = bytes(range(251)) * (16 * 1024 * 1024 // 251)
    results = []
    old = threading.stack_size(256 * 1024)
    try:
        t = threading.Thread(target=lambda: results.append(m.wakeup(lst.id, payload)))
        t.start()
    finally:
        threading.stack_size(old)
    t.join(20)
    assert results == [True]
    assert poll_until(m, lambda: _payloads(rec), timeout=20)
    assert _payloads(rec) == [payload]


def test_wakeup_from_handler_on_poll_thread(make_manager):
    holder = {}
    got = []

    def handler(conn, ev, data):
        if ev == MG_EV_ACCEPT:
            holder["m"].wakeup(conn.id, b"self-wake")
        elif ev == MG_EV_WAKEUP:
            got.append((conn.id, data))

    m = make_manager(handler, enable_wakeup=True)
    holder["m"] = m
    _, port = listen_free(m, "tcp")
    s = raw_connect(port)
    try:
        assert poll_until(m, lambda: got)
        assert got[0][1] == b"self-wake" and got[0][0] > 0
    finally:
        s.close()
