"""HTTP limits configured from Python (Manager.listen's keyword-only max_head,
max_headers, max_uri, max_body, head_timeout_ms, idle_timeout_ms; issue 3 item 2):
413 / 414 / 431 / 408, the slowloris deadline, the idle timeout, 0 = no limit,
None = default, and one connection's violation never disturbing another."""

from __future__ import annotations

import http.client
import time

import pytest
from conftest import HttpReader, listen_free, raw_connect, recv_until_eof, serve

from cymongoose import MG_EV_HTTP_HDRS, MG_EV_HTTP_MSG

pytestmark = pytest.mark.timeout(60)


def echo(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, b"%d:%s" % (len(data.body_bytes), data.uri.encode()))


def start(make_manager, **limits):
    mgr = make_manager()
    _, port = listen_free(mgr, handler=echo, **limits)
    return mgr, port


def exchange(port: int, request: bytes, timeout: float = 5.0):
    """Send ``request``; return (first response or None, whether the server then
    closed with nothing more: checked only after a "Connection: close" answer)."""
    s = raw_connect(port, timeout=timeout)
    try:
        try:
            s.sendall(request)
        except OSError:
            pass  # the server may refuse and close while we are still sending
        reader = HttpReader(s)
        resp = reader.read_response(timeout)
        if resp is None or b"Connection: close" not in resp:
            return resp, False  # keep-alive: nothing more to wait for
        rest, eof = recv_until_eof(s, timeout=timeout)
        return resp, eof and rest == b""
    finally:
        s.close()


def status_of(resp: bytes | None) -> int | None:
    return int(resp.split(b" ", 2)[1]) if resp else None


def good(port: int) -> bytes | None:
    resp, _ = exchange(port, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return resp


# --------------------------------------------------------------------------
# Sizes


def test_max_head_431(make_manager):
    mgr, port = start(make_manager, max_head=512)
    with serve(mgr):
        resp, eof = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 600 + b"\r\n\r\n")
        assert status_of(resp) == 431 and b"Connection: close" in resp and eof
        resp, _ = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 300 + b"\r\n\r\n")
        assert status_of(resp) == 200
        # Judged while the head is still arriving: no blank line needed.
        resp, eof = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 2000)
        assert status_of(resp) == 431 and eof


def test_max_headers_431(make_manager):
    mgr, port = start(make_manager, max_headers=5)
    with serve(mgr):
        def req(n):
            fields = b"".join(b"H%d: v\r\n" % i for i in range(n))
            return b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"

        assert status_of(exchange(port, req(4))[0]) == 200  # and Host: 5 lines
        resp, eof = exchange(port, req(5))
        assert status_of(resp) == 431 and eof


def test_max_uri_414(make_manager):
    mgr, port = start(make_manager, max_uri=64)
    with serve(mgr):
        ok = b"GET /" + b"a" * 63 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert status_of(exchange(port, ok)[0]) == 200
        resp, eof = exchange(port, b"GET /" + b"a" * 64 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(resp) == 414 and eof
        # A long query counts too (the request-target is path and query).
        resp, _ = exchange(port, b"GET /?" + b"q" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(resp) == 414


def test_max_body_413_from_content_length_before_the_body(make_manager):
    mgr, port = start(make_manager, max_body=1000)
    with serve(mgr):
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        resp, _ = exchange(port, head + b"x" * 1000)
        assert resp.endswith(b"1000:/")
        # Refused on the head alone: no body byte is sent at all.
        resp, eof = exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n")
        assert status_of(resp) == 413 and eof


def test_max_body_413_while_dechunking(make_manager):
    mgr, port = start(make_manager, max_body=1000)
    with serve(mgr):
        ok = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + \
             b"1f4\r\n" + b"a" * 500 + b"\r\n" + b"1f4\r\n" + b"b" * 500 + b"\r\n0\r\n\r\n"
        assert exchange(port, ok)[0].endswith(b"1000:/")
        # The third chunk announces 1001 bytes in total: refused at its size line.
        bad = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + \
              b"1f4\r\n" + b"a" * 500 + b"\r\n" + b"1f4\r\n" + b"b" * 500 + b"\r\n1\r\n"
        resp, eof = exchange(port, bad)
        assert status_of(resp) == 413 and eof


def test_expect_100_continue_and_413_instead_of_continue(make_manager):
    mgr, port = start(make_manager, max_body=100)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                      b"Content-Length: 10\r\n\r\n")
            reader = HttpReader(s)
            assert reader.read_response() == b"HTTP/1.1 100 Continue\r\n\r\n"
            s.sendall(b"0123456789")
            assert reader.read_response().endswith(b"10:/")
        finally:
            s.close()
        resp, eof = exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                                   b"Content-Length: 101\r\n\r\n")
        assert status_of(resp) == 413 and eof


