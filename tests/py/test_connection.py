"""Connection: properties (SPEC 1.5), closed state (2.2), handler inheritance
(2.1), raw TCP/UDP (Decision 4, 2.13), close/drain/error (Decision 3, 2.4)."""

from __future__ import annotations

import os
import re
import socket
import threading

import pytest
from conftest import (
    HOST,
    HttpReader,
    Recorder,
    listen_free,
    poll_for,
    poll_until,
    raw_connect,
    recv_exact,
    recv_until_eof,
    serve,
    split_response,
    wait_until,
)

from cymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_OPEN,
    MG_EV_READ,
    Connection,
)

pytestmark = pytest.mark.timeout(60)

BOOL_PROPS = ["is_listening", "is_client", "is_tls", "is_udp", "is_websocket",
              "is_readable", "is_writable", "is_full", "is_draining"]
INT_PROPS = ["recv_len", "send_len", "recv_size", "send_size"]


def _echo(conn, ev, data):
    if ev == MG_EV_READ:
        conn.send(conn.recv_data())


# --------------------------------------------------------------------------
# Properties


def test_listener_properties(make_manager):
    m = make_manager()
    lst = m.listen("http://127.0.0.1:0")
    assert type(lst) is Connection
    assert type(lst.id) is int and lst.id > 0
    assert lst.is_listening is True
    assert lst.is_closing is False
    for name in ("is_client", "is_tls", "is_udp", "is_websocket", "is_full", "is_draining"):
        assert getattr(lst, name) is False, name
    for name in BOOL_PROPS:
        assert type(getattr(lst, name)) is bool, name
    for name in INT_PROPS:
        assert getattr(lst, name) == 0, name
    assert lst.remote_addr == ("0.0.0.0", 0, False)
    assert lst.local_addr[0] == "127.0.0.1" and lst.local_addr[2] is False
    assert lst.userdata is None
    assert lst.handler is None
    assert lst.recv_data() == b"" and lst.send_data() == b""


def test_repr_live_and_closed(make_manager):
    m = make_manager()
    lst, _ = listen_free(m)
    r = repr(lst)
    assert re.fullmatch(r"<Connection id=(\d+) readable=\w+ writable=\w+>", r), r
    assert f"id={lst.id} " in r
    m.close()
    assert repr(lst) == "<Connection closed>"


def test_accepted_and_outbound_properties(make_manager):
    rec = Recorder()
    m = make_manager(rec)
    lst, port = listen_free(m, "tcp")
    out = m.connect(f"tcp://127.0.0.1:{port}")
    assert out.is_client is True and out.is_listening is False
    s = raw_connect(port)
    try:
        assert poll_until(m, lambda: len(rec.conns(MG_EV_ACCEPT)) == 2)
        child = next(c for c in rec.conns(MG_EV_ACCEPT)
                     if c.remote_addr[1] == s.getsockname()[1])
        assert child.local_addr == ("127.0.0.1", port, False)
        assert child.remote_addr == ("127.0.0.1", s.getsockname()[1], False)
        assert child.is_client is False and child.is_listening is False
        assert child.is_udp is False and child.is_closing is False
        assert out.remote_addr == ("127.0.0.1", port, False)
        assert out.local_addr[0] == "127.0.0.1" and out.local_addr[1] > 0
        assert child.id != out.id != lst.id
    finally:
        s.close()


def test_udp_listener_properties(make_manager):
    m = make_manager()
    lst, port = listen_free(m, "udp")
    assert lst.is_udp is True
    assert lst.local_addr == ("127.0.0.1", port, False)


def test_closed_connection_defaults_and_errors(make_manager):
    inside_close = {}

    def on_close(conn, ev, data):
        inside_close["id"] = conn.id
        inside_close["closing"] = conn.is_closing

    rec = Recorder(on={MG_EV_CLOSE: on_close,
                       MG_EV_ACCEPT: lambda c, e, d: setattr(c, "userdata", "kept")})
    m = make_manager(rec)
    _, port = listen_free(m, "tcp", handler=rec)
    s = raw_connect(port)
    assert poll_until(m, lambda: rec.conns(MG_EV_ACCEPT))
    child = rec.conns(MG_EV_ACCEPT)[0]
    live_id = child.id
    s.close()
    assert poll_until(m, lambda: rec.count(MG_EV_CLOSE, child) == 1)
    # Inside its CLOSE handler the object was still live.
    assert inside_close["id"] == live_id
    # Afterwards: safe defaults.
    assert child.id == 0
    assert child.is_closing is True
    for name in BOOL_PROPS:
        assert getattr(child, name) is False, name
    for name in INT_PROPS:
        assert getattr(child, name) == 0, name
    assert child.local_addr is None and child.remote_addr is None
    assert child.recv_data() == b"" and child.send_data() == b""
    assert child.userdata == "kept"
    assert child.handler is rec
    for call in (lambda: child.send(b"x"), lambda: child.reply(200, "x"),
                 lambda: child.reply_json({"a": 1}), lambda: child.error("x")):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    child.close()  # no-op
    child.drain()  # no-op
    assert child not in m.connections


