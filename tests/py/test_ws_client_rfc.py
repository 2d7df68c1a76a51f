"""RFC 6455 from the client's side: our ws_connect() against a raw server
that sends exactly the bytes a broken or hostile server would."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import DEFAULT_TIMEOUT, poll_until
from ws_peers import OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, accept_of, close_payload, frame

from cymongoose import MG_EV_CLOSE, MG_EV_ERROR, MG_EV_WS_CTL, MG_EV_WS_MSG, MG_EV_WS_OPEN

OK_101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"


class RawServer:
    """Accepts one client, answers its handshake with `response(key)`, then
    runs `script(sock)` and records the frames the client sent."""

    def __init__(
        self,
        script: Callable[[socket.socket], None],
        response: Callable[[str], bytes] | None = None,
    ) -> None:
        self.lsn = socket.socket()
        self.lsn.bind(("127.0.0.1", 0))
        self.lsn.listen(1)
        self.port = self.lsn.getsockname()[1]
        self.script = script
        self.response = response or (
            lambda key: (OK_101 + f"Sec-WebSocket-Accept: {accept_of(key)}\r\n\r\n").encode()
        )
        self.request = b""
        self.got: list[tuple[int, bytes, bool]] = []  # (first byte, payload, masked)
        self.eof = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.lsn.settimeout(DEFAULT_TIMEOUT)
        try:
            s, _ = self.lsn.accept()
        except OSError:
            return
        s.settimeout(DEFAULT_TIMEOUT)
        with s:
            while b"\r\n\r\n" not in self.request:
                chunk = s.recv(4096)
                if not chunk:
                    return
                self.request += chunk
            key = [
                line.split(b":", 1)[1].strip().decode()
                for line in self.request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            ][0]
            s.sendall(self.response(key))
            self.script(s)
            self._read_frames(s)

    def _read_frames(self, s: socket.socket) -> None:
        buf = b""
        deadline = time.monotonic() + DEFAULT_TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                self.eof = True
                break
            buf += chunk
            while len(buf) >= 2:
                n, pos, masked = buf[1] & 0x7F, 2, bool(buf[1] & 0x80)
                if n == 126:
                    n, pos = struct.unpack("!H", buf[2:4])[0], 4
                elif n == 127:
                    n, pos = struct.unpack("!Q", buf[2:10])[0], 10
                key = buf[pos : pos + 4] if masked else b"\0\0\0\0"
                pos += 4 if masked else 0
                if len(buf) < pos + n:
                    break
                payload = bytes(b ^ key[i % 4] for i, b in enumerate(buf[pos : pos + n]))
                self.got.append((buf[0], payload, masked))
                buf = buf[pos + n :]

    def join(self) -> None:
        self.thread.join(DEFAULT_TIMEOUT + 5)
        self.lsn.close()


class Client:
    def __init__(self) -> None:
        self.evs: list[int] = []
        self.errors: list[str] = []
        self.msgs: list[tuple[int, bytes]] = []

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        self.evs.append(ev)
        if ev == MG_EV_ERROR:
            self.errors.append(data)
        elif ev == MG_EV_WS_MSG:
            self.msgs.append((data.flags, data.data))


def run(manager, script, response=None, **kw) -> tuple[RawServer, Client]:
    srv = RawServer(script, response)
    cl = Client()
    manager.ws_connect(f"ws://127.0.0.1:{srv.port}/raw", cl, **kw)
    assert poll_until(manager, lambda: MG_EV_CLOSE in cl.evs, timeout=10)
    srv.join()
    return srv, cl


def sends(data: bytes) -> Callable[[socket.socket], None]:
    return lambda s: s.sendall(data)


def test_client_frames_are_masked_and_messages_arrive(manager):
    def script(s: socket.socket) -> None:
        s.sendall(
            frame(OP_TEXT, b"hi", mask=False)
            + frame(OP_BINARY, b"\x00", mask=False, fin=False)
            + frame(0, b"\x01", mask=False)
            + frame(OP_CLOSE, close_payload(1000), mask=False)
        )

    srv, cl = run(manager, script)
    assert cl.msgs == [(0x81, b"hi"), (0x82, b"\x00\x01")]
    assert not cl.errors
    # Our answer to the close: masked, echoing 1000; then our TCP close.
    assert srv.got == [(0x88, b"\x03\xe8", True)] and srv.eof
    assert b"GET /raw HTTP/1.1\r\n" in srv.request


def test_masked_server_frame_fails_1002(manager):
    srv, cl = run(manager, sends(frame(OP_TEXT, b"masked", mask=True)))
    assert cl.errors == ["masked server frame"] and not cl.msgs
    assert srv.got[0][0] == 0x88 and srv.got[0][1][:2] == b"\x03\xea" and srv.got[0][2]
    assert srv.eof


@pytest.mark.parametrize(
    "data, code",
    [
        (frame(OP_TEXT, b"\xff", mask=False), 1007),
        (frame(5, b"", mask=False), 1002),
        (frame(OP_TEXT, b"x", mask=False, rsv=0x40), 1002),
        (frame(OP_PING, b"p" * 126, mask=False), 1002),
        (frame(0, b"orphan", mask=False), 1002),
        (frame(OP_CLOSE, close_payload(1005), mask=False), 1002),
    ],
)
def test_bad_server_frames_fail_the_client(manager, data, code):
    srv, cl = run(manager, sends(data))
    assert len(cl.errors) == 1
    assert srv.got and srv.got[0][0] == 0x88 and struct.unpack("!H", srv.got[0][1][:2])[0] == code
    assert srv.eof


def test_server_ping_answered_with_masked_pong(manager):
    srv = RawServer(sends(frame(OP_PING, b"are you there", mask=False)))
    cl = Client()
    conn = manager.ws_connect(f"ws://127.0.0.1:{srv.port}/", cl)
    assert poll_until(manager, lambda: MG_EV_WS_CTL in cl.evs, timeout=10)
    poll_until(manager, lambda: False, timeout=0.2)
    conn.close()
    poll_until(manager, lambda: MG_EV_CLOSE in cl.evs, timeout=5)
    srv.join()
    assert srv.got[0] == (0x8A, b"are you there", True)


@pytest.mark.parametrize(
    "response",
    [
        lambda key: (
            OK_101 + "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
        ).encode(),
        lambda key: (
            f"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_of(key)}\r\n\r\n"
        ).encode(),
        lambda key: (
            f"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nSec-WebSocket-Accept: {accept_of(key)}\r\n"
            "\r\n"
        ).encode(),
        lambda key: (
            OK_101 + f"Sec-WebSocket-Accept: {accept_of(key)}\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=8\r\n\r\n"
        ).encode(),
        lambda key: (
            OK_101 + f"Sec-WebSocket-Accept: {accept_of(key)}\r\n"
            "Sec-WebSocket-Extensions: x-unknown\r\n\r\n"
        ).encode(),
        lambda key: b"garbage\r\n\r\n",
    ],
)
def test_bad_handshake_answers_fail(manager, response):
    _, cl = run(manager, lambda s: None, response)
    assert cl.errors == ["ws handshake error"] and MG_EV_WS_OPEN not in cl.evs


def test_extension_not_offered_fails(manager):
    def resp(key: str) -> bytes:
        return (
            OK_101 + f"Sec-WebSocket-Accept: {accept_of(key)}\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ).encode()

    srv, cl = run(manager, lambda s: None, resp, ws_deflate=False)
    assert cl.errors == ["ws handshake error"]
    assert b"Sec-WebSocket-Extensions" not in srv.request


def test_frames_in_the_same_packet_as_the_101(manager):
    def resp(key: str) -> bytes:
        return (
            (OK_101 + f"Sec-WebSocket-Accept: {accept_of(key)}\r\n\r\n").encode()
            + frame(OP_TEXT, b"early", mask=False)
            + frame(OP_CLOSE, mask=False)
        )

    _, cl = run(manager, lambda s: None, resp)
    assert cl.msgs == [(0x81, b"early")] and not cl.errors
    assert cl.evs.index(MG_EV_WS_OPEN) < cl.evs.index(MG_EV_WS_MSG)


def test_compressed_message_from_server(manager):
    import zlib

    def resp(key: str) -> bytes:
        return (
            OK_101 + f"Sec-WebSocket-Accept: {accept_of(key)}\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
        ).encode()

    comp = zlib.compressobj(wbits=-15)
    z = (comp.compress(b"squeeze " * 100) + comp.flush(zlib.Z_SYNC_FLUSH))[:-4]
    srv, cl = run(
        manager, sends(frame(OP_TEXT, z, mask=False, rsv=0x40) + frame(OP_CLOSE, mask=False)), resp
    )
    assert cl.msgs == [(0x81, b"squeeze " * 100)] and not cl.errors
    assert b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits" in srv.request
