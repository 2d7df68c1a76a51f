"""HTTP as strict as nginx (SPEC Decision 14; issue 12 item 4), each rule with
raw sockets, curl and Python's http.client, and the server serving on after
each refusal:

- an HTTP major version other than 1 -> 505;
- HTTP/1.1 without Host -> 400 (RFC 9112 §3.2); HTTP/1.0 may omit it;
- a 64 KiB head and 16 KiB header lines by default -> 431, settable in listen();
- a handler that raises on MG_EV_HTTP_MSG before answering -> 500 and close,
  the exception still going to error_handler (or printed);
- an error answer sent while the body still arrives is followed by a lingering
  close: the client finishes sending and reads the answer, no reset.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import time

import pytest
from conftest import HttpReader, listen_free, raw_connect, recv_until_eof, serve

from cymongoose import MG_EV_HTTP_MSG, Manager


def ok_handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, "ok:" + data.uri)


@pytest.fixture
def server(make_manager):
    """(port, mgr) of an HTTP server with the default limits, polled in the background."""
    mgr = make_manager()
    _, port = listen_free(mgr, handler=ok_handler)
    with serve(mgr):
        yield port, mgr


def refused(port: int, request: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``request``; return the status line of the answer and whether the
    server closed after it with nothing more (EOF, not a reset)."""
    s = raw_connect(port, timeout=timeout)
    try:
        s.sendall(request)
        resp = HttpReader(s).read_response(timeout)
        assert resp is not None, "no answer"
        rest, eof = recv_until_eof(s, timeout=timeout)
        return resp.split(b"\r\n", 1)[0], eof and rest == b""
    finally:
        s.close()


def still_serving(port: int) -> None:
    s = raw_connect(port)
    try:
        s.sendall(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert HttpReader(s).read_response().endswith(b"ok:/next")
    finally:
        s.close()


# --------------------------------------------------------------------------
# 505


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/9.9", b"HTTP/0.9", b"HTTP/3.1"])
def test_major_version_not_1_is_505(server, version):
    port, _ = server
    line, closed = refused(port, b"GET / " + version + b"\r\nHost: x\r\n\r\n")
    assert line == b"HTTP/1.1 505 HTTP Version Not Supported" and closed
    still_serving(port)


def test_http_1_minor_versions_are_served(server):
    port, _ = server
    for version in (b"HTTP/1.0", b"HTTP/1.1", b"HTTP/1.7"):
        s = raw_connect(port)
        try:
            s.sendall(b"GET /v HTTP" + version[4:] + b"\r\nHost: x\r\n\r\n")
            assert HttpReader(s).read_response().startswith(b"HTTP/1.1 200 ")
        finally:
            s.close()


def test_curl_http2_prior_knowledge_gets_no_http2(server, curl):
    """curl speaking HTTP/2 with prior knowledge: the preface ("PRI * HTTP/2.0")
    is refused with 505 instead of hanging."""
    port, _ = server
    r = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*",
                        "--max-time", "10", "--http2-prior-knowledge", f"http://127.0.0.1:{port}/"],
                       capture_output=True, timeout=20)
    # curl cannot read an HTTP/1.1 answer to its HTTP/2 preface: it fails fast
    # (it does not wait for its timeout) and reports no HTTP/2 status.
    assert r.stdout.strip() != b"200"
    assert r.returncode != 28  # 28: timed out
    still_serving(port)


# --------------------------------------------------------------------------
# Host


def test_http11_without_host_is_400(server):
    port, _ = server
    line, closed = refused(port, b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")
    assert line == b"HTTP/1.1 400 Bad Request" and closed
    still_serving(port)


def test_http10_without_host_is_served(server):
    port, _ = server
    s = raw_connect(port)
    try:
        s.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        assert HttpReader(s).read_response().endswith(b"ok:/old")
    finally:
        s.close()


def test_duplicate_host_is_400(server):
    port, _ = server
    line, closed = refused(port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert line == b"HTTP/1.1 400 Bad Request" and closed


def test_curl_without_host_header(server, curl):
    port, _ = server
    r = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*",
                        "--max-time", "10", "-H", "Host:", f"http://127.0.0.1:{port}/"],
                       capture_output=True, timeout=20)
    assert r.stdout == b"400"
    r = subprocess.run([curl, "-s", "--noproxy", "*", "--max-time", "10",
                        f"http://127.0.0.1:{port}/with-host"], capture_output=True, timeout=20)
    assert r.stdout == b"ok:/with-host"


