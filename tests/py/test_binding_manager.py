"""Manager internals of the C binding: dispatch, exception routing, re-entry
guards, run() and signals, garbage collection, reference leaks, Connection
objects made on first use."""

from __future__ import annotations

import gc
import signal
import socket
import sys
import threading
import time
import tracemalloc
import weakref

import pytest
from conftest import HOST, HttpReader, listen_free, poll_for, poll_until, raw_connect

from cymongoose import (
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_OPEN,
    MG_EV_POLL,
    MG_EV_READ,
    MG_EV_RESOLVE,
    Connection,
    Manager,
)

NOT_REENTRANT = "poll\\(\\) is not reentrant"
CLOSE_ACTIVE = "Cannot close Manager while poll\\(\\) is active"


def port_refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        try:
            s.connect((HOST, port))
        except ConnectionRefusedError:
            return True
        return False


# --------------------------------------------------------------------------
# Dispatch


def test_bound_method_and_callable_object_handlers(make_manager):
    seen = []

    class App:
        def handler(self, conn, ev, data):
            seen.append(("method", ev))

    class Callable:
        def __call__(self, conn, ev, data):
            seen.append(("object", ev))

    m = make_manager(App().handler)
    m.listen("tcp://127.0.0.1:0")
    m.listen("tcp://127.0.0.1:0", Callable())
    assert seen == [("method", MG_EV_OPEN), ("object", MG_EV_OPEN)]


def test_nested_listen_inside_open_handler_gets_its_own_handler(make_manager):
    inner_events, outer_events = [], []

    def inner(conn, ev, data):
        inner_events.append(ev)

    def outer(conn, ev, data):
        outer_events.append(ev)
        if ev == MG_EV_OPEN and len(outer_events) == 1:
            nested.append(m.listen("tcp://127.0.0.1:0", inner))

    nested = []
    m = make_manager()
    first = m.listen("tcp://127.0.0.1:0", outer)
    assert first.handler is outer and nested[0].handler is inner
    assert inner_events == [MG_EV_OPEN] and outer_events == [MG_EV_OPEN]
    # After the nested call the outer call's handler was restored: a UDP
    # connect made afterwards fires OPEN/RESOLVE/CONNECT into its own handler.
    udp_events = []
    conn = m.connect("udp://127.0.0.1:9", lambda c, ev, d: udp_events.append(ev))
    assert udp_events == [MG_EV_OPEN, MG_EV_RESOLVE, MG_EV_CONNECT]
    assert m.connections == (first, nested[0], conn)


def test_handler_sees_conn_before_close_detaches_it(make_manager):
    seen = []

    def handler(conn, ev, data):
        if ev == MG_EV_CLOSE:
            seen.append((conn.id, conn.is_closing, conn.local_addr is not None))

    m = make_manager()
    lst = m.listen("tcp://127.0.0.1:0", handler)
    lid = lst.id
    lst.close()
    m.poll(0)
    assert seen == [(lid, True, True)]
    assert lst.id == 0 and lst.local_addr is None and m.connections == ()


def test_connection_error_message_is_not_a_format_string(make_manager):
    got = []
    m = make_manager(lambda c, ev, d: got.append(d) if ev == MG_EV_ERROR else None)
    conn = m.listen("tcp://127.0.0.1:0")
    conn.error("100% %s %n %x done")
    assert got == ["100% %s %n %x done"]
    assert conn.is_closing


def test_connection_error_non_utf8_text_is_cut_not_crashing(make_manager):
    got = []
    m = make_manager(lambda c, ev, d: got.append(d) if ev == MG_EV_ERROR else None)
    conn = m.listen("tcp://127.0.0.1:0")
    conn.error("é" * 300)  # longer than the core's 255-byte message buffer
    assert len(got) == 1 and set(got[0]) == {"é"} and len(got[0]) < 300


# --------------------------------------------------------------------------
# Exceptions


def test_error_handler_runs_with_exception_as_current(make_manager):
    seen = []

    def error_handler(exc):
        seen.append((exc, sys.exc_info()[1]))

    def handler(conn, ev, data):
        raise ValueError("in handler")

    m = make_manager(handler, error_handler=error_handler)
    m.listen("tcp://127.0.0.1:0")
    assert len(seen) == 1
    exc, current = seen[0]
    assert isinstance(exc, ValueError) and current is exc
    assert exc.__traceback__ is not None
    assert sys.exc_info() == (None, None, None)


