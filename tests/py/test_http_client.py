"""Our HTTP client (issue 3 item 5; SPEC 2.5.6, 2.13, Decision 11): connect("http://…")
with names resolved off the loop, the request written on MG_EV_CONNECT, responses as
MG_EV_HTTP_MSG with status(), framed by Content-Length, chunks or close; HEAD
responses framed through send(); DNS failures as MG_EV_ERROR then MG_EV_CLOSE;
Connection.resolve / resolve_cancel / http_basic_auth.

Peers: our own server, scripted raw-socket servers (byte-exact responses) and
Python's http.server."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import socket
import threading
import time

import pytest
from conftest import free_port, listen_free, poll_for, poll_until

from cymongoose import (
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_OPEN,
    MG_EV_POLL,
    MG_EV_READ,
    MG_EV_RESOLVE,
    MG_EV_WRITE,
)

pytestmark = pytest.mark.timeout(60)

QUIET = (MG_EV_POLL, MG_EV_READ, MG_EV_WRITE)


class Client:
    """A handler that sends ``requests`` (bytes, or callables run with the
    connection) on MG_EV_CONNECT and records events and copies of responses."""

    def __init__(self, *requests, on_msg=None):
        self.requests = requests
        self.on_msg = on_msg
        self.events: list[int] = []
        self.errors: list[str] = []
        self.msgs: list[dict] = []
        self.resolved_addr = None  # remote_addr as seen in MG_EV_RESOLVE

    def __call__(self, conn, ev, data):
        if ev not in QUIET:
            self.events.append(ev)
        if ev == MG_EV_RESOLVE:
            assert data is None
            self.resolved_addr = conn.remote_addr
        elif ev == MG_EV_CONNECT:
            for r in self.requests:
                r(conn) if callable(r) else conn.send(r)
        elif ev == MG_EV_ERROR:
            self.errors.append(data)
        elif ev == MG_EV_HTTP_MSG:
            self.msgs.append({
                "status": data.status(), "method": data.method, "uri": data.uri,
                "proto": data.proto, "headers": data.headers(), "body": data.body_bytes,
            })
            if self.on_msg is not None:
                self.on_msg(conn, data)

    @property
    def closed(self) -> bool:
        return MG_EV_CLOSE in self.events


def our_server(mgr):
    """An HTTP server on the same manager (the test polls both sides)."""
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/auth":
                conn.reply(200, data.header("Authorization", "none"))
            elif data.uri.startswith("/status/"):
                code = int(data.uri.rsplit("/", 1)[1])
                conn.reply(code, "" if code in (204, 304) else f"status {code}")
            else:
                conn.reply(200, f"{data.method} {data.uri} {len(data.body_bytes)}")

    _, port = listen_free(mgr, handler=handler)
    return port


@contextlib.contextmanager
def script_server(*responses, requests: int = 1, close: bool = True, host: str = "127.0.0.1"):
    """Accept one connection, wait for ``requests`` request heads, then write each
    response (bytes; a float is a pause), and close if ``close``.  Yields the port;
    ``.received`` on the yielded object's thread holds what the client sent."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    lsn = socket.socket(family, socket.SOCK_STREAM)
    lsn.bind((host, 0))
    lsn.listen(1)
    lsn.settimeout(10)
    received = bytearray()

    def run():
        try:
            conn, _ = lsn.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            deadline = time.monotonic() + 10
            while received.count(b"\r\n\r\n") < requests and time.monotonic() < deadline:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                received.extend(chunk)
            for r in responses:
                if isinstance(r, float):
                    time.sleep(r)
                else:
                    conn.sendall(r)
            if not close:  # keep the socket until the client goes away
                with contextlib.suppress(OSError):
                    while conn.recv(65536):
                        pass

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield lsn.getsockname()[1], received
    finally:
        lsn.close()
        t.join(15)


def fetch(mgr, url, client, timeout=5.0):
    conn = mgr.connect(url, client)
    poll_until(mgr, lambda: client.msgs or client.closed, timeout=timeout)
    return conn


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


# --------------------------------------------------------------------------
# connect, names


