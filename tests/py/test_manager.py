"""Manager: listen/connect addressing, IPv6, connections snapshot, ids, poll()
re-entrancy (SPEC 1.4, 2.2, 2.3, 2.5.1, Decisions 6 and 11)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import (
    HOST,
    Recorder,
    free_port,
    http_get,
    listen_free,
    poll_until,
    raw_connect,
    recv_exact,
    serve,
    wait_until,
)

from cymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_HTTP_MSG,
    MG_EV_OPEN,
    MG_EV_POLL,
    MG_EV_READ,
    Connection,
    Manager,
)

pytestmark = pytest.mark.timeout(60)

V6_LOOPBACK = "0000:0000:0000:0000:0000:0000:0000:0001"


def _reply_ok(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, "ok:" + data.uri)


# --------------------------------------------------------------------------
# listen()


def test_listen_port_zero_reports_os_port(make_manager):
    m = make_manager(_reply_ok)
    lst = m.listen("http://127.0.0.1:0")
    assert isinstance(lst, Connection)
    ip, port, is_v6 = lst.local_addr
    assert (ip, is_v6) == ("127.0.0.1", False)
    assert isinstance(port, int) and 0 < port < 65536
    assert lst.is_listening
    with serve(m):
        assert http_get(f"http://127.0.0.1:{port}/p")[2] == b"ok:/p"


def test_listen_localhost_binds_loopback_v4(make_manager):
    m = make_manager(_reply_ok)
    lst = m.listen("http://localhost:0")
    ip, port, is_v6 = lst.local_addr
    assert (ip, is_v6) == ("127.0.0.1", False)
    with serve(m):
        assert http_get(f"http://127.0.0.1:{port}/l")[2] == b"ok:/l"


@pytest.mark.parametrize("url", [
    "invalid://address",
    "http://not-a-host.invalid:0",
    "http://999.1.1.1:0",
    "tcp://no.such.host.invalid:0",
])
def test_listen_bad_url_raises(make_manager, url):
    m = make_manager()
    with pytest.raises(RuntimeError, match="Failed to listen") as info:
        m.listen(url)
    assert str(info.value) == f"Failed to listen on '{url}'"
    assert m.connections == ()


def test_listen_port_in_use_raises(make_manager):
    m = make_manager()
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        with pytest.raises(RuntimeError, match="Failed to listen"):
            m.listen(url)
    assert m.connections == ()


def test_listen_http_flag_inference_and_override(make_manager):
    msgs = []    # local ports whose connections produced MG_EV_HTTP_MSG
    reads = {}   # local port -> bytes seen in MG_EV_READ

    def handler(c, e, d):
        if e == MG_EV_HTTP_MSG:
            msgs.append(c.local_addr[1])
            c.reply(200, "http")
        elif e == MG_EV_READ and not c.is_listening:
            port = c.local_addr[1]
            reads[port] = reads.get(port, b"") + c.recv_data()

    m = make_manager(handler)
    _, raw_port = listen_free(m, "http", http=False)
    _, http_port = listen_free(m, "tcp", http=True)
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with serve(m):
        assert http_get(f"http://127.0.0.1:{http_port}/")[2] == b"http"
        s = raw_connect(raw_port)
        try:
            s.sendall(request)
            assert wait_until(lambda: reads.get(raw_port) == request)
            time.sleep(0.1)
        finally:
            s.close()
    assert http_port in msgs
    assert raw_port not in msgs


# --------------------------------------------------------------------------
# IPv6 (Decision 11)


def test_ipv6_listen_and_urllib(make_manager, ipv6):
    m = make_manager(_reply_ok)
    lst = m.listen("http://[::1]:0")
    ip, port, is_v6 = lst.local_addr
    assert ip == V6_LOOPBACK and is_v6 is True and port > 0
    with serve(m):
        status, _, body = http_get(f"http://[::1]:{port}/six")
    assert (status, body) == (200, b"ok:/six")


def test_ipv6_accepted_connection_addresses(make_manager, ipv6):
    rec = Recorder()
    m = make_manager(rec)
    lst = m.listen("tcp://[::1]:0")
    port = lst.local_addr[1]
    s = raw_connect(port, host="::1")
    try:
        assert poll_until(m, lambda: rec.conns(MG_EV_ACCEPT))
        child = rec.conns(MG_EV_ACCEPT)[0]
        assert child.local_addr == (V6_LOOPBACK, port, True)
        assert child.remote_addr == (V6_LOOPBACK, s.getsockname()[1], True)
    finally:
        s.close()


def test_ipv6_connect(make_manager, ipv6):
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as srv:
        srv.bind(("::1", 0))
        srv.listen(1)
        srv.settimeout(5)
        port = srv.getsockname()[1]
        rec = Recorder(on={MG_EV_CONNECT: lambda c, e, d: c.send(b"hi over v6")})
        m = make_manager()
        conn = m.connect(f"tcp://[::1]:{port}", rec)
        assert conn.is_client
        got = []

        def peer():
            p, _ = srv.accept()
            with p:
                got.append(recv_exact(p, 10))

        t = threading.Thread(target=peer)
        t.start()
        assert poll_until(m, lambda: got and rec.count(MG_EV_CONNECT) == 1)
        t.join(5)
        assert got == [b"hi over v6"]
        assert rec.count(MG_EV_CONNECT) == 1


# --------------------------------------------------------------------------
# connections / ids / wakeup_id (SPEC 2.2)


def test_connections_snapshot_identity_and_shrinking(make_manager):
    m = make_manager(enable_wakeup=True)
    assert m.connections == ()
    lst, port = listen_free(m, "tcp")
    snap = m.connections
    assert type(snap) is tuple and len(snap) == 1 and snap[0] is lst
    clients = [raw_connect(port) for _ in range(3)]
    try:
        assert poll_until(m, lambda: len(m.connections) == 4)
        conns = m.connections
        assert conns[0] is lst
        ids = [c.id for c in conns]
        assert ids == sorted(ids)  # creation order
        assert m.wakeup_id not in ids
        assert m.connections[1] is conns[1]  # stable identity
        assert len(snap) == 1  # old snapshot unaffected
    finally:
        for c in clients:
            c.close()
    assert poll_until(m, lambda: len(m.connections) == 1)
    assert m.connections[0] is lst


def test_wakeup_id_values(make_manager):
    assert make_manager().wakeup_id == 0
    m = make_manager(enable_wakeup=True)
    assert m.wakeup_id == 1  # the wakeup pipe is created first
    lst, _ = listen_free(m)
    assert lst.id > 1
    assert all(c.id != m.wakeup_id for c in m.connections)


def test_connection_ids_increase_and_are_never_reused(make_manager):
    m = make_manager()
    lst, port = listen_free(m, "tcp")
    seen = []
    for _ in range(5):
        s = raw_connect(port)
        assert poll_until(m, lambda: len(m.connections) == 2)
        child = m.connections[1]
        seen.append(child.id)
        s.close()
        assert poll_until(m, lambda: len(m.connections) == 1)
    assert seen == sorted(seen) and len(set(seen)) == 5
    assert min(seen) > lst.id > 0


# --------------------------------------------------------------------------
# Per-call handler and events fired inside listen()/connect() (Decision 6)


def test_events_inside_listen_reach_per_call_handler(make_manager):
    default = Recorder()
    own = Recorder()
    m = make_manager(default)
    lst = m.listen("http://127.0.0.1:0", own)
    assert own.evs(lst) and own.evs(lst)[0] == MG_EV_OPEN
    assert own.events[0][0] is lst
    assert default.events == []
    assert lst.handler is own


def test_events_inside_connect_reach_per_call_handler(make_manager):
    default = Recorder()
    own = Recorder()
    m = make_manager(default)
    with socket.socket() as srv:
        srv.bind((HOST, 0))
        srv.listen(1)
        conn = m.connect(f"tcp://127.0.0.1:{srv.getsockname()[1]}", own)
        assert own.evs(conn)[:1] == [MG_EV_OPEN]
        assert poll_until(m, lambda: own.count(MG_EV_CONNECT) == 1)
    assert default.events == []
    assert conn.handler is own


# --------------------------------------------------------------------------
# poll() (SPEC 2.3)


def test_poll_delivers_mg_ev_poll_to_listener(make_manager):
    rec = Recorder(skip_poll=False)
    m = make_manager(rec)
    lst, _ = listen_free(m)
    m.poll(10)
    assert MG_EV_POLL in rec.evs(lst)


def test_poll_not_reentrant_from_handler(make_manager):
    errors = []

    def handler(conn, ev, data):
        if ev == MG_EV_POLL and not errors:
            try:
                m.poll(0)
            except RuntimeError as exc:
                errors.append(exc)
            else:
                errors.append(None)

    m = make_manager(handler)
    listen_free(m)
    poll_until(m, lambda: errors)
    assert errors and errors[0] is not None, "nested poll() did not raise"
    assert "not reentrant" in str(errors[0])
    m.poll(0)  # the outer guard was restored


def test_poll_not_reentrant_from_second_thread_while_dispatching(make_manager):
    entered = threading.Event()
    release = threading.Event()

    def handler(conn, ev, data):
        if ev == MG_EV_POLL and not entered.is_set():
            entered.set()
            release.wait(10)

    m = make_manager(handler)
    listen_free(m)
    t = threading.Thread(target=m.poll, args=(10,))
    t.start()
    try:
        assert entered.wait(10)
        with pytest.raises(RuntimeError, match="not reentrant"):
            m.poll(0)
        with pytest.raises(RuntimeError, match="while poll\\(\\) is active"):
            m.close()
    finally:
        release.set()
        t.join(10)
    assert not t.is_alive()
    m.poll(0)


def test_poll_not_reentrant_from_second_thread_while_waiting(make_manager):
    m = make_manager(enable_wakeup=True)
    listen_free(m)
    done = []

    def long_poll():
        t0 = time.monotonic()
        m.poll(3000)
        done.append(time.monotonic() - t0)

    t = threading.Thread(target=long_poll)
    t.start()
    try:
        time.sleep(0.3)
        assert not done, "poll(3000) returned early on an idle manager"
        with pytest.raises(RuntimeError, match="not reentrant"):
            m.poll(0)
    finally:
        m.wakeup(m.wakeup_id, b"")
        t.join(10)
    assert done


def test_manager_handler_arg_is_keyword_compatible():
    rec = Recorder()
    m = Manager(handler=rec, enable_wakeup=False, error_handler=None)
    try:
        lst, _ = listen_free(m)
        assert rec.evs(lst)[:1] == [MG_EV_OPEN]
    finally:
        m.close()


def test_connect_refused_port_reports_error_then_close(make_manager):
    from cymongoose import MG_EV_ERROR

    rec = Recorder()
    m = make_manager()
    conn = m.connect(f"tcp://127.0.0.1:{free_port()}", rec)
    assert conn.id > 0 and conn.is_client
    assert poll_until(m, lambda: rec.count(MG_EV_CLOSE) == 1)
    seq = rec.evs(conn)
    assert MG_EV_CONNECT not in seq
    assert seq[-1] == MG_EV_CLOSE
    assert seq[-2] == MG_EV_ERROR
    err = [d for c, e, d in rec.events if e == MG_EV_ERROR]
    assert len(err) == 1 and isinstance(err[0], str) and err[0]
    assert conn not in m.connections
    assert conn.id == 0


def test_connect_empty_url_raises(make_manager):
    m = make_manager()
    with pytest.raises(RuntimeError, match="Failed to connect to ''"):
        m.connect("")


def test_manager_positional_arguments():
    rec, errs = Recorder(), []
    m = Manager(rec, True, errs.append)
    try:
        assert m.wakeup_id == 1
        lst, _ = listen_free(m)
        assert rec.evs(lst)[:1] == [MG_EV_OPEN]
    finally:
        m.close()


@pytest.mark.parametrize("scheme", ["ws", "HTTP", "Http"])
def test_http_inferred_from_scheme_case_insensitively(make_manager, scheme):
    m = make_manager(_reply_ok)
    _, port = listen_free(m, scheme)
    with serve(m):
        assert http_get(f"http://127.0.0.1:{port}/s")[2] == b"ok:/s"


def test_poll_without_sockets_sleeps_the_timeout(make_manager):
    m = make_manager()
    t0 = time.monotonic()
    m.poll(60)
    assert time.monotonic() - t0 >= 0.05


def test_poll_negative_blocks_until_woken(make_manager):
    m = make_manager(enable_wakeup=True)
    listen_free(m)
    done = []
    t = threading.Thread(target=lambda: (m.poll(-1), done.append(1)))
    t.start()
    try:
        time.sleep(0.3)
        assert done == [], "poll(-1) returned without any event"
    finally:
        m.wakeup(m.wakeup_id, b"")
        t.join(10)
    assert done == [1]


class _SignalStop(Exception):
    pass


def _raise_signal_stop(signum, frame):
    raise _SignalStop()


@pytest.mark.timeout(20)
def test_signal_handler_exception_propagates_out_of_poll(make_manager):
    import signal

    m = make_manager()
    listen_free(m)
    old = signal.signal(signal.SIGUSR1, _raise_signal_stop)
    main = threading.get_ident()
    timer = threading.Timer(0.2, signal.pthread_kill, args=(main, signal.SIGUSR1))
    try:
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(_SignalStop):
            m.poll(3000)
        elapsed = time.monotonic() - t0
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, old)
    assert elapsed < 2.0, f"poll(3000) took {elapsed:.2f}s after the signal: EINTR ignored"
    m.poll(0)  # usable afterwards
