"""A raw WebSocket peer for the conformance tests: our own small frame
writer/reader over a plain socket, so a test can send exactly the bytes a
broken or hostile peer would (what a library refuses to produce).

Also the echo server the WebSocket tests share."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conftest import DEFAULT_TIMEOUT, HOST, HttpReader, listen_free, raw_connect, serve

from cymongoose import (
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_WS_CTL,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_TEXT,
    Manager,
)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


# A minimal, valid upgrade request for "/" (the RFC 6455 sample key), for raw-socket tests.
UPGRADE_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def accept_of(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(
    op: int,
    payload: bytes = b"",
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One frame; `length` overrides the announced payload length."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | op])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n <= 0xFFFF:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class RawWs(HttpReader):
    """A client socket after a successful handshake, reading server frames (the
    buffered, deadline-bounded reads are HttpReader's)."""

    def __init__(self, port: int, path: str = "/", headers: str = "", host: str = HOST):
        super().__init__(raw_connect(port, host))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
            ).encode()
        )
        head = self._read_head()
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert f"Sec-WebSocket-Accept: {accept_of(key)}".encode() in head, head
        self.head = head
        self.inflater: zlib._Decompress | None = None

    def _read_head(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise AssertionError(f"no handshake answer: {self.buf!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_frame(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes] | None:
        """(first byte, payload) of the next server frame; None at EOF/timeout.
        Server frames must not be masked (RFC 6455 5.1)."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                b0, b1 = self.buf[0], self.buf[1]
                assert not b1 & 0x80, "server frame is masked"
                n, pos = b1 & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, pos = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
                elif n >= 126:
                    pos = -1
                if pos > 0 and len(self.buf) >= pos + n:
                    payload, self.buf = self.buf[pos : pos + n], self.buf[pos + n :]
                    return b0, payload
            if not self._fill(deadline):
                return None

    def recv_message(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, bytes] | None:
        """The next data message (control frames skipped), inflated if RSV1."""
        f = self.recv_frame(timeout)
        while f is not None and f[0] & 0x0F >= 8:
            f = self.recv_frame(timeout)
        if f is None or not f[0] & 0x40:
            return f
        if self.inflater is None:
            self.inflater = zlib.decompressobj(-15)
        return f[0] & 0xBF, self.inflater.decompress(f[1] + b"\x00\x00\xff\xff")

    def expect_close(self, code: int | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """The next frames: a close with `code` (None: empty payload), then EOF."""
        f = self.recv_frame(timeout)
        while f is not None and f[0] & 0x0F != OP_CLOSE:
            f = self.recv_frame(timeout)
        assert f is not None, "no close frame"
        assert f[0] == 0x88, hex(f[0])
        if code is None:
            assert f[1] == b"", f[1]
        else:
            assert len(f[1]) >= 2 and struct.unpack("!H", f[1][:2])[0] == code, f[1]
        self.expect_eof(timeout)

    def expect_eof(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        assert time.monotonic() < deadline, "connection not closed"

    def close(self) -> None:
        self.sock.close()


class Echo:
    """Our WebSocket echo server's record: errors and control frames seen."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.ctl: list[Any] = []
        self.opened = 0
        self.msgs = 0

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_OPEN:
            self.opened += 1
        elif ev == MG_EV_WS_MSG:
            self.msgs += 1
            op = (
                WEBSOCKET_OP_BINARY
                if data.flags & 0x0F == WEBSOCKET_OP_BINARY
                else WEBSOCKET_OP_TEXT
            )
            conn.ws_send(data.data, op)
        elif ev == MG_EV_WS_CTL:
            self.ctl.append(data)
        elif ev == MG_EV_ERROR:
            self.errors.append(data)


@contextmanager
def echo_server(**listen_kwargs: Any) -> Iterator[tuple[int, Echo]]:
    """An echo server polled on a background thread: (port, record)."""
    rec = Echo()
    mgr = Manager(rec)
    try:
        _, port = listen_free(mgr, **listen_kwargs)
        with serve(mgr, step_ms=5, max_seconds=120):
            yield port, rec
    finally:
        mgr.close()


def still_serves(port: int) -> None:
    """A fresh client gets an echo: the server survived what came before."""
    ws = RawWs(port)
    try:
        ws.send(frame(OP_TEXT, b"still here"))
        assert ws.recv_message() == (0x81, b"still here")
    finally:
        ws.close()


def websocket_client_conversation(url: str, **options: Any) -> None:
    """One conversation of the websocket-client library (a second, synchronous peer) with
    an echo server at url: text, 80 KB of binary, a ping, a close; options go to
    websocket.create_connection (sslopt for wss://)."""
    import websocket

    ws = websocket.create_connection(url, timeout=10, **options)
    try:
        ws.send("hello from websocket-client")
        assert ws.recv() == "hello from websocket-client"
        ws.send_binary(b"\x00\xff" * 40000)
        assert ws.recv() == b"\x00\xff" * 40000
        ws.ping(b"p")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"p"
        ws.send_close(status=1000, reason=b"bye")
        opcode, frame = ws.recv_data_frame(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE and frame.data[:2] == b"\x03\xe8"
    finally:
        ws.close()


@contextmanager
def peer_server(handler: Any, host: str = HOST, **kw: Any) -> Iterator[int]:
    """The websockets library's (sync) server with `handler`, on a thread: its port.
    kw go to websockets.sync.server.serve (ssl=, max_size=, subprotocols=...)."""
    from websockets.sync.server import serve as ws_serve

    srv = ws_serve(handler, host, 0, **kw)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.socket.getsockname()[1]
    finally:
        srv.shutdown()
        t.join(10)


def peer_echo(ws: Any) -> None:
    """A peer_server handler: echo every message until the client closes."""
    from websockets.exceptions import ConnectionClosed

    try:
        for msg in ws:
            ws.send(msg)
    except ConnectionClosed:
        pass


def is_eof(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except OSError:
        return True
