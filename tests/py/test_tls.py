"""TLS with real peers (SPEC 1.7, 2.8, Decisions 7 and 13): curl and Python's ssl
against our HTTPS server, our client against ``openssl s_server``, mutual TLS, bad
certificates and bad peers.  Certificates come from tests/py/tls_certs.py (the
``openssl`` command)."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import warnings
from typing import Any

import pytest
import tls_certs
from conftest import HOST, Recorder, poll_until, recv_until_eof, serve, wait_until

from cymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_TLS_HS,
    Manager,
    TlsOpts,
)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tls_certs.Certs:
    return tls_certs.make(tmp_path_factory.getbasetemp() / "tls-certs")


def server_opts(pem: tls_certs.Pem, ca: bytes | None = None) -> TlsOpts:
    return TlsOpts(cert=pem.cert, key=pem.key, ca=ca)


class App:
    """An HTTPS server: /hello, /big (a file through serve_file), else serve_dir;
    it records every event but POLL."""

    def __init__(self, root: str | None = None):
        self.rec = Recorder()
        self.root = root
        self.alpn_seen: list[Any] = []

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        self.rec(conn, ev, data)
        if ev != MG_EV_HTTP_MSG:
            return
        if data.uri == "/hello":
            conn.reply(200, "hello over tls\n")
        elif data.uri == "/big" and self.root:
            conn.serve_file(data, os.path.join(self.root, "big.bin"))
        elif self.root:
            conn.serve_dir(data, self.root)
        else:
            conn.reply(404, "no\n")

    def errors(self) -> list[str]:
        with self.rec.lock:
            return [d for _, e, d in self.rec.events if e == MG_EV_ERROR]


def https_server(mgr: Manager, pem: tls_certs.Pem, app: App, ca: bytes | None = None,
                 scheme: str = "https") -> int:
    lsn = mgr.listen(f"{scheme}://{HOST}:0", app)
    lsn.tls_init(server_opts(pem, ca))
    return lsn.local_addr[1]


def run_curl(curl: str, url: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([curl, "-sS", "--noproxy", "*", "--max-time", str(int(timeout)), *args,
                           url],
                          capture_output=True, timeout=timeout + 10)


# --------------------------------------------------------------------------
# Our server, real clients


@pytest.mark.parametrize("version", [["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]],
                         ids=["tls1.2", "tls1.3"])
def test_curl_verifies_chain(make_manager, certs, curl, version):
    """RSA leaf + EC intermediate + RSA root; curl trusts only the root."""
    app = App()
    mgr = make_manager()
    port = https_server(mgr, certs.leaf, app)
    with serve(mgr):
        r = run_curl(curl, f"https://localhost:{port}/hello", "--cacert", str(certs.root.cert_path),
                     *version, "-w", "\n%{http_version} %{ssl_verify_result}")
    assert r.returncode == 0, r.stderr
    body, _, meta = r.stdout.rpartition(b"\n")
    assert body == b"hello over tls\n"
    assert meta == b"1.1 0"
    assert app.errors() == []
    assert app.rec.count(MG_EV_TLS_HS) == 1


def test_curl_http2_offered_gets_http11(make_manager, certs, curl):
    """ALPN: curl offers h2 and http/1.1; we choose http/1.1, never h2."""
    app = App()
    mgr = make_manager()
    port = https_server(mgr, certs.leaf, app)
    with serve(mgr):
        r = run_curl(curl, f"https://127.0.0.1:{port}/hello", "--cacert", str(certs.root.cert_path),
                     "--http2", "-v", "-w", "\n%{http_version}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith(b"\n1.1")
    assert re.search(rb"ALPN[:,] server accepted (to use )?http/1.1", r.stderr), r.stderr


def test_curl_rejects_unknown_ca(make_manager, certs, curl):
    """The other direction of verification: a client that does not trust us."""
    app = App()
    mgr = make_manager()
    port = https_server(mgr, certs.unknown, app)
    with serve(mgr):
        r = run_curl(curl, f"https://localhost:{port}/hello", "--cacert", str(certs.root.cert_path))
        ok = run_curl(curl, f"https://localhost:{port}/hello", "--cacert",
                      str(certs.unknown_ca.cert_path))
    assert r.returncode == 60  # peer certificate cannot be authenticated
    assert ok.returncode == 0 and ok.stdout == b"hello over tls\n"


def test_python_ssl_hostname_check_and_resumption(make_manager, certs):
    app = App()
    mgr = make_manager()
    port = https_server(mgr, certs.leaf, app)
    ctx = ssl.create_default_context(cafile=str(certs.root.cert_path))
    assert ctx.check_hostname
    with serve(mgr):
        c1 = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
        c1.request("GET", "/hello")
        r = c1.getresponse()
        assert (r.status, r.read()) == (200, b"hello over tls\n")
        assert c1.sock.selected_alpn_protocol() is None  # http.client offers none
        session = c1.sock.session
        c1.close()
        # Session resumption: the server's SSL_CTX keeps its ticket keys.
        with socket.create_connection((HOST, port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data, eof = recv_until_eof(s, timeout=10)
            assert s.session_reused
        assert eof and data.endswith(b"hello over tls\n")
        # The host name is checked: the certificate does not name this one.
        with socket.create_connection((HOST, port), timeout=10) as raw, \
                pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            ctx.wrap_socket(raw, server_hostname="example.com")


def test_python_ssl_alpn_http11(make_manager, certs):
    app = App()
    mgr = make_manager()
    port = https_server(mgr, certs.leaf, app)
    ctx = ssl.create_default_context(cafile=str(certs.root.cert_path))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with serve(mgr), socket.create_connection((HOST, port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        assert s.version() == "TLSv1.3"
    only_h2 = ssl.create_default_context(cafile=str(certs.root.cert_path))
    only_h2.set_alpn_protocols(["h2"])
    with serve(mgr), socket.create_connection((HOST, port), timeout=10) as raw, \
            only_h2.wrap_socket(raw, server_hostname="localhost") as s:
        assert s.selected_alpn_protocol() is None  # no h2, and no fatal alert


def test_tls11_refused(make_manager, certs):
    app = App()
    mgr = make_manager()
    port = https_server(mgr, certs.leaf, app)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with serve(mgr), socket.create_connection((HOST, port), timeout=10) as raw, \
            pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_hostname="localhost")
    assert wait_until(lambda: app.errors(), timeout=5)


def test_mutual_tls(make_manager, certs):
    """`ca` on a server: a client certificate is required and verified."""
    app = App()
    mgr = make_manager()
    port = https_server(mgr, certs.leaf, app, ca=certs.root.cert)
    ctx = ssl.create_default_context(cafile=str(certs.root.cert_path))
    with serve(mgr):
        # Without a certificate: TLS 1.3 fails at the first read after the handshake.
        with socket.create_connection((HOST, port), timeout=10) as raw:
            try:
                s = ctx.wrap_socket(raw, server_hostname="localhost")
                s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = s.recv(100)
            except (ssl.SSLError, ConnectionError):  # the alert (or a reset)
                answer = b""
            assert answer == b""  # never served
        assert wait_until(lambda: any("certificate" in e for e in app.errors()), timeout=5), \
            app.errors()
        # With one the CA signed: served.
        ctx.load_cert_chain(str(certs.client.cert_path), str(certs.client.key_path))
        c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
        c.request("GET", "/hello")
        assert c.getresponse().read() == b"hello over tls\n"
        c.close()


def test_ec_sec1_key_cn_only(make_manager, certs):
    """SPEC 2.8's typical pair: EC P-256 SEC1 key, CN=localhost, no SAN; our client
    accepts the CN as the host name."""
    mgr = make_manager()
    app = App()
    port = https_server(mgr, certs.ec_cn, app)
    got: list[Any] = []
    opts = TlsOpts(ca=certs.root.cert, name="localhost")
    client_get(mgr, f"https://127.0.0.1:{port}/hello", opts, got)
    assert got == [(200, b"hello over tls\n")]


def test_serve_file_10mb_over_tls(make_manager, certs, curl, tmp_path):
    data = os.urandom(10 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "index.html").write_bytes(b"<p>dir</p>")
    app = App(root=str(tmp_path))
    mgr = make_manager()
    port = https_server(mgr, certs.leaf, app)
    with serve(mgr):
        r = run_curl(curl, f"https://localhost:{port}/big", "--cacert", str(certs.root.cert_path),
                     timeout=60)
        d = run_curl(curl, f"https://localhost:{port}/big.bin", "--cacert",
                     str(certs.root.cert_path), "-r", "100-199")
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(r.stdout).digest() == hashlib.sha256(data).digest()
    assert d.returncode == 0 and d.stdout == data[100:200]


def test_hundred_concurrent_handshakes(make_manager, certs):
    """100 clients at once (ours, same loop as the server), each verified."""
    mgr = make_manager()
    app = App()
    port = https_server(mgr, certs.leaf, app)
    got: list[Any] = []
    opts = TlsOpts(ca=certs.root.cert, name="localhost")
    for _ in range(100):
        start_get(mgr, f"https://127.0.0.1:{port}/hello", opts, got)
    assert poll_until(mgr, lambda: len(got) >= 100, timeout=60)
    assert got == [(200, b"hello over tls\n")] * 100
    assert app.rec.count(MG_EV_TLS_HS) == 100
    assert app.errors() == []


def test_bad_peers_fail_alone(make_manager, certs, curl):
    """Plaintext HTTP, garbage, and a client that vanishes mid-handshake: each
    connection closes quickly with an error; the server goes on serving."""
    app = App()
    mgr = make_manager()
    port = https_server(mgr, certs.leaf, app)
    with serve(mgr):
        for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 64 + b"garbage" * 100):
            with socket.create_connection((HOST, port), timeout=10) as s:
                s.sendall(junk)
                rest, eof = recv_until_eof(s, timeout=5)
                assert eof  # closed by us, well before the 5 s
                assert b"HTTP/1.1 200" not in rest
        with socket.create_connection((HOST, port), timeout=10) as s:
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
        assert wait_until(lambda: len(app.errors()) >= 3, timeout=10), app.errors()
        r = run_curl(curl, f"https://localhost:{port}/hello", "--cacert", str(certs.root.cert_path))
    errs = app.errors()
    assert any("http request" in e or "wrong version number" in e for e in errs), errs
    assert any("closed by peer" in e for e in errs), errs
    assert r.returncode == 0 and r.stdout == b"hello over tls\n"


# --------------------------------------------------------------------------
# Our client


def start_get(mgr: Manager, url: str, opts: TlsOpts | None, got: list[Any],
              path: str = "/hello") -> Any:
    """GET `path` over `url`: tls_init and the request in MG_EV_CONNECT (the
    documented pattern: the request waits for the handshake).  Appends
    (status, body) or the MG_EV_ERROR text to `got`."""
    def client(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_CONNECT:
            if opts is not None:
                conn.tls_init(opts)
            conn.send(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        elif ev == MG_EV_HTTP_MSG:
            got.append((data.status(), data.body_bytes))
            conn.close()
        elif ev == MG_EV_ERROR:
            got.append(data)
    return mgr.connect(url, client)


def client_get(mgr: Manager, url: str, opts: TlsOpts | None, got: list[Any]) -> None:
    start_get(mgr, url, opts, got)
    assert poll_until(mgr, lambda: got, timeout=20)


class SServer:
    """``openssl s_server -www`` on a free port with `pem` (chain and key)."""

    def __init__(self, pem: tls_certs.Pem, chain: tls_certs.Pem | None = None,
                 extra: tuple[str, ...] = ()):
        extra = [*(["-cert_chain", str(chain.cert_path)] if chain else []), *extra]
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"{HOST}:0", "-cert", str(pem.cert_path),
             "-key", str(pem.key_path), *extra, "-www", "-naccept", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.port = 0
        deadline = time.monotonic() + 10
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline().decode(errors="replace")
            m = re.search(r"ACCEPT \S*:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
            if not line and self.proc.poll() is not None:
                break
        assert self.port, "openssl s_server did not start"
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def s_server():
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    started: list[SServer] = []

    def start(pem: tls_certs.Pem, chain: tls_certs.Pem | None = None,
              extra: tuple[str, ...] = ()) -> SServer:
        s = SServer(pem, chain, extra)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def test_client_against_s_server(make_manager, certs, s_server):
    srv = s_server(certs.leaf, chain=certs.inter)  # leaf + intermediate, root trusted
    got: list[Any] = []
    client_get(make_manager(), f"https://localhost:{srv.port}/", TlsOpts(ca=certs.root.cert), got)
    assert isinstance(got[0], tuple), got
    assert got[0][0] == 200 and b"s_server" in got[0][1]


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_client_tls12_and_13(make_manager, certs, s_server, version):
    srv = s_server(certs.ec_cn, extra=(version,))
    got: list[Any] = []
    client_get(make_manager(), f"https://127.0.0.1:{srv.port}/",
               TlsOpts(ca=certs.root.cert, name="localhost"), got)
    assert isinstance(got[0], tuple) and got[0][0] == 200, got
    assert (b"TLSv1.2" if version == "-tls1_2" else b"TLSv1.3") in got[0][1]


@pytest.mark.parametrize("case,want", [
    ("wrong_name", "hostname mismatch"),
    ("expired", "certificate has expired"),
    ("not_yet_valid", "certificate is not yet valid"),
    ("unknown", "unable to get local issuer certificate"),
])
def test_client_refuses_bad_server(make_manager, certs, s_server, case, want):
    srv = s_server(getattr(certs, case))
    got: list[Any] = []
    client_get(make_manager(), f"https://localhost:{srv.port}/", TlsOpts(ca=certs.root.cert), got)
    assert len(got) == 1 and isinstance(got[0], str), got
    assert "certificate verify failed" in got[0] and want in got[0], got[0]
    # skip_verification: the same server is fine.
    ok: list[Any] = []
    client_get(make_manager(), f"https://localhost:{srv.port}/",
               TlsOpts(skip_verification=True, name="localhost"), ok)
    assert ok and isinstance(ok[0], tuple) and ok[0][0] == 200, ok


def test_client_system_store_by_default(make_manager, certs, s_server):
    """Decision 13: no `ca` means the system trust store, which does not know our
    test root: verification fails instead of trusting anything."""
    srv = s_server(certs.leaf)
    got: list[Any] = []
    client_get(make_manager(), f"https://localhost:{srv.port}/", TlsOpts(name="localhost"), got)
    assert isinstance(got[0], str) and "certificate verify failed" in got[0], got


def test_client_name_defaults_to_url_host(make_manager, certs, s_server):
    srv = s_server(certs.wrong_name)
    got: list[Any] = []
    client_get(make_manager(), f"https://localhost:{srv.port}/", TlsOpts(ca=certs.root.cert), got)
    assert "hostname mismatch" in got[0]
    ok: list[Any] = []
    client_get(make_manager(), f"https://localhost:{srv.port}/",
               TlsOpts(ca=certs.root.cert, name="not-localhost.test"), ok)
    assert ok[0][0] == 200, ok


def test_client_cert_for_mutual_tls(make_manager, certs):
    mgr = make_manager()
    app = App()
    port = https_server(mgr, certs.leaf, app, ca=certs.root.cert)
    got: list[Any] = []
    opts = TlsOpts(ca=certs.root.cert, cert=certs.client.cert, key=certs.client.key)
    client_get(mgr, f"https://localhost:{port}/hello", opts, got)
    assert got == [(200, b"hello over tls\n")]


# --------------------------------------------------------------------------
# SPEC 2.8: is_tls, inheritance, odd states


def test_is_tls_flags_and_events(make_manager, certs):
    mgr = make_manager()
    seen: dict[str, Any] = {}

    def server(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT:
            seen["accept"] = conn.is_tls  # inherited from the https:// listener
        elif ev == MG_EV_TLS_HS:
            seen["server_hs"] = conn.is_tls
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, "ok")

    lsn = mgr.listen(f"https://{HOST}:0", server)
    assert lsn.is_tls
    lsn.tls_init(server_opts(certs.leaf))
    events: list[int] = []

    def client(conn: Any, ev: int, data: Any) -> None:
        events.append(ev)
        if ev == MG_EV_CONNECT:
            seen["connect"] = conn.is_tls
            conn.tls_init(TlsOpts(ca=certs.root.cert, name="localhost"))
            conn.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # before the handshake
        elif ev == MG_EV_TLS_HS:
            seen["client_hs"] = conn.is_tls
        elif ev == MG_EV_HTTP_MSG:
            seen["status"] = data.status()
            conn.close()

    c = mgr.connect(f"https://127.0.0.1:{lsn.local_addr[1]}", client)
    assert c.is_tls
    assert poll_until(mgr, lambda: "status" in seen, timeout=10)
    assert seen == {"accept": True, "connect": True, "server_hs": True, "client_hs": True,
                    "status": 200}
    assert events.index(MG_EV_CONNECT) < events.index(MG_EV_TLS_HS) < events.index(MG_EV_HTTP_MSG)


def test_https_without_tls_init_is_plain(make_manager):
    """SPEC 2.8: is_tls comes from the scheme; without tls_init it is reset after
    ACCEPT / CONNECT and the bytes are plaintext."""
    mgr = make_manager()
    after: list[bool] = []

    def server(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            after.append(conn.is_tls)
            conn.reply(200, "plain")

    lsn = mgr.listen(f"https://{HOST}:0", server)
    client_flags: list[bool] = []

    def client(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_CONNECT:
            client_flags.append(conn.is_tls)  # from the scheme, during CONNECT
            conn.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        elif ev == MG_EV_HTTP_MSG:
            client_flags.append(conn.is_tls)  # reset after CONNECT: no tls_init
            client_flags.append(data.body_bytes == b"plain")
            conn.close()

    mgr.connect(f"https://127.0.0.1:{lsn.local_addr[1]}", client)
    assert poll_until(mgr, lambda: len(client_flags) == 3, timeout=10)
    assert client_flags == [True, False, True] and after == [False]


def test_tls_init_in_accept_replaces_listener_options(make_manager, certs):
    """The original's pattern: tls_init in MG_EV_ACCEPT (here over a listener
    whose own options are a certificate the client would refuse)."""
    mgr = make_manager()

    def server(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT and conn.is_tls:
            conn.tls_init(server_opts(certs.leaf))
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, "accepted")

    lsn = mgr.listen(f"https://{HOST}:0", server)
    lsn.tls_init(server_opts(certs.unknown))
    got: list[Any] = []
    client_get(mgr, f"https://localhost:{lsn.local_addr[1]}", TlsOpts(ca=certs.root.cert), got)
    assert got == [(200, b"accepted")]


def test_accept_pattern_shares_context_and_resumes(make_manager, certs):
    """tls_init in MG_EV_ACCEPT with equal options on every connection: one cached
    SSL_CTX, so a session made on one connection resumes on the next."""
    mgr = make_manager()
    pem = (certs.leaf.cert, certs.leaf.key)

    def server(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT:
            conn.tls_init(TlsOpts(cert=pem[0], key=pem[1]))  # a new TlsOpts each time
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, "ok")

    port = mgr.listen(f"http://{HOST}:0", server).local_addr[1]
    ctx = ssl.create_default_context(cafile=str(certs.root.cert_path))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the session exists right after the handshake
    with serve(mgr):
        session = None
        reused = []
        for _ in range(3):
            with socket.create_connection((HOST, port), timeout=10) as raw, \
                    ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data, _ = recv_until_eof(s, timeout=10)
                assert data.endswith(b"ok")
                reused.append(s.session_reused)
                session = s.session
    assert reused == [False, True, True]


def test_tls_init_never_raises(make_manager, certs):
    mgr = make_manager()
    rec = Recorder(on={MG_EV_HTTP_MSG: lambda conn, ev, data: conn.reply(404, "")})
    plain = mgr.listen(f"http://{HOST}:0", rec)
    plain.tls_init(TlsOpts())
    plain.tls_init(TlsOpts(skip_verification=True))
    plain.tls_free()
    plain.tls_init(TlsOpts(skip_verification=True))
    lsn = mgr.listen(f"https://{HOST}:0", rec)
    lsn.tls_init(TlsOpts(cert=b"garbage", key=b"garbage"))
    assert lsn.is_tls and not lsn.is_closing
    lsn.tls_init(TlsOpts(cert=certs.leaf.cert, key=certs.client.key))  # mismatched
    lsn.tls_free()
    lsn.tls_init(server_opts(certs.leaf))
    assert lsn.is_tls
    assert rec.count(MG_EV_ERROR) == 0  # a listener logs; it does not fail
    got: list[Any] = []
    client_get(mgr, f"https://localhost:{lsn.local_addr[1]}", TlsOpts(ca=certs.root.cert), got)
    assert isinstance(got[0], tuple) and got[0][0] == 404


def test_bad_client_pem_is_an_error_event(make_manager, certs):
    mgr = make_manager()
    app = App()
    port = https_server(mgr, certs.leaf, app)
    got: list[Any] = []
    bad_ca = TlsOpts(ca=b"-----BEGIN CERTIFICATE-----\nx")
    client_get(mgr, f"https://localhost:{port}/hello", bad_ca, got)
    assert isinstance(got[0], str) and got[0].startswith("TLS: bad ca"), got
    closes: list[Any] = []

    def watch(conn, ev, data):
        if ev == MG_EV_CONNECT:
            conn.tls_init(TlsOpts(cert=certs.client.cert, key=b"not a key"))
        elif ev in (MG_EV_ERROR, MG_EV_CLOSE):
            closes.append((ev, data))

    mgr.connect(f"https://localhost:{port}", watch)
    assert poll_until(mgr, lambda: len(closes) >= 2, timeout=10)
    assert closes[0][0] == MG_EV_ERROR and "TLS: bad key" in closes[0][1]
    assert closes[1][0] == MG_EV_CLOSE


def test_tls_opts_attributes(make_manager):
    o = TlsOpts()
    assert (o.ca, o.cert, o.key, o.name, o.skip_verification) == (b"", b"", b"", b"", False)
    o = TlsOpts(ca="ç", cert=b"c", key=bytearray(b"k"), name=None, skip_verification=True)
    assert (o.ca, o.cert, o.key, o.name) == ("ç".encode(), b"c", b"k", b"")
    assert o.skip_verification is True
    o.name = "localhost"
    o.ca = None
    assert o.name == b"localhost" and o.ca == b""
    o.key = b"SECRET"
    assert "SECRET" not in repr(o) and "key=<6 bytes>" in repr(o)  # no key material in a repr
    with pytest.raises(TypeError):
        TlsOpts(ca=5)
    with pytest.raises(TypeError):
        make_manager().listen(f"http://{HOST}:0").tls_init("not opts")