def test_connect_localhost_and_status(make_manager):
    mgr = make_manager()
    port = our_server(mgr)
    client = Client(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
    conn = fetch(mgr, f"http://localhost:{port}", client)
    assert client.events[:3] == [MG_EV_OPEN, MG_EV_RESOLVE, MG_EV_CONNECT]
    m = client.msgs[0]
    assert (m["status"], m["method"], m["uri"], m["proto"]) == (200, "HTTP/1.1", "200", "OK")
    assert m["body"] == b"GET /hello 0"
    assert conn.remote_addr == ("127.0.0.1", port, False) and conn.is_client


def _loopback_names() -> list[str]:
    """Names other than the literal "localhost" that the system resolver maps to
    127.0.0.1 (from /etc/hosts): these go through the asynchronous lookup."""
    out = []
    for name in (socket.gethostname(), "localhost.localdomain", "localhost4", "localhost."):
        try:
            infos = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            continue
        if infos and all(i[4][0] == "127.0.0.1" for i in infos):
            out.append(name)
    return out


def test_name_resolves_off_the_loop(make_manager):
    names = _loopback_names()
    if not names:
        pytest.skip("no name other than localhost resolves to 127.0.0.1 here")
    mgr = make_manager()
    port = our_server(mgr)
    client = Client(GET)
    t0 = time.monotonic()
    conn = mgr.connect(f"http://{names[0]}:{port}", client)
    assert time.monotonic() - t0 < 0.5  # returned at once
    assert client.events == [MG_EV_OPEN]  # the answer comes later, from the loop
    poll_until(mgr, lambda: client.msgs)
    assert client.events[:3] == [MG_EV_OPEN, MG_EV_RESOLVE, MG_EV_CONNECT]
    assert client.msgs[0]["status"] == 200
    assert client.resolved_addr == ("127.0.0.1", port, False)  # known at MG_EV_RESOLVE
    assert conn.remote_addr == ("127.0.0.1", port, False)


def test_dns_failure_gives_error_then_close(make_manager):
    mgr = make_manager()
    client = Client(GET)
    conn = mgr.connect("http://no-such-host.invalid:8080", client)
    assert conn.id > 0 and client.events == [MG_EV_OPEN]
    poll_until(mgr, lambda: client.closed)
    assert client.events == [MG_EV_OPEN, MG_EV_ERROR, MG_EV_CLOSE]
    assert client.errors == ["no-such-host.invalid DNS lookup failed"]
    assert conn.id == 0 and conn not in mgr.connections


def test_connection_refused_gives_error_then_close(make_manager):
    mgr = make_manager()
    client = Client(GET)
    mgr.connect(f"http://127.0.0.1:{free_port()}", client)
    poll_until(mgr, lambda: client.closed)
    assert client.events[-2:] == [MG_EV_ERROR, MG_EV_CLOSE]
    assert MG_EV_CONNECT not in client.events and not client.msgs


def test_ipv6_literal(make_manager, ipv6):
    mgr = make_manager()
    events = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            events.append(conn.remote_addr[2])
            conn.reply(200, "v6")

    lsn = mgr.listen("http://[::1]:0", handler)
    client = Client(GET)
    fetch(mgr, f"http://[::1]:{lsn.local_addr[1]}", client)
    assert client.msgs[0]["body"] == b"v6" and events == [True]


# --------------------------------------------------------------------------
# Framing of responses


def test_keep_alive_several_requests_on_one_connection(make_manager):
    mgr = make_manager()
    port = our_server(mgr)

    def more(conn, data):
        if len(client.msgs) < 3:
            conn.send(f"GET /n{len(client.msgs)} HTTP/1.1\r\nHost: x\r\n\r\n")

    client = Client(b"GET /n0 HTTP/1.1\r\nHost: x\r\n\r\n", on_msg=more)
    mgr.connect(f"http://127.0.0.1:{port}", client)
    poll_until(mgr, lambda: len(client.msgs) == 3)
    assert [m["body"] for m in client.msgs] == [b"GET /n0 0", b"GET /n1 0", b"GET /n2 0"]
    assert client.events.count(MG_EV_CONNECT) == 1


@pytest.mark.parametrize("code", [200, 201, 204, 301, 304, 404, 500, 503])
def test_status_codes(make_manager, code):
    mgr = make_manager()
    port = our_server(mgr)
    client = Client(f"GET /status/{code} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
                    f"GET /after{code} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    mgr.connect(f"http://127.0.0.1:{port}", client)
    poll_until(mgr, lambda: len(client.msgs) == 2)
    assert client.msgs[0]["status"] == code and client.msgs[0]["uri"] == str(code)
    assert client.msgs[0]["body"] == (b"" if code in (204, 304) else b"status %d" % code)
    assert client.msgs[1]["body"] == b"GET /after%d 0" % code  # framing stayed in step


def test_chunked_response(make_manager):
    resp = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    mgr = make_manager()
    with script_server(resp) as (port, _):
        client = Client(GET)
        fetch(mgr, f"http://127.0.0.1:{port}", client)
    assert client.msgs[0]["body"] == b"hello world" and client.msgs[0]["status"] == 200


def test_chunked_response_trickling(make_manager):
    body = b"".join(b"%x\r\n%s\r\n" % (n, b"z" * n) for n in (1, 2, 300, 4000)) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    pieces: list = [head]
    for i in range(0, len(body), 333):  # split across size lines and data
        pieces += [body[i:i + 333], 0.005]
    mgr = make_manager()
    with script_server(*pieces) as (port, _):
        client = Client(GET)
        conn = mgr.connect(f"http://127.0.0.1:{port}", client)
        poll_until(mgr, lambda: client.msgs or client.closed)
    assert client.msgs[0]["body"] == b"z" * (1 + 2 + 300 + 4000)
    assert conn is not None


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK"])
def test_close_delimited_response(make_manager, status_line):
    resp = status_line + b"\r\nContent-Type: text/plain\r\n\r\nbody until the peer closes"
    mgr = make_manager()
    with script_server(resp, 0.05, b" and more") as (port, _):
        client = Client(GET)
        mgr.connect(f"http://127.0.0.1:{port}", client)
        poll_until(mgr, lambda: client.closed)
    assert client.msgs[0]["body"] == b"body until the peer closes and more"
    # The message is complete only at the close, and comes before MG_EV_CLOSE.
    assert client.events[-2:] == [MG_EV_HTTP_MSG, MG_EV_CLOSE]


def test_truncated_response_gives_no_message(make_manager):
    mgr = make_manager()
    with script_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this") as (port, _):
        client = Client(GET)
        mgr.connect(f"http://127.0.0.1:{port}", client)
        poll_until(mgr, lambda: client.closed)
    assert client.msgs == [] and client.events[-1] == MG_EV_CLOSE


def test_head_response_framed_through_send(make_manager):
    """send() goes through the HTTP client, which follows the requests written
    (split across calls): the answer to HEAD has no body despite Content-Length."""
    responses = (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
                 b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    mgr = make_manager()
    with script_server(*responses, requests=2, close=False) as (port, received):
        client = Client(b"HE", b"AD /x HTTP/1.1\r\nHo", b"st: x\r\n\r\nGET /y HTTP/1.1\r\n",
                        b"Host: x\r\n\r\n")
        conn = mgr.connect(f"http://127.0.0.1:{port}", client)
        poll_until(mgr, lambda: len(client.msgs) == 2)
        conn.close()
        poll_for(mgr, 0.05)
    assert [m["body"] for m in client.msgs] == [b"", b"ok"]
    assert [h for h in client.msgs[0]["headers"]] == [("Content-Length", "1000")]
    assert bytes(received).startswith(b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /y")


def test_python_http_server_peer(make_manager):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path == "/old":  # HTTP/1.0 style: no length, close
                self.protocol_version = "HTTP/1.0"
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"old style")
                self.close_connection = True
                return
            body = json.dumps({"path": self.path, "ua": self.headers.get("User-Agent")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        port = httpd.server_address[1]
        mgr = make_manager()
        client = Client(b"GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: cm\r\n\r\n",
                        b"GET /old HTTP/1.1\r\nHost: x\r\n\r\n")
        mgr.connect(f"http://127.0.0.1:{port}", client)
        poll_until(mgr, lambda: client.closed)
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)
    assert json.loads(client.msgs[0]["body"]) == {"path": "/a", "ua": "cm"}
    assert client.msgs[1]["body"] == b"old style" and client.msgs[1]["status"] == 200


# --------------------------------------------------------------------------
# resolve, resolve_cancel, http_basic_auth


def test_resolve_literal_and_failure_on_udp(make_manager):
    mgr = make_manager()
    events = []
    conn = mgr.connect("udp://127.0.0.1:9", lambda c, ev, d: events.append((ev, d))
                       if ev not in QUIET else None)
    events.clear()
    conn.resolve("udp://localhost:4321")  # a literal: answered right here
    assert events == [(MG_EV_RESOLVE, None)]
    assert conn.remote_addr == ("127.0.0.1", 4321, False)
    conn.resolve("udp://x.invalid:1")
    poll_until(mgr, lambda: (MG_EV_CLOSE, None) in events)
    assert events[1:] == [(MG_EV_ERROR, "x.invalid DNS lookup failed"), (MG_EV_CLOSE, None)]


def test_resolve_cancel_then_resolve_a_waiting_client(make_manager):
    mgr = make_manager()
    port = our_server(mgr)
    client = Client(GET)
    conn = mgr.connect("http://never.invalid:80", client)
    conn.resolve_cancel()  # no answer, no error: the client just waits
    poll_for(mgr, 0.3)
    assert client.events == [MG_EV_OPEN] and not conn.is_closing
    conn.resolve(f"http://127.0.0.1:{port}")  # now connect it to our server
    poll_until(mgr, lambda: client.msgs)
    assert client.events[:3] == [MG_EV_OPEN, MG_EV_RESOLVE, MG_EV_CONNECT]
    assert client.msgs[0]["body"] == b"GET / 0"


def test_resolve_errors(make_manager):
    mgr = make_manager()
    lsn = mgr.listen("http://127.0.0.1:0")
    with pytest.raises(TypeError):
        lsn.resolve(b"http://localhost:1")
    client = Client()
    conn = mgr.connect("udp://127.0.0.1:9", client)
    conn.resolve("")  # no host: reported like a failed lookup
    assert client.errors == ["DNS lookup failed: no host in ''"]
    poll_until(mgr, lambda: client.closed)
    with pytest.raises(RuntimeError, match="closed"):
        conn.resolve("udp://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="closed"):
        conn.resolve_cancel()


@pytest.mark.parametrize("user, password, plain", [
    ("user", "pass", b"user:pass"),
    ("user", "", b"user"),  # SPEC 1.5: user[:pass]
    ("Aladdin", "open sesame", b"Aladdin:open sesame"),
    ("üser", "pässword", "üser:pässword".encode()),
    (b"bin\xff", b"p", b"bin\xff:p"),
])
def test_http_basic_auth(make_manager, user, password, plain):
    mgr = make_manager()
    port = our_server(mgr)
    want = "Basic " + base64.b64encode(plain).decode()

    def auth(conn):
        conn.send("GET /auth HTTP/1.1\r\nHost: x\r\n")
        before = conn.send_len
        conn.http_basic_auth(user, password)
        assert conn.send_data()[before:] == f"Authorization: {want}\r\n".encode()
        conn.send("\r\n")

    client = Client(auth)
    fetch(mgr, f"http://127.0.0.1:{port}", client)
    assert client.msgs[0]["body"] == want.encode()


def test_http_basic_auth_on_closed_connection(make_manager):
    mgr = make_manager()
    client = Client()
    conn = mgr.connect("udp://127.0.0.1:9", client)
    conn.close()
    poll_until(mgr, lambda: client.closed)
    with pytest.raises(RuntimeError, match="closed"):
        conn.http_basic_auth("a", "b")
    with pytest.raises(TypeError):
        mgr.connect("udp://127.0.0.1:9").http_basic_auth(1, "b")
