"""WebSocket over TLS (wss://), both directions, with real peers (issues 9 and 10):
our server behind an https listener with tls_init against the `websockets` library
and `websocket-client` (each verifying our test CA); our ws_connect("wss://...")
with tls_init in MG_EV_CONNECT against a `websockets` server with TLS and against
our own wss server; the host-name check (URL host, TlsOpts name=), a wrong CA, and
the order of the bytes on the wire (the queued handshake leaves after the TLS
handshake, never in plaintext).  Certificates: tests/py/tls_certs.py.

The `websockets` clients here are its asyncio ones: its threaded (sync) client
loses a request now and then over TLS, against its own TLS server as well (a
reader thread and a writer sharing one ssl socket), which is no test of ours."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import tls_certs
from conftest import DEFAULT_TIMEOUT, HOST, poll_until, serve
from ws_peers import Echo, peer_echo, peer_server, websocket_client_conversation

from cymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_TLS_HS,
    MG_EV_WS_CTL,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_PING,
    Manager,
    TlsOpts,
)

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect as ws_connect_async  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

# Across the 7-bit, 16-bit and 64-bit length encodings (RFC 6455 5.2), and
# larger than one TLS record (16 KiB) and than the 64 KiB read budget.
LENGTHS = [0, 125, 126, 65535, 65536, 1 << 20]


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tls_certs.Certs:
    return tls_certs.make(tmp_path_factory.getbasetemp() / "tls-certs")


def client_ctx(certs: tls_certs.Certs) -> ssl.SSLContext:
    """Python's ssl client: trusts only our root, checks the host name."""
    return ssl.create_default_context(cafile=str(certs.root.cert_path))


class WssEcho(Echo):
    """ws_peers.Echo, also counting completed TLS handshakes."""

    def __init__(self) -> None:
        super().__init__()
        self.handshakes = 0

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_TLS_HS:
            self.handshakes += 1
            assert conn.is_tls
        super().__call__(conn, ev, data)


@contextmanager
def wss_server(certs: tls_certs.Certs, **listen_kw: Any) -> Iterator[tuple[int, WssEcho]]:
    """Our echo server on https://, TLS set on the listener, polled on a thread."""
    rec = WssEcho()
    mgr = Manager(rec)
    try:
        lsn = mgr.listen(f"https://{HOST}:0", **listen_kw)
        lsn.tls_init(TlsOpts(cert=certs.leaf.cert, key=certs.leaf.key))
        with serve(mgr, step_ms=5, max_seconds=120):
            yield lsn.local_addr[1], rec
    finally:
        mgr.close()


class Client:
    """Our wss client: tls_init in MG_EV_CONNECT, then records the events."""

    def __init__(self, opts: TlsOpts | None) -> None:
        self.opts = opts
        self.evs: list[int] = []
        self.msgs: list[tuple[int, bytes]] = []
        self.errors: list[str] = []
        self.opened: dict[str, str] | None = None
        self.closed = False

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        self.evs.append(ev)
        if ev == MG_EV_CONNECT and self.opts is not None:
            conn.tls_init(self.opts)
        elif ev == MG_EV_WS_OPEN:
            self.opened = {k.lower(): v for k, v in data.headers()}
        elif ev == MG_EV_WS_MSG:
            self.msgs.append((data.flags, data.data))
        elif ev == MG_EV_ERROR:
            self.errors.append(data)
        elif ev == MG_EV_CLOSE:
            self.closed = True


def wss_connect(mgr: Manager, url: str, opts: TlsOpts | None, **kw: Any) -> tuple[Any, Client]:
    cl = Client(opts)
    conn = mgr.ws_connect(url, cl, **kw)
    assert poll_until(mgr, lambda: cl.opened is not None or cl.closed, timeout=DEFAULT_TIMEOUT)
    return conn, cl


