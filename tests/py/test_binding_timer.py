"""Timer objects of the C binding: ownership by the manager, the deferred
cancel queue, exceptions in callbacks, argument checks."""

from __future__ import annotations

import gc
import sys
import threading
import weakref

import pytest

from cymongoose import Timer


def test_argument_checks(make_manager):
    m = make_manager()
    with pytest.raises(OverflowError):
        m.timer_add(-1, lambda: None)
    with pytest.raises(TypeError):
        m.timer_add(1.5, lambda: None)
    with pytest.raises(TypeError):
        m.timer_add(1, None)
    with pytest.raises(TypeError):
        m.timer_add(1, lambda: None, True)  # repeat is keyword-only
    m.close()
    with pytest.raises(RuntimeError, match="^Manager has been freed$"):
        m.timer_add(1, lambda: None)


def test_repr_and_active(make_manager):
    m = make_manager()
    t = m.timer_add(25, lambda: None, repeat=True)
    assert isinstance(t, Timer)
    assert repr(t) == "<Timer period=25ms repeat=True active=True>"
    t.cancel()
    assert repr(t) == "<Timer period=25ms repeat=True active=False>"


def test_manager_owns_running_timers_and_lets_go(make_manager):
    m = make_manager()
    fired = []
    ref = weakref.ref(m.timer_add(0, lambda: fired.append(1)))
    gc.collect()
    assert ref() is not None  # the manager keeps it until it fires
    m.poll(0)
    gc.collect()
    assert fired == [1] and ref() is None  # one-shot: reference dropped


def test_cancelled_timer_released_at_next_poll(make_manager):
    m = make_manager()
    t = m.timer_add(1000, lambda: None, repeat=True)
    ref = weakref.ref(t)
    t.cancel()
    del t
    gc.collect()
    assert ref() is not None  # queued until the poll thread applies it
    m.poll(0)
    gc.collect()
    assert ref() is None


def test_cancel_from_other_timer_in_same_iteration_skips_it(make_manager):
    m = make_manager()
    order = []
    victim = None

    def first():
        order.append("first")
        victim.cancel()

    m.timer_add(0, first)
    victim = m.timer_add(0, lambda: order.append("victim"))
    m.poll(0)
    m.poll(0)
    assert order == ["first"] and not victim.active


def test_cancel_inside_own_one_shot_and_after_fire(make_manager):
    m = make_manager()
    hits = []

    def cb():
        hits.append(1)
        t.cancel()
        t.cancel()

    t = m.timer_add(0, cb)
    m.poll(0)
    t.cancel()
    m.poll(0)
    assert hits == [1] and not t.active


def test_close_drops_timers_and_queue(make_manager):
    m = make_manager()
    running = m.timer_add(1000, lambda: None, repeat=True)
    queued = m.timer_add(1000, lambda: None)
    queued.cancel()
    refs = [weakref.ref(running), weakref.ref(queued)]
    m.close()
    assert not running.active and not queued.active
    running.cancel()  # harmless after close
    del running, queued
    gc.collect()
    assert [r() for r in refs] == [None, None]


def test_callback_cycle_is_collected():
    from cymongoose import Manager

    class Owner:
        def __init__(self):
            self.mgr = Manager()
            self.timer = self.mgr.timer_add(1000, self.tick, repeat=True)

        def tick(self):
            pass

    ref = weakref.ref(Owner())
    gc.collect()
    assert ref() is None


def test_exception_goes_to_stderr_and_later_timers_still_run(make_manager, capsys):
    seen = []
    m = make_manager(error_handler=lambda exc: seen.append(exc))
    m.timer_add(0, lambda: 1 / 0)
    m.timer_add(0, lambda: seen.append("next"))
    m.poll(0)
    assert seen == ["next"]  # never the error_handler
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err


def test_base_exception_skips_later_timers_in_that_poll(make_manager):
    seen = []

    def stop():
        raise SystemExit(4)

    m = make_manager()
    m.timer_add(0, stop)
    m.timer_add(0, lambda: seen.append("later"))
    with pytest.raises(SystemExit):
        m.poll(0)
    assert seen == []
    assert sys.exc_info() == (None, None, None)


def test_cancel_from_threads_while_polling(make_manager):
    m = make_manager(enable_wakeup=True)
    fired = []
    timers = [m.timer_add(5, lambda i=i: fired.append(i), repeat=True) for i in range(50)]
    stop = threading.Event()

    def canceller():
        for t in timers:
            t.cancel()
        stop.set()

    th = threading.Thread(target=canceller)
    th.start()
    for _ in range(500):
        m.poll(1)
        if stop.is_set():
            break
    th.join(5)
    m.poll(0)
    count = len(fired)
    for _ in range(5):
        m.poll(6)
    assert len(fired) == count and not any(t.active for t in timers)