def test_userdata_persists_across_events(make_manager):
    seen = []

    def handler(conn, ev, data):
        if ev == MG_EV_ACCEPT:
            conn.userdata = {"reads": 0}
        elif ev == MG_EV_READ:
            conn.userdata["reads"] += 1
            seen.append(conn.userdata)

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    s = raw_connect(port)
    try:
        for i in range(3):
            s.sendall(b"x")
            assert poll_until(m, lambda i=i: len(seen) == i + 1)
    finally:
        s.close()
    assert seen[0] is seen[1] is seen[2]
    assert seen[0]["reads"] == 3


# --------------------------------------------------------------------------
# Handler inheritance (SPEC 2.1.2)


def test_per_listener_handler_inheritance_and_revert(make_manager):
    default, h1, h2, h3 = Recorder(), Recorder(), Recorder(), Recorder()
    m = make_manager(default)
    l1, p1 = listen_free(m, "tcp", handler=h1)
    l2, p2 = listen_free(m, "tcp", handler=h2)
    socks = []

    def connect_and_wait(port, rec, n):
        socks.append(raw_connect(port))
        assert poll_until(m, lambda: len(rec.conns(MG_EV_ACCEPT)) == n)
        return rec.conns(MG_EV_ACCEPT)[n - 1]

    try:
        c1 = connect_and_wait(p1, h1, 1)
        assert h1.evs(c1)[:2] == [MG_EV_OPEN, MG_EV_ACCEPT]
        assert c1.handler is h1
        c2 = connect_and_wait(p2, h2, 1)
        assert h2.evs(c2)[:2] == [MG_EV_OPEN, MG_EV_ACCEPT]
        assert c2.handler is h2
        assert h1.evs(c2) == [] and h2.evs(c1) == []

        l1.set_handler(h3)
        assert l1.handler is h3
        c3 = connect_and_wait(p1, h3, 1)
        assert h3.evs(c3)[:2] == [MG_EV_OPEN, MG_EV_ACCEPT]
        assert c1.handler is h1  # existing children keep theirs
        assert len(h1.conns(MG_EV_ACCEPT)) == 1

        l1.set_handler(None)
        assert l1.handler is None
        c4 = connect_and_wait(p1, default, 1)
        assert default.evs(c4)[:2] == [MG_EV_OPEN, MG_EV_ACCEPT]
        assert c4.handler is None
        assert len(h3.conns(MG_EV_ACCEPT)) == 1

        # The old child still reports to h1.
        socks[0].sendall(b"ping")
        assert poll_until(m, lambda: h1.count(MG_EV_READ, c1) == 1)
        assert default.evs(c1) == []
    finally:
        for s in socks:
            s.close()


def test_set_handler_inside_handler_affects_next_event(make_manager):
    later = Recorder()

    def first(conn, ev, data):
        if ev == MG_EV_ACCEPT:
            conn.set_handler(later)
        elif ev == MG_EV_READ:
            raise AssertionError("READ went to the old handler")

    errors = []
    m = make_manager(error_handler=errors.append)
    _, port = listen_free(m, "tcp", handler=first)
    s = raw_connect(port)
    try:
        s.sendall(b"data")
        assert poll_until(m, lambda: later.count(MG_EV_READ) == 1)
    finally:
        s.close()
    assert errors == []


# --------------------------------------------------------------------------
# Raw TCP / UDP (Decision 4)


def test_tcp_echo_each_byte_once(make_manager):
    reads = []

    def handler(conn, ev, data):
        if ev == MG_EV_READ:
            chunk = conn.recv_data()
            reads.append(chunk)
            conn.send(chunk)

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(b"abc")
            assert recv_exact(s, 3) == b"abc"
            s.sendall(b"defg")
            assert recv_exact(s, 4) == b"defg"
            s.settimeout(0.3)
            with pytest.raises(TimeoutError):
                s.recv(100)
        finally:
            s.close()
    assert b"".join(reads) == b"abcdefg"