def echo_all_lengths(mgr: Manager, conn: Any, cl: Client) -> None:
    want = []
    for n in LENGTHS:
        text = ("ü" * n)[: n // 2]
        blob = bytes((i * 13) & 0xFF for i in range(n))
        conn.ws_send(text)
        conn.ws_send(blob, WEBSOCKET_OP_BINARY)
        want += [(0x81, text.encode()), (0x82, blob)]
    assert poll_until(mgr, lambda: len(cl.msgs) >= len(want), timeout=30)
    assert cl.msgs == want


# ---- our wss server, real clients -------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.mark.parametrize("compression", ["deflate", None])
def test_websockets_client_against_our_wss_server(certs, compression):
    async def talk(port: int) -> Any:
        async with ws_connect_async(f"wss://localhost:{port}/echo", ssl=client_ctx(certs),
                                    compression=compression, max_size=None) as ws:
            negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (negotiated is not None) == (compression is not None)
            for n in LENGTHS:
                text = "é" * (n // 2) + "a" * (n % 2)
                await ws.send(text)
                assert await ws.recv() == text
                blob = bytes((i * 31) & 0xFF for i in range(n))
                await ws.send(blob)
                assert await ws.recv() == blob
            await asyncio.wait_for(await ws.ping(b"over tls"), 10)
            await ws.close(4000, "bye over tls")
            return ws.protocol.close_rcvd

    with wss_server(certs) as (port, rec):
        close_rcvd = run(talk(port))
        assert close_rcvd is not None and close_rcvd.code == 4000  # our server echoed it
        assert rec.handshakes == 1 and rec.opened == 1 and rec.errors == []


def test_websocket_client_library_against_our_wss_server(certs):
    pytest.importorskip("websocket")
    with wss_server(certs) as (port, rec):
        websocket_client_conversation(
            f"wss://localhost:{port}/wc",
            sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(certs.root.cert_path)})
        assert rec.handshakes == 1 and rec.errors == []


def test_plaintext_websocket_client_on_the_wss_port_is_refused(certs):
    """A ws:// client on the TLS port gets no WebSocket (and the server goes on)."""
    async def plain(port: int) -> None:
        async with ws_connect_async(f"ws://127.0.0.1:{port}/", open_timeout=10):
            pass

    async def secure(port: int) -> Any:
        async with ws_connect_async(f"wss://localhost:{port}/", ssl=client_ctx(certs)) as ws:
            await ws.send("still serving")
            return await ws.recv()

    with wss_server(certs) as (port, rec):
        with pytest.raises((ConnectionClosed, OSError, websockets.exceptions.InvalidHandshake)):
            run(plain(port))
        assert run(secure(port)) == "still serving"
        assert rec.opened == 1


# ---- our wss client, real servers ---------------------------------------------------


@contextmanager
def peer_wss_server(certs: tls_certs.Certs, pem: tls_certs.Pem | None = None,
                    **kw: Any) -> Iterator[int]:
    """The websockets library's echo server with TLS (the leaf and its chain)."""
    pem = pem or certs.leaf
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pem.cert_path), str(pem.key_path))

    with peer_server(peer_echo, ssl=ctx, max_size=None, **kw) as port:
        yield port


@pytest.mark.parametrize("deflate", [True, False])
def test_our_wss_client_against_websockets_server(manager, certs, deflate):
    with peer_wss_server(certs) as port:
        conn, cl = wss_connect(manager, f"wss://localhost:{port}/", TlsOpts(ca=certs.root.cert),
                               ws_deflate=deflate)
        assert cl.opened is not None, cl.errors
        assert ("sec-websocket-extensions" in cl.opened) == deflate
        assert conn.is_tls and conn.is_websocket
        # The TLS handshake completes before the WebSocket one.
        assert cl.evs.index(MG_EV_TLS_HS) < cl.evs.index(MG_EV_WS_OPEN)
        echo_all_lengths(manager, conn, cl)
        conn.ws_send(struct.pack("!H", 4002) + b"client leaves", 8)
        assert poll_until(manager, lambda: cl.closed, timeout=10)
        assert cl.errors == []