# --------------------------------------------------------------------------
# Limits


def test_default_header_line_limit_is_16k(server):
    port, _ = server
    s = raw_connect(port)
    try:
        s.sendall(b"GET /fits HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (16384 - 3) + b"\r\n\r\n")
        assert HttpReader(s).read_response().endswith(b"ok:/fits")
    finally:
        s.close()
    too_wide = b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (16384 - 2) + b"\r\n\r\n"
    line, closed = refused(port, too_wide)
    assert line == b"HTTP/1.1 431 Request Header Fields Too Large" and closed
    # A 200 KB header line is refused while it is still arriving.
    line, closed = refused(port, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 200_000)
    assert line.startswith(b"HTTP/1.1 431 ") and closed
    still_serving(port)


def test_default_head_limit_is_64k(server):
    port, _ = server
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(7))  # 56 KB
    s = raw_connect(port)
    try:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        assert HttpReader(s).read_response().endswith(b"ok:/big")
    finally:
        s.close()
    more = fields + b"".join(b"Y-%d: %s\r\n" % (i, b"v" * 8000) for i in range(2))  # 72 KB
    line, closed = refused(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + more + b"\r\n")
    assert line.startswith(b"HTTP/1.1 431 ") and closed
    still_serving(port)


def test_limits_settable_in_listen(make_manager):
    mgr = make_manager()
    _, port = listen_free(mgr, handler=ok_handler, max_head=200_000, max_header_line=100_000)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"GET /wide HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 90_000 + b"\r\n\r\n")
            assert HttpReader(s).read_response().endswith(b"ok:/wide")
        finally:
            s.close()
    with pytest.raises(ValueError, match="max_header_line"):
        mgr.listen("http://127.0.0.1:0", max_header_line=-1)


def test_curl_large_header(server, curl):
    port, _ = server
    r = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*",
                        "--max-time", "10", "-H", "X-Big: " + "a" * 20_000,
                        f"http://127.0.0.1:{port}/"], capture_output=True, timeout=20)
    assert r.stdout == b"431"


# --------------------------------------------------------------------------
# 500 when the handler raises


def test_handler_exception_gives_500(make_manager):
    errors = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/boom":
                raise ValueError("boom")
            conn.reply(200, "fine")

    mgr = make_manager(error_handler=errors.append)
    _, port = listen_free(mgr, handler=handler)
    with serve(mgr):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/boom")
        resp = conn.getresponse()
        assert resp.status == 500 and resp.reason == "Internal Server Error"
        assert resp.getheader("Connection") == "close"
        assert resp.read() == b"Internal Server Error\n"
        conn.close()
        # Pipelined requests behind the failed one are not served; the
        # connection closes after the 500.
        s = raw_connect(port)
        try:
            s.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            data, eof = recv_until_eof(s)
            assert eof and data.startswith(b"HTTP/1.1 500 ") and data.count(b"HTTP/1.1") == 1
        finally:
            s.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/ok")
        assert conn.getresponse().read() == b"fine"
        conn.close()
    assert [str(e) for e in errors] == ["boom", "boom"]


def test_handler_exception_without_error_handler_is_printed(make_manager, capsys):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            raise RuntimeError("printed")

    mgr = make_manager()
    _, port = listen_free(mgr, handler=handler)
    with serve(mgr):
        line, closed = refused(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert line == b"HTTP/1.1 500 Internal Server Error" and closed
    assert "RuntimeError: printed" in capsys.readouterr().err


def test_exception_after_a_response_started_sends_no_500(make_manager):
    errors = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/replied":
                conn.reply(200, "done")
            else:
                conn.send("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")
            raise ValueError("late")

    mgr = make_manager(error_handler=errors.append)
    _, port = listen_free(mgr, handler=handler)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"GET /replied HTTP/1.1\r\nHost: x\r\n\r\n")
            assert HttpReader(s).read_response().endswith(b"done")
            s.sendall(b"GET /partial HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(0.5)
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except TimeoutError:
                pass
            assert b"500" not in data and data.startswith(b"HTTP/1.1 200 OK")
        finally:
            s.close()
    assert len(errors) == 2


def test_curl_sees_500(make_manager, curl):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            raise KeyError("x")

    mgr = make_manager(error_handler=lambda exc: None)
    _, port = listen_free(mgr, handler=handler)
    with serve(mgr):
        r = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy", "*",
                            "--max-time", "10", f"http://127.0.0.1:{port}/"],
                           capture_output=True, timeout=20)
    assert r.stdout == b"500"


