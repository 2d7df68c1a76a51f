"""The Python WebSocket API (SPEC 1.5, 1.6, 2.7): ws_upgrade, ws_send,
ws_connect, WsMessage, the events and their data."""

from __future__ import annotations

import re
import struct
import threading
import time
from typing import Any

import pytest
from conftest import listen_free, poll_until, raw_connect, serve, wait_until
from ws_peers import OP_BINARY, OP_PING, OP_TEXT, UPGRADE_REQUEST, RawWs, echo_server, frame

from cymongoose import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_OPEN,
    MG_EV_WS_CTL,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_PING,
    WEBSOCKET_OP_PONG,
    WEBSOCKET_OP_TEXT,
    Manager,
    WsMessage,
)


def test_constants():
    assert (WEBSOCKET_OP_TEXT, WEBSOCKET_OP_BINARY, WEBSOCKET_OP_PING, WEBSOCKET_OP_PONG) == (
        1,
        2,
        9,
        10,
    )
    assert (MG_EV_WS_OPEN, MG_EV_WS_MSG, MG_EV_WS_CTL) == (12, 13, 14)


def test_empty_wsmessage_view():
    m = WsMessage.__new__(WsMessage)
    assert (m.data, m.text, m.flags, bool(m)) == (b"", "", 0, False)


class Upgrader:
    """Upgrades every request (with `headers`) and records what it sees."""

    def __init__(self, headers: Any = None) -> None:
        self.headers = headers
        self.log: list[Any] = []
        self.kept: list[Any] = []
        self.raised: list[BaseException] = []

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            self.log.append(("before", conn.is_websocket))
            try:
                conn.ws_upgrade(data, self.headers)
            except (ValueError, TypeError) as exc:
                self.raised.append(exc)
                conn.reply(500, "no")
                return
            self.log.append(("after", conn.is_websocket))
        elif ev == MG_EV_WS_OPEN:
            self.log.append(("open", data.uri, data.header("X-Test")))
        elif ev == MG_EV_WS_MSG:
            self.kept.append(data)
            self.log.append(("msg", data.flags, data.data, data.text))
            conn.ws_send(data.text.upper())
        elif ev == MG_EV_WS_CTL:
            self.log.append(("ctl", data))


def test_ws_open_fires_inside_ws_upgrade_with_the_request():
    up = Upgrader()
    mgr = Manager(up)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            ws = RawWs(port, path="/chat?x=1", headers="X-Test: yes\r\n")
            ws.send(frame(OP_TEXT, "héllo".encode()))
            assert ws.recv_message() == (0x81, "HÉLLO".encode())
            ws.send(frame(OP_PING, b"p"))
            assert ws.recv_frame() == (0x8A, b"p")
            ws.close()
    finally:
        mgr.close()
    assert up.log[:4] == [
        ("before", False),
        ("open", "/chat", "yes"),
        ("after", True),
        ("msg", 0x81, "héllo".encode(), "héllo"),
    ]
    assert ("ctl", None) in up.log  # SPEC 1.3: WS_CTL data is None
    # SPEC 1.6: the view is invalid once the handler returned.
    m = up.kept[0]
    assert (m.data, m.text, m.flags, bool(m)) == (b"", "", 0, False)


def test_binary_flags_and_fragmented_message_flags():
    with echo_server() as (port, rec):
        ws = RawWs(port)
        ws.send(frame(OP_BINARY, b"\x00\x01\x02"))
        assert ws.recv_message() == (0x82, b"\x00\x01\x02")
        ws.close()


def test_extra_headers_sent_literally_and_protocol_echoed():
    up = Upgrader({"X-Percent": "100%s%d%%", "X-Num": 5})
    mgr = Manager(up)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            ws = RawWs(port, headers="Sec-WebSocket-Protocol: chat, superchat\r\n")
            assert b"\r\nX-Percent: 100%s%d%%" in ws.head + b"\r\n"
            assert b"\r\nX-Num: 5" in ws.head
            assert b"\r\nSec-WebSocket-Protocol: chat" in ws.head + b"\r\n"
            ws.close()
    finally:
        mgr.close()


def test_extra_headers_protocol_overrides_the_echo():
    up = Upgrader({"Sec-WebSocket-Protocol": "superchat"})
    mgr = Manager(up)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            ws = RawWs(port, headers="Sec-WebSocket-Protocol: chat, superchat\r\n")
            assert ws.head.count(b"Sec-WebSocket-Protocol") == 1
            assert b"Sec-WebSocket-Protocol: superchat" in ws.head
            ws.close()
    finally:
        mgr.close()


