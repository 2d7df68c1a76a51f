"""cymongoose.aio.AsyncManager (SPEC 1.11): lifetime, locking, schedule(), warnings."""

from __future__ import annotations

import asyncio
import http.client
import threading
import warnings

import pytest

from cymongoose import MG_EV_HTTP_MSG, AsyncManager


def fetch(port: int, path: str = "/") -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_not_started_raises():
    am = AsyncManager()
    for call in (
        lambda: am.listen("http://127.0.0.1:0"),
        lambda: am.connect("http://127.0.0.1:1"),
        lambda: am.timer_add(10, lambda: None),
        lambda: am.wakeup(1, b""),
        lambda: am.schedule(lambda: None),
        lambda: am.manager,
    ):
        with pytest.raises(RuntimeError, match="AsyncManager is not started"):
            call()
    assert am.running is False


def test_serves_http_and_reentrant_timer_from_handler():
    """A handler (poll thread, lock held) calls am.timer_add: no deadlock; the timer replies."""
    seen: list[str] = []

    async def main() -> tuple[int, bytes]:
        done = asyncio.Event()

        async def note(uri: str) -> None:
            seen.append(uri)
            done.set()

        def handler(conn, ev, data):
            if ev == MG_EV_HTTP_MSG:
                am.schedule(note(data.uri))
                am.timer_add(5, lambda: conn.reply(200, b"from a timer"))

        async with AsyncManager(handler, poll_interval=1000) as am:
            assert am.running
            port = am.listen("http://127.0.0.1:0").local_addr[1]
            result = await asyncio.wait_for(asyncio.to_thread(fetch, port, "/x"), 10)
            await asyncio.wait_for(done.wait(), 10)
        assert not am.running
        return result

    assert asyncio.run(main()) == (200, b"from a timer")
    assert seen == ["/x"]


def test_calls_from_asyncio_do_not_wait_a_poll_interval():
    """poll_interval is capped at 200 ms and calls wake the poll: 20 listens are quick."""

    async def main() -> None:
        async with AsyncManager(poll_interval=10_000) as am:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for _ in range(20):
                am.listen("http://127.0.0.1:0")
            # Generous: 20 calls each waiting a whole 10 s slice would take 200 s.
            assert loop.time() - t0 < 8

    asyncio.run(main())


def test_schedule_callback_and_wakeup():
    async def main() -> list[object]:
        got: list[object] = []
        fired = asyncio.Event()
        async with AsyncManager() as am:
            am.schedule(lambda: (got.append("cb"), fired.set()))
            await asyncio.wait_for(fired.wait(), 5)
            assert am.wakeup(am.manager.wakeup_id, b"") is True
        return got

    assert asyncio.run(main()) == ["cb"]


def test_stuck_handler_warns_and_abandons():
    """A handler that never returns: __aexit__ warns and leaves the Manager unclosed."""
    release = threading.Event()

    async def main() -> AsyncManager:
        def handler(conn, ev, data):
            if ev == MG_EV_HTTP_MSG:
                release.wait(10)

        am = AsyncManager(handler, shutdown_timeout=0.5)
        async with am:
            port = am.listen("http://127.0.0.1:0").local_addr[1]
            t = threading.Thread(target=lambda: _quiet_fetch(port), daemon=True)
            t.start()
            for _ in range(200):
                await asyncio.sleep(0.01)
                if release.is_set() or _handler_busy(am):
                    break
        return am

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        am = asyncio.run(main())
    release.set()
    messages = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
    assert any("did not stop within 0.5s; abandoning thread" in m for m in messages), messages
    assert am._manager is not None  # not closed: the thread may still use it


def _quiet_fetch(port: int) -> None:
    try:
        fetch(port)
    except OSError:
        pass


def _handler_busy(am: AsyncManager) -> bool:
    # The poll thread holds the lock while the handler blocks.
    acquired = am._lock.acquire(timeout=0.05)
    if acquired:
        am._lock.release()
    return not acquired
