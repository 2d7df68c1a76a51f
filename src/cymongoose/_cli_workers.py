"""The supervisor of ``python -m cymongoose ... --workers N``.

N worker processes each listen on the same addresses with SO_REUSEPORT, so the kernel
spreads new connections over them.  The supervisor only watches: it restarts a worker that
dies, forwards SIGUSR1 (print the counters), and on SIGTERM or SIGINT asks every worker to
stop (each drains: no new connections, the requests in progress finish, the ASGI lifespan
shutdown runs), then waits at most ``graceful_timeout`` + 5 s before killing what is left.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable

log = logging.getLogger("cymongoose")

_FAST_FAIL = 1.0  # s: a worker that fails this soon after its start failed to start


def _spawn(work: Callable[[], int]) -> int:
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            code = work()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - a worker must never return into the supervisor
            log.exception("worker failed")
        finally:
            logging.shutdown()
            os._exit(code)
    return pid


def supervise(work: Callable[[], int], workers: int, graceful_timeout: float) -> int:
    """Run ``work`` in ``workers`` processes until a signal; returns the exit code."""
    stopping = False
    usr1 = False

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    def on_usr1(signum: int, frame: object) -> None:
        nonlocal usr1
        usr1 = True

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGUSR1, on_usr1)
    started: dict[int, float] = {}
    for _ in range(workers):
        started[_spawn(work)] = time.monotonic()
    log.info("supervisor %d: %d workers: %s", os.getpid(), workers, " ".join(map(str, started)))
    code = 0
    while not stopping:
        if usr1:
            usr1 = False
            for pid in started:
                _kill(pid, signal.SIGUSR1)
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid, status = 0, 0
        if pid == 0:
            time.sleep(0.05)
            continue
        born = started.pop(pid, None)
        if born is None:
            continue
        rc = os.waitstatus_to_exitcode(status)
        # A worker that exits with an error right away (bad port, lifespan startup failed)
        # would fail again: stop.  One killed by a signal is replaced.
        if rc > 0 and time.monotonic() - born < _FAST_FAIL:
            log.error("worker %d failed at start (exit %d): stopping", pid, rc)
            code = rc if rc > 0 else 1
            break
        if stopping:
            break
        new = _spawn(work)
        started[new] = time.monotonic()
        log.warning("worker %d exited (%d); started worker %d", pid, rc, new)
    for pid in started:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + graceful_timeout + 5
    while started and time.monotonic() < deadline:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
        else:
            started.pop(pid, None)
    for pid in started:
        log.error("worker %d did not stop in time: killed", pid)
        _kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return code


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