def test_tcp_echo_large_stream(make_manager):
    m = make_manager(_echo)
    _, port = listen_free(m, "tcp")
    payload = os.urandom(1 << 20) + bytes(4096)
    with serve(m):
        s = raw_connect(port)
        try:
            sender = threading.Thread(target=s.sendall, args=(payload,))
            sender.start()
            got = recv_exact(s, len(payload), timeout=20)
            sender.join(10)
            s.settimeout(0.3)
            with pytest.raises(TimeoutError):
                s.recv(100)
        finally:
            s.close()
    assert len(got) == len(payload)
    assert got == payload


def test_tcp_send_str_and_bytes_like(make_manager):
    def handler(conn, ev, data):
        if ev == MG_EV_READ:
            conn.send("héllo|")
            conn.send(bytearray(b"ba|"))
            conn.send(memoryview(b"mv\x00|"))

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(b"go")
            expected = "héllo|".encode() + b"ba|mv\x00|"
            assert recv_exact(s, len(expected)) == expected
        finally:
            s.close()


def test_send_buffer_visible_until_flushed_and_recv_data_copy(make_manager):
    seen = {}

    def handler(conn, ev, data):
        if ev == MG_EV_READ and "recv" not in seen:
            seen["recv"] = (conn.recv_data(3), conn.recv_data(-1), conn.recv_data(100),
                            conn.recv_data(), conn.recv_len)
            conn.send(b"pending-data")
            seen["send"] = (conn.send_len, conn.send_data(), conn.send_data(7))

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    s = raw_connect(port)
    try:
        s.sendall(b"abcdef")
        assert poll_until(m, lambda: "send" in seen)
        poll_for(m, 0.05)
        assert recv_exact(s, 12) == b"pending-data"
    finally:
        s.close()
    assert seen["recv"] == (b"abc", b"abcdef", b"abcdef", b"abcdef", 6)
    send_len, pending, first7 = seen["send"]
    assert send_len >= 12
    assert pending.endswith(b"pending-data")
    assert first7 == pending[:7]


def test_udp_echo(make_manager):
    m = make_manager(_echo)
    lst, port = listen_free(m, "udp")
    with serve(m):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
            a.settimeout(5)
            b.settimeout(5)
            a.sendto(b"dgram-1", (HOST, port))
            assert a.recvfrom(65536) == (b"dgram-1", (HOST, port))
            a.sendto(b"dgram-2", (HOST, port))
            assert a.recvfrom(65536)[0] == b"dgram-2"
            big = bytes(range(256)) * 234  # 59904 bytes: one datagram, echoed whole
            a.sendto(big, (HOST, port))
            assert a.recvfrom(65536)[0] == big
            b.sendto(b"from-b", (HOST, port))
            assert b.recvfrom(65536)[0] == b"from-b"
            a.settimeout(0.3)
            with pytest.raises(TimeoutError):
                a.recvfrom(65536)
            b_port = b.getsockname()[1]
    # The UDP listener's remote_addr is the last sender.
    assert lst.remote_addr == (HOST, b_port, False)


def test_udp_client_connect_usable_immediately(make_manager):
    got = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv:
        srv.bind((HOST, 0))
        srv.settimeout(5)
        port = srv.getsockname()[1]

        def handler(conn, ev, data):
            if ev == MG_EV_READ:
                got.append(conn.recv_data())

        m = make_manager()
        conn = m.connect(f"udp://127.0.0.1:{port}", handler)
        assert conn.is_udp is True and conn.is_client is True
        conn.send(b"hello-udp")
        data, addr = srv.recvfrom(65536)
        assert data == b"hello-udp"
        srv.sendto(b"reply-udp", addr)
        assert poll_until(m, lambda: got)
    assert got == [b"reply-udp"]


# --------------------------------------------------------------------------
# close() / drain() / error() (Decision 3, SPEC 2.4)


def test_close_is_deferred_and_peer_sees_eof(make_manager):
    state = {}

    def handler(conn, ev, data):
        if ev == MG_EV_READ and "after" not in state:
            conn.close()
            state["after"] = (conn.id, conn.is_closing, rec.count(MG_EV_CLOSE, conn))

    rec = Recorder(on={MG_EV_READ: handler})
    m = make_manager(rec)
    _, port = listen_free(m, "tcp")
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(b"x")
            data, eof = recv_until_eof(s)
        finally:
            s.close()
        assert wait_until(lambda: rec.count(MG_EV_CLOSE) == 1)
    assert eof and data == b""
    conn_id, closing, closes = state["after"]
    assert conn_id > 0, "close() closed the connection synchronously"
    assert closing is True
    assert closes == 0, "MG_EV_CLOSE fired inside close()"