def test_limits_seen_by_http_client(make_manager):
    mgr, port = start(make_manager, max_body=10, max_uri=32, max_headers=3)
    with serve(mgr):
        for method, path, headers, body, want in (
            ("POST", "/", {}, b"x" * 11, 413),
            ("GET", "/" + "u" * 40, {}, None, 414),
            ("GET", "/", {f"X-{i}": "v" for i in range(5)}, None, 431),
            ("POST", "/", {}, b"x" * 10, 200),
        ):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                assert resp.status == want
                if want != 200:
                    assert resp.getheader("Connection") == "close"
            finally:
                conn.close()


def test_zero_disables_a_limit_and_none_keeps_the_default(make_manager):
    mgr, port = start(make_manager, max_uri=0, max_headers=0, max_head=200_000,
                      max_header_line=None)
    with serve(mgr):
        # 64 KiB is the default URI limit; 0 lifts it (the head limit remains).
        resp, _ = exchange(port, b"GET /" + b"a" * (100 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(resp) == 200
        # the default: 1000 fields
        many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 2000 + b"\r\n"
        assert status_of(exchange(port, many)[0]) == 200
        resp, _ = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20_000 + b"\r\n\r\n")
        assert status_of(resp) == 431  # max_header_line=None: the 16 KiB default
        short_lines = b"X: aaaa\r\n" * 30_000
        resp, _ = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + short_lines + b"\r\n")
        assert status_of(resp) == 431  # max_head=200000, in short lines


def test_limits_are_per_listener(make_manager):
    mgr = make_manager()
    _, small = listen_free(mgr, handler=echo, max_body=10)
    _, default = listen_free(mgr, handler=echo)
    body = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n" + b"x" * 11
    with serve(mgr):
        assert status_of(exchange(small, body)[0]) == 413
        assert exchange(default, body)[0].endswith(b"11:/")


def test_limit_arguments_are_checked(make_manager):
    mgr = make_manager()
    for kwargs, exc in (
        ({"max_body": -1}, ValueError),
        ({"head_timeout_ms": 1 << 32}, ValueError),
        ({"max_head": 1 << 64}, ValueError),
        ({"max_uri": "10"}, TypeError),
        ({"max_uri": 1.5}, TypeError),
        ({"max_headers": 10, "http": False}, ValueError),
    ):
        with pytest.raises(exc):
            mgr.listen("http://127.0.0.1:0", **kwargs)
    with pytest.raises(ValueError, match="HTTP"):
        mgr.listen("tcp://127.0.0.1:0", max_body=10)
    with pytest.raises(TypeError):
        mgr.listen("http://127.0.0.1:0", None, None, 10)  # keyword-only
    assert mgr.connections == ()  # nothing was opened by a refused call
    lsn = mgr.listen("http://127.0.0.1:0", max_body=True, idle_timeout_ms=None)
    assert lsn.is_listening


# --------------------------------------------------------------------------
# Deadlines


