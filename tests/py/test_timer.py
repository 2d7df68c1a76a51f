"""Timers (SPEC 1.8, 2.9)."""

from __future__ import annotations

import gc
import threading
import time

import pytest
from conftest import listen_free, poll_for, poll_until, serve, wait_until

from cymongoose import Timer

pytestmark = pytest.mark.timeout(60)


def test_one_shot_fires_exactly_once(make_manager):
    m = make_manager()
    calls = []
    t = m.timer_add(20, lambda: calls.append(time.monotonic()))
    assert type(t) is Timer
    assert t.active is True
    assert calls == []  # never inside timer_add
    assert poll_until(m, lambda: calls)
    poll_for(m, 0.15)
    assert len(calls) == 1
    assert t.active is False


def test_one_shot_is_not_early(make_manager):
    m = make_manager()
    calls = []
    t0 = time.monotonic()
    m.timer_add(100, lambda: calls.append(time.monotonic()))
    assert poll_until(m, lambda: calls)
    assert calls[0] - t0 >= 0.09


def test_repeat_keeps_firing_until_cancel(make_manager):
    m = make_manager()
    calls = []
    t = m.timer_add(10, lambda: calls.append(1), repeat=True)
    assert poll_until(m, lambda: len(calls) >= 5)
    assert t.active is True
    t.cancel()
    assert t.active is False
    n = len(calls)
    poll_for(m, 0.1)
    assert len(calls) == n
    t.cancel()  # idempotent


def test_run_now_fires_on_next_poll(make_manager):
    m = make_manager()
    calls = []
    m.timer_add(10_000, lambda: calls.append(1), run_now=True)
    assert calls == []
    m.poll(10)
    assert calls == [1]
    poll_for(m, 0.1)
    assert calls == [1]


def test_run_now_repeat_then_period(make_manager):
    m = make_manager()
    calls = []
    m.timer_add(50, lambda: calls.append(time.monotonic()), repeat=True, run_now=True)
    m.poll(0)
    assert len(calls) == 1
    assert poll_until(m, lambda: len(calls) >= 3)
    assert calls[1] - calls[0] >= 0.04


def test_zero_ms_fires_on_next_poll(make_manager):
    m = make_manager()
    calls = []
    t = m.timer_add(0, lambda: calls.append(1))
    assert calls == []
    m.poll(10)
    assert calls == [1]
    assert t.active is False
    m.poll(10)
    assert calls == [1]


def test_discarded_timer_still_fires(make_manager):
    m = make_manager()
    calls = []

    def add():
        m.timer_add(10, lambda: calls.append("fired"))  # Timer object dropped

    add()
    gc.collect()
    assert poll_until(m, lambda: calls)
    assert calls == ["fired"]


def test_discarded_repeating_timer_keeps_firing(make_manager):
    m = make_manager()
    calls = []
    m.timer_add(5, lambda: calls.append(1), repeat=True)
    gc.collect()
    assert poll_until(m, lambda: len(calls) >= 3)


def test_cancelled_timer_never_fires(make_manager):
    m = make_manager()
    calls = []
    t = m.timer_add(0, lambda: calls.append(1))
    t.cancel()
    assert t.active is False
    poll_for(m, 0.05)
    assert calls == []


def test_cancel_from_another_thread_while_polling(make_manager):
    m = make_manager(enable_wakeup=True)
    listen_free(m)
    calls = []
    t = m.timer_add(2, lambda: calls.append(1), repeat=True)
    with serve(m, step_ms=2):
        assert wait_until(lambda: len(calls) >= 5)
        t.cancel()
        at_cancel = len(calls)
        assert t.active is False
        time.sleep(0.3)
        assert len(calls) <= at_cancel + 1


def test_cancel_is_thread_safe_for_many_timers(make_manager):
    m = make_manager(enable_wakeup=True)
    calls = []
    timers = [m.timer_add(1, lambda: calls.append(1), repeat=True) for _ in range(50)]
    with serve(m, step_ms=1):
        assert wait_until(lambda: len(calls) >= 100)
        threads = [threading.Thread(target=lambda ts=timers[i::5]: [x.cancel() for x in ts])
                   for i in range(5)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(5)
        at_cancel = len(calls)
        time.sleep(0.2)
        assert len(calls) <= at_cancel + 50
        settled = len(calls)
        time.sleep(0.1)
        assert len(calls) == settled
    assert not any(x.active for x in timers)


def test_ties_fire_in_fifo_order(make_manager):
    m = make_manager()
    order = []
    for i in range(10):
        m.timer_add(30, lambda i=i: order.append(i))
    assert poll_until(m, lambda: len(order) == 10)
    assert order == list(range(10))


def test_zero_ms_ties_fire_in_fifo_order(make_manager):
    m = make_manager()
    order = []
    for i in range(10):
        m.timer_add(0, lambda i=i: order.append(i))
    m.poll(10)
    assert order == list(range(10))


def test_late_repeating_timer_fires_once_no_burst(make_manager):
    m = make_manager()
    calls = []
    m.timer_add(10, lambda: calls.append(1), repeat=True)
    assert poll_until(m, lambda: calls)
    n = len(calls)
    time.sleep(0.2)  # late by ~20 periods
    m.poll(0)
    assert len(calls) == n + 1


def test_timer_added_from_callback(make_manager):
    m = make_manager()
    calls = []

    def first():
        calls.append("first")
        m.timer_add(0, lambda: calls.append("second"))

    m.timer_add(0, first)
    assert poll_until(m, lambda: len(calls) == 2)
    assert calls == ["first", "second"]


def test_cancel_from_own_callback(make_manager):
    m = make_manager()
    calls = []
    holder = {}

    def cb():
        calls.append(1)
        if len(calls) == 3:
            holder["t"].cancel()

    holder["t"] = m.timer_add(1, cb, repeat=True)
    assert poll_until(m, lambda: len(calls) >= 3)
    poll_for(m, 0.1)
    assert len(calls) == 3


def test_close_frees_timers(make_manager):
    m = make_manager()
    calls = []
    t1 = m.timer_add(10, lambda: calls.append(1), repeat=True)
    t2 = m.timer_add(10_000, lambda: calls.append(2))
    m.close()
    assert t1.active is False and t2.active is False
    t1.cancel()  # still safe
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        m.timer_add(0, lambda: calls.append(3))
    assert calls == []


def test_timer_callback_gets_no_arguments(make_manager):
    m = make_manager()
    got = []
    m.timer_add(0, lambda *a, **k: got.append((a, k)))
    m.poll(10)
    assert got == [((), {})]


def test_first_expiry_counts_from_first_poll(make_manager):
    m = make_manager()
    calls = []
    m.timer_add(150, lambda: calls.append(1))
    time.sleep(0.3)  # longer than the period, but nothing has polled yet
    m.poll(0)
    assert calls == []
    assert poll_until(m, lambda: calls)
