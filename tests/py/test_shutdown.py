"""Manager shutdown: close(), context manager, GC of a dropped Manager, run()
(SPEC 2.10, Decision 10)."""

from __future__ import annotations

import gc
import signal
import socket
import threading
import time

import pytest
from conftest import HOST, Recorder, listen_free, poll_until, raw_connect

from cymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_POLL,
    Manager,
)

pytestmark = pytest.mark.timeout(60)


def _populated(make_manager, **kwargs):
    rec = Recorder(skip_poll=False)
    m = make_manager(rec, **kwargs)
    lst, port = listen_free(m, "tcp")
    out = m.connect(f"tcp://127.0.0.1:{port}")
    s = raw_connect(port)
    assert poll_until(m, lambda: len(rec.conns(MG_EV_ACCEPT)) == 2
                      and rec.count(MG_EV_CONNECT, out) == 1)
    return m, rec, s


def test_close_fires_poll_and_close_for_every_connection(make_manager):
    m, rec, s = _populated(make_manager, enable_wakeup=True)
    try:
        conns = m.connections
        assert len(conns) == 4  # listener, outbound, two accepted
        mark = len(rec.events)
        conns[1].send(b"discarded on close")
        m.close()
        during = rec.events[mark:]
        for c in conns:
            evs = [e for cc, e, _ in during if cc is c]
            assert MG_EV_POLL in evs, f"no POLL for {c!r} during close()"
            assert evs.count(MG_EV_CLOSE) == 1, f"CLOSE count for {c!r}: {evs}"
            assert evs.index(MG_EV_POLL) < evs.index(MG_EV_CLOSE)
            assert evs[-1] == MG_EV_CLOSE
        for c in conns:
            assert c.id == 0 and c.is_closing is True and c.local_addr is None
            with pytest.raises(RuntimeError, match="closed"):
                c.send(b"x")
        assert m.connections == ()
    finally:
        s.close()


def test_close_is_idempotent_and_later_calls_raise(make_manager):
    m, rec, s = _populated(make_manager, enable_wakeup=True)
    s.close()
    m.close()
    n = len(rec.events)
    m.close()
    m.close()
    assert len(rec.events) == n  # no handler runs again
    for call in (lambda: m.poll(0), lambda: m.poll(10), lambda: m.wakeup(1, b"x"),
                 lambda: m.timer_add(10, lambda: None)):
        with pytest.raises(RuntimeError, match="Manager has been freed"):
            call()


def test_close_while_another_thread_polls_raises(make_manager):
    m = make_manager(enable_wakeup=True)
    listen_free(m)
    started = threading.Event()

    def blocker():
        started.set()
        m.poll(3000)

    t = threading.Thread(target=blocker)
    t.start()
    try:
        assert started.wait(5)
        time.sleep(0.2)  # let the thread enter poll()
        assert t.is_alive()
        with pytest.raises(RuntimeError, match="Cannot close Manager while poll\\(\\) is active"):
            m.close()
    finally:
        m.wakeup(m.wakeup_id, b"")
        t.join(10)
    assert not t.is_alive()
    m.close()
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        m.poll(0)


def test_context_manager_closes():
    rec = Recorder()
    with Manager(rec) as m:
        assert isinstance(m, Manager)
        lst, _ = listen_free(m)
        m.poll(0)
    assert lst.id == 0
    assert rec.count(MG_EV_CLOSE, lst) == 1
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        m.poll(0)


def test_context_manager_closes_on_exception():
    class Boom(Exception):
        pass

    holder = {}
    with pytest.raises(Boom):
        with Manager() as m:
            holder["m"] = m
            holder["lst"], _ = listen_free(m)
            raise Boom()
    assert holder["lst"].id == 0
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        holder["m"].poll(0)


def test_context_manager_exit_returns_false():
    m = Manager()
    assert m.__enter__() is m
    assert m.__exit__(None, None, None) is False


def _bind_ok(port: int) -> bool:
    # SO_REUSEADDR tolerates TIME_WAIT leftovers but still fails while anything
    # LISTENs on the port (Linux).
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            s.listen(1)
            return True
        except OSError:
            return False


def test_dropped_manager_releases_listening_port():
    calls = []  # event numbers only: keeping Connection objects would keep the Manager

    def create():
        m = Manager(lambda c, e, d: calls.append(e), enable_wakeup=True)
        _, port = listen_free(m, "tcp")
        m.poll(0)
        return port

    port = create()
    n = len(calls)
    assert poll_until_free(port)
    assert len(calls) == n  # no handler runs during GC
    with pytest.raises(ConnectionRefusedError):
        raw_connect(port, timeout=1).close()