def test_close_another_connection_from_handler(make_manager):
    by_port = {}

    def handler(conn, ev, data):
        if ev == MG_EV_ACCEPT:
            by_port[conn.remote_addr[1]] = conn
        elif ev == MG_EV_READ:
            msg = conn.recv_data()
            if msg.startswith(b"kill:"):
                victim = by_port[int(msg[5:])]
                victim.close()
                victim.close()  # idempotent
            conn.send(msg)

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    with serve(m):
        a, b = raw_connect(port), raw_connect(port)
        try:
            assert wait_until(lambda: len(by_port) == 2)
            msg = b"kill:%d" % b.getsockname()[1]
            a.sendall(msg)
            assert recv_exact(a, len(msg)) == msg
            data, eof = recv_until_eof(b)
            assert eof and data == b""
            a.sendall(b"still-alive")
            assert recv_exact(a, 11) == b"still-alive"
        finally:
            a.close()
            b.close()


def test_close_listener_from_child_handler(make_manager):
    holder = {}

    def handler(conn, ev, data):
        if ev == MG_EV_READ:
            holder["lst"].close()
            conn.send(conn.recv_data())

    m = make_manager(handler)
    lst, port = listen_free(m, "tcp")
    holder["lst"] = lst
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(b"bye-listener")
            assert recv_exact(s, 12) == b"bye-listener"
            assert wait_until(lambda: lst not in m.connections)
            with pytest.raises(OSError):
                raw_connect(port, timeout=1).close()
            s.sendall(b"child-ok")
            assert recv_exact(s, 8) == b"child-ok"
        finally:
            s.close()
    assert lst.id == 0


def test_drain_delivers_one_megabyte_reply(make_manager):
    body = os.urandom(1 << 20)
    flags = {}

    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, body)
            conn.drain()
            flags["draining"] = conn.is_draining

    m = make_manager(handler)
    _, port = listen_free(m)
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            raw, eof = recv_until_eof(s, timeout=20)
        finally:
            s.close()
    assert flags["draining"] is True
    assert eof, "connection was not closed after draining"
    status, headers, got = split_response(raw)
    assert status == b"HTTP/1.1 200 OK"
    assert dict(headers)[b"Content-Length"] == str(len(body)).encode()
    assert len(got) == len(body) and got == body


def test_drain_raw_tcp_then_close(make_manager):
    payload = os.urandom(3 << 20)

    def handler(conn, ev, data):
        if ev == MG_EV_READ:
            conn.send(payload)
            conn.drain()

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(b"go")
            got, eof = recv_until_eof(s, timeout=20)
        finally:
            s.close()
    assert eof and got == payload


def test_error_fires_synchronously_then_close(make_manager):
    order = []

    def handler(conn, ev, data):
        if ev == MG_EV_READ and "before" not in order:
            order.append("before")
            conn.error("custom failure")
            order.append(("after", conn.is_closing, conn.id > 0))
        elif ev == MG_EV_ERROR:
            order.append(("error", data))
        elif ev == MG_EV_CLOSE and not conn.is_listening:
            order.append("close")

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(b"x")
            data, eof = recv_until_eof(s)
        finally:
            s.close()
        assert wait_until(lambda: "close" in order)
    assert eof
    assert order == ["before", ("error", "custom failure"), ("after", True, True), "close"]


def test_reply_on_closed_connection_after_http_close(make_manager):
    kept = []

    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            kept.append(conn)
            conn.reply(200, "once")

    m = make_manager(handler)
    _, port = listen_free(m)
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw = HttpReader(s).read_response()
            assert raw is not None and raw.endswith(b"once")
        finally:
            s.close()
        assert wait_until(lambda: kept and kept[0].id == 0)
    with pytest.raises(RuntimeError, match="closed"):
        kept[0].reply(200, "twice")


def test_close_completes_within_the_same_poll_call(make_manager):
    state = {}

    def handler(conn, ev, data):
        if ev == MG_EV_READ and "closed_in" not in state:
            state["closed_in"] = state["poll_no"]
            conn.close()
        elif ev == MG_EV_CLOSE and not conn.is_listening:
            state["close_seen_in"] = state["poll_no"]

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    s = raw_connect(port)
    try:
        s.sendall(b"x")
        state["poll_no"] = 0
        for i in range(500):
            state["poll_no"] = i
            m.poll(10)
            if "closed_in" in state:
                break
        assert "closed_in" in state
        # MG_EV_CLOSE fired at the end of the iteration in which close() was called.
        assert state.get("close_seen_in") == state["closed_in"]
        s.settimeout(5)
        assert s.recv(10) == b""  # FIN already sent
    finally:
        s.close()