def test_our_wss_client_against_our_wss_server(manager, certs):
    """Both ends ours, in one loop; the server's leaf names localhost and
    127.0.0.1, the client checks the URL's host (an IP here: SAN IP)."""
    rec = WssEcho()
    lsn = manager.listen(f"https://{HOST}:0", rec)
    lsn.tls_init(TlsOpts(cert=certs.leaf.cert, key=certs.leaf.key))
    url = f"wss://{HOST}:{lsn.local_addr[1]}/ours"
    conn, cl = wss_connect(manager, url, TlsOpts(ca=certs.root.cert))
    assert cl.opened is not None, cl.errors
    echo_all_lengths(manager, conn, cl)
    conn.ws_send(b"ping", WEBSOCKET_OP_PING)
    assert poll_until(manager, lambda: MG_EV_WS_CTL in cl.evs, timeout=10)  # the pong
    conn.ws_send(struct.pack("!H", 1000), 8)
    assert poll_until(manager, lambda: cl.closed, timeout=10)
    assert cl.errors == [] and rec.errors == []
    assert rec.handshakes == 1 and rec.opened == 1


def test_tls_init_right_after_ws_connect(manager, certs):
    """tls_init before the TCP connection is up (cm/tls.h allows it) works too."""
    with peer_wss_server(certs) as port:
        cl = Client(None)
        conn = manager.ws_connect(f"wss://localhost:{port}/", cl)
        conn.tls_init(TlsOpts(ca=certs.root.cert))
        assert poll_until(manager, lambda: cl.opened is not None or cl.closed)
        assert cl.opened is not None, cl.errors
        conn.ws_send("early")
        assert poll_until(manager, lambda: cl.msgs, timeout=10)
        assert cl.msgs == [(0x81, b"early")]


def test_name_overrides_the_url_host(manager, certs):
    """The wrong_name leaf names only not-localhost.test: the URL's host fails the
    check, name= makes it pass (SNI and verification)."""
    with peer_wss_server(certs, certs.wrong_name) as port:
        _, bad = wss_connect(manager, f"wss://localhost:{port}/", TlsOpts(ca=certs.root.cert))
        assert bad.opened is None and bad.closed
        assert len(bad.errors) == 1 and "hostname mismatch" in bad.errors[0], bad.errors
        assert MG_EV_TLS_HS not in bad.evs
        _, ip = wss_connect(manager, f"wss://{HOST}:{port}/", TlsOpts(ca=certs.root.cert))
        assert ip.opened is None and len(ip.errors) == 1
        assert "IP address mismatch" in ip.errors[0], ip.errors
        conn, good = wss_connect(manager, f"wss://{HOST}:{port}/",
                                 TlsOpts(ca=certs.root.cert, name="not-localhost.test"))
        assert good.opened is not None, good.errors
        conn.ws_send("named")
        assert poll_until(manager, lambda: good.msgs, timeout=10)


def test_wrong_ca_fails_with_error(manager, certs):
    with peer_wss_server(certs) as port:
        _, cl = wss_connect(manager, f"wss://localhost:{port}/", TlsOpts(ca=certs.unknown_ca.cert))
        assert cl.opened is None and cl.closed
        assert len(cl.errors) == 1 and "certificate verify failed" in cl.errors[0], cl.errors
        assert MG_EV_WS_OPEN not in cl.evs and MG_EV_WS_MSG not in cl.evs


class FirstBytes:
    """A TCP server that records the first bytes a client sends, then closes."""

    def __init__(self) -> None:
        self.lsn = socket.socket()
        self.lsn.bind((HOST, 0))
        self.lsn.listen(1)
        self.lsn.settimeout(DEFAULT_TIMEOUT)
        self.port = self.lsn.getsockname()[1]
        self.got = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            s, _ = self.lsn.accept()
        except OSError:
            return
        with s:
            s.settimeout(DEFAULT_TIMEOUT)
            try:
                while len(self.got) < 5 and (chunk := s.recv(4096)):
                    self.got += chunk
            except OSError:
                pass
        self.lsn.close()


def test_handshake_request_waits_for_tls(manager, certs):
    """ws_connect queues its GET at once, before MG_EV_CONNECT; with tls_init
    there, the first bytes on the wire are a TLS ClientHello (a handshake
    record, 0x16 0x03), never the plaintext request."""
    peer = FirstBytes()
    cl = Client(TlsOpts(ca=certs.root.cert))
    manager.ws_connect(f"wss://localhost:{peer.port}/", cl)
    assert poll_until(manager, lambda: cl.closed, timeout=DEFAULT_TIMEOUT)
    peer.thread.join(DEFAULT_TIMEOUT)
    assert peer.got[:2] == b"\x16\x03", peer.got[:40]
    assert b"GET " not in peer.got
    assert cl.opened is None
    assert cl.errors == ["TLS handshake failed: connection closed by peer"]


