"""asyncio integration: a Manager polled by a background thread.

``AsyncManager`` runs ``Manager.poll()`` on a daemon thread so an asyncio program keeps its
event loop free, and serialises every call into the Manager with one re-entrant lock: a
handler (which runs on the poll thread, holding the lock) may call ``am.timer_add()`` or
``am.listen()`` without deadlocking.  Results travel back to asyncio with ``schedule()``::

    async with AsyncManager(handler) as am:
        am.listen("http://127.0.0.1:8000")
        await asyncio.sleep(60)

A call from the asyncio side first wakes the poll thread (``Manager.wakeup``), so it gets the
lock within a poll slice, not after a whole ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import threading
import traceback
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

from ._mongoose import Connection, Manager, Timer

__all__ = ["AsyncManager"]

_JOIN_SLICE = 5.0  # seconds between "not stopped yet" warnings in __aexit__
_MAX_POLL_MS = 200  # a poll slice holds the lock at most this long (starvation, 0.2.1)


class AsyncManager:
    """A Manager polled on a background thread, for asyncio programs.

    ``handler(conn, ev, data)`` and ``error_handler(exc)`` are those of ``Manager``;
    ``poll_interval`` (ms) bounds each poll (capped at 200); ``shutdown_timeout`` (s) is how
    long ``__aexit__`` waits for the poll thread before abandoning it with a warning.
    """

    def __init__(
        self,
        handler: Callable[[Connection, int, Any], object] | None = None,
        poll_interval: int = 100,
        error_handler: Callable[[Exception], object] | None = None,
        shutdown_timeout: float = 30,
    ) -> None:
        self._handler = handler
        self._poll_interval = poll_interval
        self._error_handler = error_handler
        self._shutdown_timeout = shutdown_timeout
        self._manager: Manager | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()

    # ---- lifetime ---------------------------------------------------------------------

    async def __aenter__(self) -> AsyncManager:
        if self._manager is not None:
            raise RuntimeError("AsyncManager is already started")
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._manager = Manager(
            self._handler, enable_wakeup=True, error_handler=self._error_handler
        )
        self._thread = threading.Thread(target=self._run, name="cymongoose-poll", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> bool:
        thread, manager = self._thread, self._manager
        if thread is None or manager is None:
            return False
        self._stop.set()
        self._wake_poll()
        loop = asyncio.get_running_loop()
        waited = 0.0
        while thread.is_alive():
            if waited >= self._shutdown_timeout:
                warnings.warn(
                    f"AsyncManager poll thread did not stop within {self._shutdown_timeout}s; "
                    "abandoning thread. A handler is probably blocked; the Manager is not closed.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return False
            step = min(_JOIN_SLICE, self._shutdown_timeout - waited)
            await loop.run_in_executor(None, thread.join, step)
            waited += step
            if thread.is_alive():
                warnings.warn(
                    f"AsyncManager poll thread has not stopped after {waited:g}s; still waiting",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self._wake_poll()
        manager.close()
        self._manager = None
        self._thread = None
        return False

    def _run(self) -> None:
        manager = self._manager
        assert manager is not None
        ms = max(0, min(int(self._poll_interval), _MAX_POLL_MS))
        stop, lock = self._stop, self._lock
        try:
            while not stop.is_set():
                with lock:
                    if stop.is_set():
                        break
                    manager.poll(ms)
                # Let a caller waiting for the lock in (RLock is not fair).
                stop.wait(0.001)
        except BaseException:  # noqa: BLE001 - a dying thread must say why
            traceback.print_exc()

    def _wake_poll(self) -> None:
        manager = self._manager
        if manager is not None:
            try:
                manager.wakeup(manager.wakeup_id, b"")
            except RuntimeError:
                pass  # closed meanwhile

    def _locked(self) -> Manager:
        manager = self._manager
        if manager is None:
            raise RuntimeError("AsyncManager is not started")
        self._wake_poll()
        return manager

    # ---- the Manager's calls, serialised ------------------------------------------------

    def listen(
        self, url: str, handler: Any = None, *, http: bool | None = None, **limits: Any
    ) -> Connection:
        """``Manager.listen`` (limits and ``reuse_port`` are passed on)."""
        manager = self._locked()
        with self._lock:
            return manager.listen(url, handler, http=http, **limits)

    def connect(self, url: str, handler: Any = None, *, http: bool | None = None) -> Connection:
        """``Manager.connect``."""
        manager = self._locked()
        with self._lock:
            return manager.connect(url, handler, http=http)

    def mqtt_connect(self, url: str, **kwargs: Any) -> Connection:
        """``Manager.mqtt_connect``."""
        manager = self._locked()
        with self._lock:
            return manager.mqtt_connect(url, **kwargs)

    def mqtt_listen(self, url: str, handler: Any = None) -> Connection:
        """``Manager.mqtt_listen``."""
        manager = self._locked()
        with self._lock:
            return manager.mqtt_listen(url, handler)

    def sntp_connect(self, url: str, handler: Any = None) -> Connection:
        """``Manager.sntp_connect``."""
        manager = self._locked()
        with self._lock:
            return manager.sntp_connect(url, handler)

    def timer_add(
        self,
        milliseconds: int,
        callback: Callable[[], object],
        *,
        repeat: bool = False,
        run_now: bool = False,
    ) -> Timer:
        """``Manager.timer_add``."""
        manager = self._locked()
        with self._lock:
            return manager.timer_add(milliseconds, callback, repeat=repeat, run_now=run_now)

    def wakeup(self, connection_id: int, data: bytes = b"") -> bool:
        """``Manager.wakeup``: thread-safe by itself, so no lock."""
        manager = self._manager
        if manager is None:
            raise RuntimeError("AsyncManager is not started")
        return manager.wakeup(connection_id, data)

    def schedule(self, coro_or_callback: Coroutine[Any, Any, Any] | Callable[[], object]) -> Any:
        """Run a coroutine or a callback on the asyncio loop; safe from handlers (any thread).

        Returns a ``concurrent.futures.Future`` for a coroutine, an ``asyncio.Handle`` else.
        """
        loop = self._loop
        if loop is None or self._manager is None:
            raise RuntimeError("AsyncManager is not started")
        if asyncio.iscoroutine(coro_or_callback):
            return asyncio.run_coroutine_threadsafe(coro_or_callback, loop)
        return loop.call_soon_threadsafe(coro_or_callback)

    # ---- properties ---------------------------------------------------------------------

    @property
    def manager(self) -> Manager:
        """The underlying Manager (poll-thread only: prefer the methods above)."""
        if self._manager is None:
            raise RuntimeError("AsyncManager is not started")
        return self._manager

    @property
    def running(self) -> bool:
        """True while the poll thread runs."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()
