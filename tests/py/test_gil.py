"""poll() releases the GIL while it waits (SPEC 1.4, 1.14; issue 2 "Done when")."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import listen_free

pytestmark = pytest.mark.timeout(60)

DURATION = 1.0


def _count_while(main_activity) -> int:
    """Count in a tight loop on a second thread while the main thread runs
    ``main_activity(stop_at)``; return how far the counter got."""
    stop = threading.Event()
    result = []

    def counter():
        n = 0
        while not stop.is_set():
            n += 1
        result.append(n)

    t = threading.Thread(target=counter)
    t.start()
    try:
        main_activity(time.monotonic() + DURATION)
    finally:
        stop.set()
        t.join(10)
    assert result, "counter thread did not finish"
    return result[0]


def test_poll_releases_gil_while_waiting(make_manager):
    m = make_manager()
    listen_free(m)            # idle sockets: an HTTP and a TCP listener
    listen_free(m, "tcp")
    polls = []

    def idle_sleep(stop_at):
        while time.monotonic() < stop_at:
            time.sleep(0.2)

    def idle_poll(stop_at):
        for _ in range(100):
            if time.monotonic() >= stop_at:
                break
            t0 = time.monotonic()
            m.poll(200)
            polls.append(time.monotonic() - t0)

    baseline = _count_while(idle_sleep)
    with_poll = _count_while(idle_poll)
    assert baseline > 0
    # poll(200) really waited (otherwise this test proves nothing).
    assert polls and max(polls) >= 0.1
    ratio = with_poll / baseline
    assert ratio > 0.5, f"counter made {ratio:.2f}x of baseline progress while poll() waited"