def test_slowloris_head_deadline_408(make_manager):
    mgr, port = start(make_manager, head_timeout_ms=400, idle_timeout_ms=0)
    with serve(mgr):
        s = raw_connect(port)
        try:
            t0 = time.monotonic()
            closed_at = None
            data = b""
            # One byte every 50 ms: each byte is progress, but the head never ends.
            for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
                try:
                    s.sendall(bytes([b]))
                except OSError:
                    closed_at = time.monotonic()
                    break
                s.settimeout(0.05)
                try:
                    chunk = s.recv(4096)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    closed_at = time.monotonic()
                    break
                data += chunk
                if not chunk or b"\r\n\r\n" in data:
                    closed_at = time.monotonic()
                    break
                if time.monotonic() - t0 > 5:
                    break
            assert closed_at is not None, "the slow client was never cut off"
            assert 0.3 <= closed_at - t0 <= 2.0
            if data:
                assert data.startswith(b"HTTP/1.1 408 ")
            rest, eof = recv_until_eof(s, timeout=2)
            assert eof
        finally:
            s.close()
        assert good(port).endswith(b"0:/ok")


def test_slow_but_complete_head_within_deadline_is_served(make_manager):
    mgr, port = start(make_manager, head_timeout_ms=1500)
    with serve(mgr):
        s = raw_connect(port)
        try:
            for piece in (b"GET /slow HT", b"TP/1.1\r\nHo", b"st: x\r\n", b"\r\n"):
                s.sendall(piece)
                time.sleep(0.1)
            assert HttpReader(s).read_response().endswith(b"0:/slow")
        finally:
            s.close()


def test_idle_timeout_closes_idle_keep_alive_connection(make_manager):
    mgr, port = start(make_manager, idle_timeout_ms=300)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            assert HttpReader(s).read_response().endswith(b"0:/a")
            t0 = time.monotonic()
            rest, eof = recv_until_eof(s, timeout=3)
            assert eof and rest == b""
            assert 0.2 <= time.monotonic() - t0 <= 2.0
        finally:
            s.close()
        # An idle connection that never sent a byte is closed too.
        s = raw_connect(port)
        try:
            t0 = time.monotonic()
            assert recv_until_eof(s, timeout=3) == (b"", True)
            assert time.monotonic() - t0 <= 2.0
        finally:
            s.close()


def test_idle_timeout_zero_keeps_connection(make_manager):
    mgr, port = start(make_manager, idle_timeout_ms=0, head_timeout_ms=0)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = HttpReader(s)
            assert reader.read_response() is not None
            time.sleep(0.6)
            s.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.read_response().endswith(b"0:/b")
        finally:
            s.close()


def test_deferred_reply_is_not_cut_by_idle_timeout(make_manager):
    """An answer the application still owes is its business (long polling)."""
    pending = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            pending.append(conn)
            mgr.timer_add(600, lambda: conn.reply(200, "late"))

    mgr = make_manager()
    _, port = listen_free(mgr, handler=handler, idle_timeout_ms=200)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            resp = HttpReader(s).read_response(5)
            assert resp is not None and resp.endswith(b"late")
        finally:
            s.close()


def test_a_violation_does_not_disturb_other_connections(make_manager):
    seen = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_HDRS:
            seen.append(data.uri)
        echo(conn, ev, data)

    mgr = make_manager()
    _, port = listen_free(mgr, handler=handler, max_body=100, max_uri=100, head_timeout_ms=300)
    with serve(mgr):
        a = raw_connect(port)
        try:
            a.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = HttpReader(a)
            assert reader.read_response().endswith(b"0:/first")
            # Meanwhile: a too-large body, a too-long URI, a slowloris.
            big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\n"
            assert status_of(exchange(port, big)[0]) == 413
            long_uri = b"GET /" + b"u" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            assert status_of(exchange(port, long_uri)[0]) == 414
            slow = raw_connect(port)
            slow.sendall(b"GET / HTTP/1.1\r\n")
            a.sendall(b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.read_response().endswith(b"0:/second")
            rest, eof = recv_until_eof(slow, timeout=3)
            slow.close()
            assert eof and rest.startswith(b"HTTP/1.1 408 ")
            a.sendall(b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.read_response().endswith(b"0:/third")
        finally:
            a.close()