def poll_until_free(port: int) -> bool:
    for _ in range(20):
        gc.collect()
        if _bind_ok(port):
            return True
        threading.Event().wait(0.05)
    return False


def test_dropped_manager_with_connections_and_timers():
    calls = []

    def create():
        m = Manager(lambda c, e, d: calls.append(e), enable_wakeup=True)
        lst, port = listen_free(m, "tcp")
        s = raw_connect(port)
        poll_until(m, lambda: len(m.connections) == 2)
        m.timer_add(1, lambda: calls.append("timer"), repeat=True)
        return port, s

    port, s = create()
    try:
        assert poll_until_free(port)
        n = len(calls)
        gc.collect()
        assert len(calls) == n
        assert "timer" not in calls
    finally:
        s.close()


# --------------------------------------------------------------------------
# run()


def _sentinel_int(signum, frame):  # pragma: no cover - never called
    raise AssertionError("sentinel SIGINT handler called")


def _sentinel_term(signum, frame):  # pragma: no cover - never called
    raise AssertionError("sentinel SIGTERM handler called")


@pytest.mark.timeout(20)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_stops_on_signal_and_restores_handlers(signum):
    old_int = signal.signal(signal.SIGINT, _sentinel_int)
    old_term = signal.signal(signal.SIGTERM, _sentinel_term)
    try:
        rec = Recorder()
        m = Manager(rec)
        lst, _ = listen_free(m)
        ticks = []

        def tick():
            ticks.append(1)
            if len(ticks) == 3:
                signal.raise_signal(signum)

        m.timer_add(10, tick, repeat=True)
        m.run(poll_ms=10)
        assert len(ticks) >= 3
        assert signal.getsignal(signal.SIGINT) is _sentinel_int
        assert signal.getsignal(signal.SIGTERM) is _sentinel_term
        assert lst.id == 0 and rec.count(MG_EV_CLOSE, lst) == 1
        with pytest.raises(RuntimeError, match="Manager has been freed"):
            m.poll(0)
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


@pytest.mark.timeout(20)
def test_run_restores_default_int_handler():
    before = signal.getsignal(signal.SIGINT)
    m = Manager()
    m.timer_add(20, lambda: signal.raise_signal(signal.SIGINT))
    m.run()
    assert signal.getsignal(signal.SIGINT) is before


def test_close_from_inside_a_handler_raises(make_manager):
    got = []

    def handler(conn, ev, data):
        if ev == MG_EV_POLL and not got:
            try:
                holder["m"].close()
            except RuntimeError as exc:
                got.append(exc)
            else:
                got.append(None)

    holder = {}
    m = make_manager(handler)
    holder["m"] = m
    listen_free(m)
    assert poll_until(m, lambda: got)
    assert got[0] is not None, "close() inside a handler did not raise"
    assert "while poll() is active" in str(got[0])
    m.poll(0)  # still alive


def test_handler_exception_during_close_goes_to_error_handler(make_manager):
    errors = []

    def handler(conn, ev, data):
        if ev == MG_EV_CLOSE:
            raise ValueError(f"close-{conn.id}")

    m = make_manager(handler, error_handler=errors.append)
    lst1, _ = listen_free(m)
    lst2, _ = listen_free(m)
    ids = {lst1.id, lst2.id}
    m.close()  # must not raise
    assert sorted(str(e) for e in errors) == sorted(f"close-{i}" for i in ids)
    assert lst1.id == 0 and lst2.id == 0


def test_wakeup_racing_close_never_crashes(make_manager):
    m = make_manager(enable_wakeup=True)
    lst, _ = listen_free(m)
    target = lst.id
    outcomes = []
    stop = threading.Event()

    def hammer():
        for _ in range(1_000_000):
            if stop.is_set():
                return
            try:
                m.wakeup(target, b"x" * 100)
            except RuntimeError as exc:
                outcomes.append(str(exc))
                return
            except BaseException as exc:  # noqa: BLE001 - reported below
                outcomes.append(repr(exc))
                return

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    for _ in range(3):
        m.poll(1)
    m.close()
    for t in threads:
        t.join(10)
    stop.set()
    assert not any(t.is_alive() for t in threads)
    assert outcomes and all("Manager has been freed" in o for o in outcomes), outcomes


def test_connection_outlives_dropped_manager():
    def create():
        m = Manager(enable_wakeup=True)
        lst, _ = listen_free(m)
        return lst

    lst = create()
    gc.collect()
    # Either still live (the Connection keeps the Manager) or closed: never a crash.
    assert isinstance(repr(lst), str)
    assert lst.id >= 0
    if lst.id == 0:
        assert lst.local_addr is None
        with pytest.raises(RuntimeError, match="closed"):
            lst.send(b"x")