# Handlers below raise BaseExceptions only while `armed`, so the fixture's
# close() at teardown runs quietly.


def test_error_handler_base_exception_propagates(make_manager):
    armed = [True]

    def error_handler(exc):
        if armed:
            raise KeyboardInterrupt

    def handler(conn, ev, data):
        if ev == MG_EV_POLL:
            raise ValueError("x")

    m = make_manager(handler, error_handler=error_handler)
    m.listen("tcp://127.0.0.1:0")
    with pytest.raises(KeyboardInterrupt) as info:
        m.poll(0)
    assert isinstance(info.value.__context__, ValueError)
    armed.clear()


def test_base_exception_stops_dispatch_for_the_rest_of_the_poll(make_manager):
    calls, armed = [], [True]

    def handler(conn, ev, data):
        if ev == MG_EV_POLL and armed:
            calls.append(conn.id)
            raise SystemExit(7)

    m = make_manager(handler)
    a = m.listen("tcp://127.0.0.1:0")
    b = m.listen("tcp://127.0.0.1:0")
    with pytest.raises(SystemExit) as info:
        m.poll(0)
    assert info.value.code == 7 and len(calls) == 1
    # The next poll dispatches again (and raises again).
    calls.clear()
    with pytest.raises(SystemExit):
        m.poll(0)
    assert len(calls) == 1
    assert a.id and b.id
    armed.clear()


def test_base_exception_still_detaches_closed_connections(make_manager):
    calls, armed = [], [True]

    def handler(conn, ev, data):
        calls.append(ev)
        if ev == MG_EV_POLL and armed:
            armed.clear()
            a.close()  # freed at the end of this iteration, after the raise
            raise KeyboardInterrupt

    m = make_manager(handler)
    a = m.listen("tcp://127.0.0.1:0")
    b = m.listen("tcp://127.0.0.1:0")
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        m.poll(0)
    assert calls == [MG_EV_POLL]  # dispatch stopped: no CLOSE seen...
    assert a.id == 0 and m.connections == (b,)  # ...but the bookkeeping ran


def test_base_exception_in_listen_handler_raised_by_listen(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_OPEN:
            raise KeyboardInterrupt

    m = make_manager(handler)
    with pytest.raises(KeyboardInterrupt):
        m.listen("tcp://127.0.0.1:0")
    assert len(m.connections) == 1  # the listener exists all the same


def test_base_exception_in_error_handler_of_conn_error(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_ERROR:
            raise SystemExit(2)

    m = make_manager(handler)
    conn = m.listen("tcp://127.0.0.1:0")
    with pytest.raises(SystemExit):
        conn.error("stop")


def test_signal_handler_exception_propagates_from_poll(make_manager):
    class Stop(Exception):
        pass

    def on_usr1(signum, frame):
        raise Stop

    old = signal.signal(signal.SIGUSR1, on_usr1)
    try:
        m = make_manager()
        main = threading.get_ident()
        killer = threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGUSR1))
        killer.start()
        t0 = time.monotonic()
        with pytest.raises(Stop):
            m.poll(3000)  # EINTR ends the wait; poll() runs the signal handler
        assert time.monotonic() - t0 < 2.5
        killer.join()
    finally:
        signal.signal(signal.SIGUSR1, old)


# --------------------------------------------------------------------------
# Re-entry guards


def test_poll_and_close_refused_inside_listen_handler(make_manager):
    errors = []

    def handler(conn, ev, data):
        for f in (m.poll, m.close):
            try:
                f()
            except RuntimeError as exc:
                errors.append(str(exc))

    m = make_manager(handler)
    m.listen("tcp://127.0.0.1:0")
    assert len(errors) == 2
    assert errors[0].startswith("poll() is not reentrant")
    assert errors[1].startswith("Cannot close Manager while poll() is active")