# --------------------------------------------------------------------------
# Lingering close


def test_413_while_the_body_arrives_is_read_not_reset(make_manager):
    """http.client sends a 4 MB body to a server that allows 1 KB: the server
    answers 413 after the head and reads (dropping) the rest, so every send
    succeeds and the client reads the 413 instead of a reset."""
    mgr = make_manager()
    _, port = listen_free(mgr, handler=ok_handler, max_body=1000)
    with serve(mgr):
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/upload", body=b"x" * (4 << 20))  # never BrokenPipe
            resp = conn.getresponse()
            assert resp.status == 413 and resp.getheader("Connection") == "close"
            assert resp.read() == b"Content Too Large\n"
            conn.close()
        still_serving(port)


def test_curl_upload_over_the_limit_gets_413(make_manager, curl, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"y" * (8 << 20))
    mgr = make_manager()
    _, port = listen_free(mgr, handler=ok_handler, max_body=1000)
    with serve(mgr):
        r = subprocess.run([curl, "-s", "-S", "-o", "/dev/null", "-w", "%{http_code}", "--noproxy",
                            "*", "--max-time", "20", "-H", "Expect:", "--data-binary", f"@{big}",
                            f"http://127.0.0.1:{port}/up"], capture_output=True, timeout=30)
    assert r.stdout == b"413", r.stderr
    assert r.returncode == 0, r.stderr  # no "Connection reset by peer"


def test_lingering_is_bounded(make_manager):
    """A client that keeps sending after the error answer is closed after the
    lingering time (2 s), not served forever."""
    mgr = make_manager()
    _, port = listen_free(mgr, handler=ok_handler, max_body=10)
    with serve(mgr):
        s = raw_connect(port)
        try:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
            assert HttpReader(s).read_response().startswith(b"HTTP/1.1 413 ")
            assert s.recv(10) == b""  # our FIN came right after the answer
            start = time.monotonic()
            with pytest.raises(OSError):
                for _ in range(10_000):
                    s.sendall(b"z" * 4096)  # dropped by the server, until it closes
                    time.sleep(0.002)
            took = time.monotonic() - start
            assert 1.0 < took < 8, took
        finally:
            s.close()
        assert len([c for c in mgr.connections if not c.is_listening]) == 0


def test_nothing_but_the_answer_after_a_refusal(server):
    """The bytes after a refused head are never parsed as a request."""
    port, _ = server
    s = raw_connect(port)
    try:
        s.sendall(b"GET / HTTP/2.0\r\nHost: x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        data, eof = recv_until_eof(s)
        assert eof and data.count(b"HTTP/1.1 ") == 1 and b"smuggled" not in data
    finally:
        s.close()


def test_ipv6_server_is_strict_too(make_manager):
    if not _have_ipv6():
        pytest.skip("no ::1 on this machine")
    mgr = make_manager()
    _, port = listen_free(mgr, handler=ok_handler, host="[::1]")
    with serve(mgr):
        s = socket.create_connection(("::1", port), timeout=5)
        try:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            data, eof = recv_until_eof(s)
            assert eof and data.startswith(b"HTTP/1.1 400 ")
        finally:
            s.close()


def _have_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_manager_reused_after_strict_answers():
    with Manager(ok_handler) as mgr:
        _, port = listen_free(mgr)
        with serve(mgr):
            for req in (b"GET / HTTP/2.0\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"):
                line, closed = refused(port, req)
                assert closed
            still_serving(port)