@pytest.mark.parametrize(
    "headers, pattern",
    [
        ({"X-Bad\r\nInjected": "v"}, "Header name.*illegal character"),
        ({"X-Ok": "v\nInjected: 1"}, "Header value.*illegal character"),
        ({"X-Ok": "v\x00"}, "Header value.*illegal character"),
    ],
)
def test_extra_headers_validated_like_reply(headers, pattern):
    up = Upgrader(headers)
    mgr = Manager(up)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            s = raw_connect(port)
            s.sendall(UPGRADE_REQUEST)
            assert s.recv(4096).startswith(b"HTTP/1.1 500 ")
            s.close()
    finally:
        mgr.close()
    assert len(up.raised) == 1 and isinstance(up.raised[0], ValueError)
    assert re.search(pattern, str(up.raised[0]))


def test_pipelined_frames_after_the_upgrade_request_belong_to_the_websocket():
    with echo_server() as (port, _):
        s = raw_connect(port)
        s.sendall(UPGRADE_REQUEST + frame(OP_TEXT, b"early bird"))
        data = b""
        for _ in range(100):
            data += s.recv(4096)
            if data.endswith(b"early bird"):
                break
        assert data.startswith(b"HTTP/1.1 101 ")
        assert data.endswith(b"\x81\x0aearly bird")
        s.close()


def test_ws_send_argument_checks(manager):
    errors: list[BaseException] = []

    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            with pytest.raises(RuntimeError, match="not a WebSocket"):
                conn.ws_send("before upgrade")
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_OPEN:
            for op, payload in (
                (3, b""),
                (0, b""),
                (WEBSOCKET_OP_PING, b"x" * 126),
                (8, b"y" * 126),
            ):
                try:
                    conn.ws_send(payload, op)
                except ValueError as exc:
                    errors.append(exc)
            with pytest.raises(TypeError):
                conn.ws_send(12345)
            conn.ws_send(bytearray(b"bytes-like"), WEBSOCKET_OP_BINARY)
            conn.ws_send(memoryview(b"pong payload"), WEBSOCKET_OP_PONG)

    _, port = listen_free(manager, handler=handler)
    with serve(manager):
        ws = RawWs(port)
        assert ws.recv_frame() == (0x82, b"bytes-like")
        assert ws.recv_frame() == (0x8A, b"pong payload")
        ws.close()
    assert len(errors) == 4


def test_ws_send_on_closed_connection_raises(manager):
    kept: list[Any] = []

    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_CLOSE:
            kept.append(conn)

    _, port = listen_free(manager, handler=handler)
    with serve(manager):
        ws = RawWs(port)
        ws.close()
        assert poll_until_thread(lambda: kept)
    with pytest.raises(RuntimeError, match="closed"):
        kept[0].ws_send("late")


def poll_until_thread(cond: Any, timeout: float = 5.0) -> Any:
    from conftest import wait_until

    return wait_until(cond, timeout)


def test_ws_upgrade_with_an_expired_view_raises(manager):
    saved: list[Any] = []
    raised: list[BaseException] = []

    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            if saved:
                try:
                    conn.ws_upgrade(saved[0])
                except ValueError as exc:
                    raised.append(exc)
                conn.reply(200, "ok")
            else:
                saved.append(data)
                conn.reply(200, "first")

    _, port = listen_free(manager, handler=handler)
    with serve(manager):
        s = raw_connect(port)
        s.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert poll_until_thread(lambda: raised)
        s.close()
    assert "not valid" in str(raised[0])


def test_asgi_style_close_starts_the_closing_handshake():
    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(struct.pack("!H", 1000) + b"", 8)
            conn.ws_send("ignored: after our close")

    mgr = Manager(handler)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            ws = RawWs(port)
            ws.send(frame(OP_TEXT, b"bye?"))
            f = ws.recv_frame()
            assert f == (0x88, b"\x03\xe8")
            ws.send(frame(8, b"\x03\xe8"))  # our answer closes it
            ws.expect_eof()
            ws.close()
    finally:
        mgr.close()