def test_poll_and_close_refused_inside_timer_callback(make_manager):
    errors = []

    def tick():
        for f in (m.poll, m.close):
            try:
                f()
            except RuntimeError as exc:
                errors.append(str(exc))

    m = make_manager()
    m.timer_add(0, tick)
    m.poll(0)
    assert [e.split(" ")[0] for e in errors] == ["poll()", "Cannot"]


def test_listen_refused_inside_close_handlers(make_manager):
    results = []

    def handler(conn, ev, data):
        if ev == MG_EV_CLOSE:
            try:
                m.listen("tcp://127.0.0.1:0")
            except RuntimeError as exc:
                results.append(str(exc))

    m = make_manager(handler)
    m.listen("tcp://127.0.0.1:0")
    m.close()
    assert results == ["Manager has been freed"]
    assert m.connections == ()


def test_close_from_another_thread_while_dispatching(make_manager):
    entered, release = threading.Event(), threading.Event()
    outcome = []

    def handler(conn, ev, data):
        if ev == MG_EV_POLL and not entered.is_set():
            entered.set()
            release.wait(5)

    def closer():
        entered.wait(5)
        try:
            m.close()
        except RuntimeError as exc:
            outcome.append(str(exc))
        release.set()

    m = make_manager(handler)
    m.listen("tcp://127.0.0.1:0")
    t = threading.Thread(target=closer)
    t.start()
    m.poll(0)
    t.join(5)
    assert outcome and outcome[0].startswith("Cannot close Manager")


# --------------------------------------------------------------------------
# run()


def test_run_restores_handlers_and_closes_on_error(make_manager):
    before_int = signal.getsignal(signal.SIGINT)
    before_term = signal.getsignal(signal.SIGTERM)

    def tick():
        raise KeyboardInterrupt  # a BaseException from a timer ends run()

    m = make_manager()
    m.timer_add(5, tick)
    with pytest.raises(KeyboardInterrupt):
        m.run(poll_ms=10)
    assert signal.getsignal(signal.SIGINT) is before_int
    assert signal.getsignal(signal.SIGTERM) is before_term
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        m.poll(0)


def test_run_stops_on_sigterm_sent_from_another_thread(make_manager):
    m = make_manager()
    lst = m.listen("tcp://127.0.0.1:0")
    main = threading.get_ident()
    killer = threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGTERM))
    killer.start()
    t0 = time.monotonic()
    m.run(2000)  # a long poll: the signal must end the wait, not the timeout
    killer.join()
    assert time.monotonic() - t0 < 1.5
    assert lst.id == 0


def test_run_on_closed_manager_raises(make_manager):
    m = make_manager()
    m.close()
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        m.run()
    assert signal.getsignal(signal.SIGINT) is before


# --------------------------------------------------------------------------
# Lifetime, garbage collection, leaks


def test_dropped_manager_runs_no_handler():
    ran = []

    class App:
        def __init__(self):
            self.mgr = Manager(self.handler, enable_wakeup=True)
            self.listener, self.port = listen_free(self.mgr, "tcp", host=HOST)
            self.mgr.timer_add(1000, self.tick, repeat=True)

        def handler(self, conn, ev, data):
            ran.append(ev)

        def tick(self):
            ran.append("tick")

    app = App()
    port, listener, mgr_ref = app.port, app.listener, weakref.ref(app.mgr)
    ran.clear()
    del app
    gc.collect()
    assert mgr_ref() is None
    assert ran == []
    assert listener.id == 0 and listener.is_closing
    assert port_refused(port)


def test_wakeup_after_manager_dropped_from_other_thread_is_safe():
    m = Manager(enable_wakeup=True)
    wid = m.wakeup_id
    wakeup = m.wakeup  # a bound method keeps the manager alive
    del m
    gc.collect()
    assert wakeup(wid, b"x") is True
    wakeup.__self__.close()
    with pytest.raises(RuntimeError, match="Manager has been freed"):
        wakeup(wid, b"x")


def test_no_reference_leak_per_event(make_manager):
    payload = object()

    def handler(conn, ev, data):
        conn.userdata = payload

    m = make_manager(handler)
    m.listen("tcp://127.0.0.1:0")
    for _ in range(50):
        m.poll(0)
    before = sys.getrefcount(payload), sys.getrefcount(handler)
    for _ in range(500):
        m.poll(0)
    assert (sys.getrefcount(payload), sys.getrefcount(handler)) == before


