"""Error answers close lingering (RFC 9112 9.6): the client reads the whole answer and a
clean end even when it is still sending.  Over TLS the end is a close_notify before the
FIN (Python's ssl with suppress_ragged_eofs=False refuses a bare FIN); the 500 of a
handler that raised lingers like a refusal, so unread pipelined bytes cause no reset."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
import tls_certs
from conftest import HOST, listen_free, serve

from cymongoose import MG_EV_HTTP_MSG, TlsOpts

JUNK = 4 << 20  # far more than one read of the server takes: some stays in the kernel


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tls_certs.Certs:
    return tls_certs.make(tmp_path_factory.getbasetemp() / "linger-certs")


def talk(sock: socket.socket, head: bytes, extra: int) -> tuple[bytes, BaseException | None]:
    """Send `head` then `extra` bytes from a thread while reading until the end.
    Returns what was read and the exception that ended the reading, if any."""
    sent_err: list[BaseException] = []

    def sender():
        try:
            sock.sendall(head)
            block = b"x" * 65536
            for _ in range(extra // len(block)):
                sock.sendall(block)
        except OSError as exc:  # the server may close first: that is its right
            sent_err.append(exc)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = bytearray()
    err: BaseException | None = None
    try:
        while chunk := sock.recv(65536):
            got.extend(chunk)
    except OSError as exc:
        err = exc
    t.join(20)
    return bytes(got), err


def test_413_over_tls_ends_with_close_notify(make_manager, certs):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "never")

    mgr = make_manager()
    lsn, port = listen_free(mgr, scheme="https", handler=handler, max_body=1000)
    lsn.tls_init(TlsOpts(cert=certs.leaf.cert, key=certs.leaf.key))
    ctx = ssl.create_default_context(cafile=str(certs.root.cert_path))
    head = b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\n"
    with serve(mgr):
        for _ in range(3):
            with socket.create_connection((HOST, port), timeout=20) as raw, ctx.wrap_socket(
                raw, server_hostname="localhost", suppress_ragged_eofs=False
            ) as s:
                got, err = talk(s, head, 1 << 20)
            # Before: the plain shutdown(2) left out close_notify -> SSLEOFError here.
            assert err is None, (err, got[:200])
            assert got.startswith(b"HTTP/1.1 413 Content Too Large\r\n"), got[:200]
            assert b"Connection: close\r\n" in got


def test_500_lingers_over_unread_pipelined_bytes(make_manager):
    errors: list[BaseException] = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            # Meanwhile the client fills the socket buffers: the close has unread input.
            time.sleep(0.2)
            raise ValueError("boom")

    mgr = make_manager(error_handler=errors.append)
    _, port = listen_free(mgr, handler=handler)
    # A request, then megabytes of pipelined bytes the server never gets to parse.
    head = b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n" * 100
    want = (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        b"Content-Length: 22\r\n\r\nInternal Server Error\n"
    )
    with serve(mgr):
        for _ in range(3):
            with socket.create_connection((HOST, port), timeout=20) as s:
                got, err = talk(s, head, JUNK)
            # Before: closed with unread input -> a reset, often before the 500 was read.
            assert err is None, (err, got[:200])
            assert got == want
    assert [str(e) for e in errors] == ["boom"] * 3