def test_server_speaks_first_and_sees_alpn(manager, certs):
    """A websockets server that sends at once: its first message may share a
    TLS record with the 101, and must not wait for another edge.  Our client
    offers ALPN http/1.1 (its upgrade request is HTTP/1.1)."""
    def greet(ws: Any) -> None:
        ws.send(f"alpn {ws.socket.selected_alpn_protocol()}")
        ws.send(b"\x07" * 100_000)
        for msg in ws:
            ws.send(msg)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs.leaf.cert_path), str(certs.leaf.key_path))
    ctx.set_alpn_protocols(["http/1.1"])
    with peer_server(greet, ssl=ctx) as port:
        _, cl = wss_connect(manager, f"wss://localhost:{port}/", TlsOpts(ca=certs.root.cert))
        assert cl.opened is not None, cl.errors
        assert poll_until(manager, lambda: len(cl.msgs) >= 2, timeout=10)
        assert cl.msgs == [(0x81, b"alpn http/1.1"), (0x82, b"\x07" * 100_000)]


def test_request_and_first_frame_in_one_record(certs):
    """A client that writes its upgrade request and a first frame in one TLS
    record: the frame is the WebSocket's, echoed after the 101."""
    from ws_peers import OP_TEXT, frame

    key = "dGhlIHNhbXBsZSBub25jZQ=="
    request = (f"GET /x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    with wss_server(certs) as (port, rec):
        raw = socket.create_connection((HOST, port), timeout=DEFAULT_TIMEOUT)
        with client_ctx(certs).wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(request + frame(OP_TEXT, b"right behind the request"))
            buf = b""
            while b"right behind the request" not in buf:
                chunk = s.recv(65536)
                assert chunk, buf
                buf += chunk
        head, _, frames = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert frames == b"\x81\x18right behind the request"
        assert rec.msgs == 1 and rec.errors == []


def test_server_initiated_close_over_tls(certs):
    """Our server sends a close frame (as the ASGI server does): it reaches the
    client before the connection (and its TLS session) ends."""
    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == 11:  # MG_EV_HTTP_MSG
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(struct.pack("!H", 4001) + b"server says bye", 8)

    mgr = Manager(handler)
    try:
        lsn = mgr.listen(f"https://{HOST}:0")
        lsn.tls_init(TlsOpts(cert=certs.leaf.cert, key=certs.leaf.key))
        async def talk(port: int) -> ConnectionClosed:
            async with ws_connect_async(f"wss://localhost:{port}/", ssl=client_ctx(certs)) as ws:
                await ws.send("close please")
                with pytest.raises(ConnectionClosed) as info:
                    await ws.recv()
                return info.value

        with serve(mgr, step_ms=5):
            closed = run(talk(lsn.local_addr[1]))
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "server says bye")
        assert closed.sent is not None and closed.sent.code == 4001  # echoed
    finally:
        mgr.close()


def test_tls_init_in_accept_then_ws_upgrade(certs):
    """The original's documented pattern: tls_init in MG_EV_ACCEPT on an https://
    listener without options of its own; the upgrade runs over it."""
    websocket = pytest.importorskip("websocket")
    rec = WssEcho()

    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_ACCEPT:
            conn.tls_init(TlsOpts(cert=certs.leaf.cert, key=certs.leaf.key))
        rec(conn, ev, data)

    mgr = Manager(handler)
    try:
        lsn = mgr.listen(f"https://{HOST}:0")
        with serve(mgr, step_ms=5):
            ws = websocket.create_connection(
                f"wss://localhost:{lsn.local_addr[1]}/", timeout=10,
                sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(certs.root.cert_path)})
            try:
                ws.send("accepted, then upgraded")
                assert ws.recv() == "accepted, then upgraded"
            finally:
                ws.close()
        assert rec.handshakes == 1 and rec.opened == 1 and rec.errors == []
    finally:
        mgr.close()