def test_no_memory_growth_over_many_requests(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_READ:
            conn.send(b"pong")

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    client = socket.create_connection((HOST, port), timeout=5)
    client.setblocking(False)

    def round_trip():
        client.send(b"ping")
        got = b""
        for _ in range(200):
            m.poll(5)
            try:
                got += client.recv(64)
            except BlockingIOError:
                pass
            if got == b"pong":
                return
        raise AssertionError("no pong")

    try:
        for _ in range(200):
            round_trip()
        tracemalloc.start()
        gc.collect()
        snap = tracemalloc.take_snapshot()
        for _ in range(2000):
            round_trip()
        gc.collect()
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snap, "filename"))
        tracemalloc.stop()
    finally:
        client.close()
    assert grown < 64 * 1024


def test_connections_snapshot_excludes_internal_and_keeps_order(make_manager):
    m = make_manager(enable_wakeup=True)
    assert m.wakeup_id == 1 and m.connections == ()
    a = m.listen("tcp://127.0.0.1:0")
    b = m.listen("udp://127.0.0.1:0")
    c = m.connect("udp://127.0.0.1:9")
    assert m.connections == (a, b, c)
    assert [x.id for x in m.connections] == [2, 3, 4]
    b.close()
    assert poll_until(m, lambda: m.connections == (a, c))


def test_keyword_arguments(make_manager):
    got = []
    m = make_manager(handler=None, enable_wakeup=True, error_handler=None)
    conn = m.listen(url="udp://127.0.0.1:0", handler=lambda c, ev, d: got.append(d), http=False)
    assert m.wakeup(connection_id=conn.id, data=b"kw") is True
    timer = m.timer_add(
        milliseconds=0, callback=lambda: got.append("t"), repeat=False, run_now=True
    )
    m.poll(timeout_ms=0)
    assert b"kw" in got and "t" in got and not timer.active


# --------------------------------------------------------------------------
# Connection objects made on first use
#
# A connection's Python object is made when something needs it: an event its
# handler reacts to, listen()/connect(), Manager.connections.  Until then the
# manager holds only a reference to the handler it will get.  gc.get_referents()
# of a manager lists what it holds (its traverse): the objects made so far, and
# the remembered handler of each connection that has none yet.

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def objects_held(mgr) -> int:
    return sum(type(o) is Connection for o in gc.get_referents(mgr))


def accept(mgr, port: int, n: int) -> list[socket.socket]:
    """n raw clients, accepted by mgr (loopback: the first poll accepts them)."""
    socks = [raw_connect(port) for _ in range(n)]
    poll_for(mgr, 0.05)
    return socks


def test_object_made_on_first_use_is_the_one_listed_and_passed(make_manager):
    got = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            got.append(conn)
            conn.reply(200, b"ok")

    def handler_refs():
        return gc.get_referents(m).count(handler)

    m = make_manager()
    listener, port = listen_free(m, "http", handler=handler)
    base = handler_refs()
    socks = accept(m, port, 2)
    try:
        # Accepted, but the handler ignores OPEN/ACCEPT: no object yet, the
        # handler they will get is all the manager holds for them.
        assert objects_held(m) == 1  # the listener, returned by listen()
        assert handler_refs() == base + 2
        # The first request makes it (for the event), then connections lists it.
        socks[0].sendall(REQUEST)
        assert poll_until(m, lambda: len(got) == 1)
        assert HttpReader(socks[0]).read_response().startswith(b"HTTP/1.1 200")
        assert objects_held(m) == 2
        # connections makes the other one, in creation order, with its handler.
        listed = m.connections
        assert len(listed) == 3 and listed[0] is listener and listed[1] is got[0]
        assert all(c.handler is handler for c in listed)
        assert objects_held(m) == 3 and handler_refs() == base
        assert listed[1].id < listed[2].id
        # ... and the event later gets that very object.
        socks[1].sendall(REQUEST)
        assert poll_until(m, lambda: len(got) == 2)
        assert got[1] is listed[2]
        socks[0].sendall(REQUEST)
        assert poll_until(m, lambda: len(got) == 3)
        assert got[2] is got[0]
    finally:
        for s in socks:
            s.close()