def test_five_concurrent_clients_unicode_and_binary():
    with echo_server() as (port, rec):
        clients = [RawWs(port) for _ in range(5)]
        for i, ws in enumerate(clients):
            ws.send(frame(OP_TEXT, f"client {i}: 日本語 ✓".encode()))
            ws.send(frame(OP_BINARY, bytes([i]) * 1000))
        for i, ws in enumerate(clients):
            assert ws.recv_message() == (0x81, f"client {i}: 日本語 ✓".encode())
            assert ws.recv_message() == (0x82, bytes([i]) * 1000)
            ws.close()
        assert rec.opened == 5


def test_ws_connect_queues_the_handshake_at_once(manager):
    seen: list[int] = []
    conn = manager.ws_connect("ws://127.0.0.1:9/some/path?q=1", lambda c, ev, d: seen.append(ev))
    head = conn.send_data()
    assert head.startswith(b"GET /some/path?q=1 HTTP/1.1\r\n")
    for line in (
        b"Host: 127.0.0.1:9",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Version: 13",
        b"Sec-WebSocket-Key: ",
    ):
        assert b"\r\n" + line in head
    assert seen[0] == MG_EV_OPEN  # SPEC Decision 6: events inside the call reach its handler
    assert conn.is_client and not conn.is_websocket


def test_ws_connect_then_error_then_close(manager):
    evs: list[int] = []

    def handler(conn: Any, ev: int, data: Any) -> None:
        evs.append(ev)

    def refusing(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(403, "no")

    srv = Manager(refusing)
    try:
        _, port = listen_free(srv)
        with serve(srv):
            manager.ws_connect(f"ws://127.0.0.1:{port}/", handler)
            assert poll_until(manager, lambda: MG_EV_CLOSE in evs, timeout=10)
    finally:
        srv.close()
    assert MG_EV_ERROR in evs and MG_EV_WS_OPEN not in evs
    assert evs.index(MG_EV_ERROR) < evs.index(MG_EV_CLOSE)


def test_our_close_unanswered_closes_tcp_after_the_timeout():
    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(struct.pack("!H", 1001), 8)

    mgr = Manager(handler)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            ws = RawWs(port)
            ws.send(frame(OP_TEXT, b"go away"))
            assert ws.recv_frame() == (0x88, b"\x03\xe9")
            t0 = time.monotonic()
            ws.expect_eof(timeout=15)  # we never answer: the server gives up (5 s)
            assert time.monotonic() - t0 > 3
            ws.close()
    finally:
        mgr.close()


def test_ws_listen_options_checked(manager):
    with pytest.raises(ValueError, match="only to an HTTP listener"):
        manager.listen("tcp://127.0.0.1:0", ws_deflate=False)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="ws_max_message"):
            manager.listen("http://127.0.0.1:0", ws_max_message=bad)
    with pytest.raises(TypeError):
        manager.listen("http://127.0.0.1:0", ws_max_message="big")
    assert manager.listen("http://127.0.0.1:0", ws_max_message=1, ws_deflate=False).is_listening
    # every keyword together (their parsing must line up)
    lsn = manager.listen(
        "http://127.0.0.1:0",
        None,
        http=True,
        max_head=4096,
        max_headers=10,
        max_uri=100,
        max_body=10,
        head_timeout_ms=1000,
        idle_timeout_ms=2000,
        reuse_port=False,
        ws_max_message=5,
        ws_deflate=True,
    )
    assert lsn.is_listening


def test_a_peer_that_does_not_read_is_throttled_then_served_whole():
    seen: list[int] = []

    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(data.data, WEBSOCKET_OP_BINARY)
            seen.append(conn.send_len)

    n, size = 2000, 16384  # 32 MiB of echoes the client does not read at first

    def payload(i: int) -> bytes:
        return i.to_bytes(4, "big") * (size // 4)

    # A zero masking key keeps the payload as it is: cheap to build in Python.
    data = b"".join(
        b"\x82\xfe" + size.to_bytes(2, "big") + b"\0\0\0\0" + payload(i) for i in range(n)
    )
    mgr = Manager(handler)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            ws = RawWs(port)
            ws.sock.settimeout(30)
            sender = threading.Thread(target=ws.sock.sendall, args=(data,))
            sender.start()
            assert wait_until(lambda: len(seen) > 100, timeout=10)
            time.sleep(0.5)  # the server's send buffer fills; it stops reading
            assert len(seen) < n and max(seen) < 8 << 20, (len(seen), max(seen))
            for i in range(n):
                assert ws.recv_message(timeout=20) == (0x82, payload(i))
            sender.join(20)
            ws.close()
    finally:
        mgr.close()