def test_listener_set_handler_later_keeps_the_handler_of_a_child_without_object(make_manager):
    got = []

    def first(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            got.append(("first", conn))
            conn.reply(200, b"1")

    def second(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            got.append(("second", conn))
            conn.reply(200, b"2")

    m = make_manager()
    listener, port = listen_free(m, "http", handler=first)
    socks = accept(m, port, 1)
    try:
        assert objects_held(m) == 1  # the child remembers `first` alone
        listener.set_handler(second)
        socks += accept(m, port, 1)
        for s in socks:
            s.sendall(REQUEST)
        assert poll_until(m, lambda: len(got) == 2)
        assert sorted(name for name, _ in got) == ["first", "second"]
        for name, conn in got:
            assert conn.handler is (first if name == "first" else second)
        assert HttpReader(socks[0]).read_response().endswith(b"\r\n\r\n1")
        assert HttpReader(socks[1]).read_response().endswith(b"\r\n\r\n2")
    finally:
        for s in socks:
            s.close()


def test_object_made_for_close_then_detached(make_manager):
    closed = []

    def handler(conn, ev, data):
        if ev == MG_EV_CLOSE:
            closed.append((conn, conn.id, conn.is_listening))

    m = make_manager()
    _, port = listen_free(m, "tcp", handler=handler)
    socks = accept(m, port, 1)
    assert objects_held(m) == 1
    socks[0].close()
    assert poll_until(m, lambda: len(closed) == 1)
    conn, cid, listening = closed[0]
    assert cid > 0 and not listening  # live during its CLOSE handler
    assert conn.id == 0 and conn.is_closing  # detached right after
    assert objects_held(m) == 1


def test_handler_reference_dropped_when_a_connection_without_object_closes(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, b"ok")

    m = make_manager()
    listener, port = listen_free(m, "http", handler=handler)
    base = sys.getrefcount(handler)
    socks = accept(m, port, 3)
    assert sys.getrefcount(handler) == base + 3
    for s in socks:
        s.close()
    assert poll_until(m, lambda: sys.getrefcount(handler) == base)
    assert objects_held(m) == 1
    socks = accept(m, port, 2)
    assert sys.getrefcount(handler) == base + 2
    m.close()  # teardown drops them too
    for s in socks:
        s.close()
    assert sys.getrefcount(handler) == base
    assert listener.handler is handler  # a detached object keeps its own (SPEC 1.5)


def test_cycle_through_connections_with_and_without_object_is_collected():
    def start():
        mgr = None

        def handler(conn, ev, data):
            if ev == MG_EV_HTTP_MSG:
                conn.reply(200, b"ok" if mgr is not None else b"")

        mgr = Manager()  # no default handler: the cycle runs through the connections
        _, port = listen_free(mgr, "http", handler=handler)
        return mgr, port

    def one_request(mgr, sock):
        sock.sendall(REQUEST)
        assert poll_until(mgr, lambda: objects_held(mgr) == 2)  # listener + one child
        poll_for(mgr, 0.05)
        assert HttpReader(sock).read_response().startswith(b"HTTP/1.1 200")

    mgr, port = start()
    socks = accept(mgr, port, 3)
    try:
        one_request(mgr, socks[0])  # the others stay without object
        ref = weakref.ref(mgr)
        del mgr
        gc.collect()
        assert ref() is None
        for s in socks[1:]:  # torn down: the connections are closed
            assert s.recv(1) == b""
    finally:
        for s in socks:
            s.close()


def test_objects_listed_before_close_are_detached_after(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, b"ok")

    m = make_manager(enable_wakeup=True)
    listener, port = listen_free(m, "http", handler=handler)
    socks = accept(m, port, 2)
    try:
        listed = m.connections
        assert len(listed) == 3 and listed[0] is listener
        m.close()
        assert m.connections == ()
        for conn in listed:
            assert conn.id == 0 and conn.is_closing and conn.local_addr is None
            assert conn.handler is handler  # kept (SPEC 1.5)
            with pytest.raises(RuntimeError, match="closed"):
                conn.send(b"x")
    finally:
        for s in socks:
            s.close()
