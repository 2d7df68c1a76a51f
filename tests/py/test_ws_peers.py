"""Our WebSocket server and client against real peers: the `websockets`
library (client and server) and `websocket-client`."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import poll_until
from ws_peers import echo_server, peer_echo, peer_server, websocket_client_conversation

from cymongoose import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_WS_CTL,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_PING,
    WEBSOCKET_OP_TEXT,
    Manager,
)

websockets = pytest.importorskip("websockets")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect as ws_client  # noqa: E402

LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 3 << 20]


@pytest.fixture(scope="module")
def server():
    with echo_server() as (port, rec):
        yield port, rec


# ---- the websockets client against our server ----------------------------------


@pytest.mark.parametrize("compression", ["deflate", None])
def test_websockets_client_echo_all_lengths(server, compression):
    port, _ = server
    with ws_client(f"ws://127.0.0.1:{port}/echo", compression=compression, max_size=None) as ws:
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions")
        assert (negotiated is not None) == (compression is not None)
        for n in LENGTHS:
            text = "é" * (n // 2) + "a" * (n % 2)
            ws.send(text)
            assert ws.recv(timeout=20) == text
            blob = bytes((i * 31) & 0xFF for i in range(n))
            ws.send(blob)
            assert ws.recv(timeout=20) == blob


@pytest.mark.parametrize("compression", ["deflate", None])
def test_websockets_client_sends_fragments(server, compression):
    port, _ = server
    with ws_client(f"ws://127.0.0.1:{port}/", compression=compression) as ws:
        ws.send(["frag", "men", "ted ", "κόσμε"])
        assert ws.recv(timeout=5) == "fragmented κόσμε"
        ws.send([b"\x00" * 70000, b"\x01" * 70000])
        assert ws.recv(timeout=5) == b"\x00" * 70000 + b"\x01" * 70000


def test_websockets_client_ping_pong(server):
    port, rec = server
    before = len(rec.ctl)
    with ws_client(f"ws://127.0.0.1:{port}/") as ws:
        assert ws.ping(b"are you there").wait(5)
        ws.send("after ping")
        assert ws.recv(timeout=5) == "after ping"
    assert len(rec.ctl) > before and all(d is None for d in rec.ctl)  # SPEC 1.3: None


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
def test_websockets_client_closes_with_code(server, code):
    port, _ = server
    ws = ws_client(f"ws://127.0.0.1:{port}/")
    ws.close(code, "done here")
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == code  # echoed


def test_server_initiated_close_reaches_websockets_client():
    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == 11:  # MG_EV_HTTP_MSG
            conn.ws_upgrade(data)
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(struct.pack("!H", 4001) + b"server says bye", 8)  # as ASGI does

    with running_manager(handler) as port:
        with ws_client(f"ws://127.0.0.1:{port}/") as ws:
            ws.send("close please")
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=5)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 4001 and info.value.rcvd.reason == "server says bye"


def test_websocket_client_library(server):
    pytest.importorskip("websocket")
    port, _ = server
    websocket_client_conversation(f"ws://127.0.0.1:{port}/wc")


def test_200_concurrent_connections_each_echo_in_order(server):
    port, rec = server
    n_conns, n_msgs = 200, 20

    async def one(i: int) -> list[str]:
        async with websockets.connect(f"ws://127.0.0.1:{port}/c{i}", compression=None) as ws:
            for j in range(n_msgs):
                await ws.send(f"{i}:{j}")
            return [await asyncio.wait_for(ws.recv(), 20) for _ in range(n_msgs)]

    async def all_of_them() -> list[list[str]]:
        return await asyncio.gather(*(one(i) for i in range(n_conns)))

    results = asyncio.run(asyncio.wait_for(all_of_them(), 60))
    for i, got in enumerate(results):
        assert got == [f"{i}:{j}" for j in range(n_msgs)]


# ---- our client against the websockets server -----------------------------------


@contextmanager
def running_manager(handler: Any, **kw: Any) -> Iterator[int]:
    from conftest import listen_free, serve

    mgr = Manager(handler)
    try:
        _, port = listen_free(mgr, **kw)
        with serve(mgr, step_ms=5):
            yield port
    finally:
        mgr.close()


class Client:
    """Our client: records what its handler sees."""

    def __init__(self) -> None:
        self.events: list[tuple[int, Any]] = []
        self.msgs: list[tuple[int, bytes]] = []
        self.opened: dict[str, str] | None = None
        self.errors: list[str] = []
        self.closed = False

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_WS_OPEN:
            self.opened = dict((k.lower(), v) for k, v in data.headers())
            self.status = data.status()
        elif ev == MG_EV_WS_MSG:
            self.msgs.append((data.flags, data.data))
        elif ev == MG_EV_WS_CTL:
            self.events.append((ev, data))
        elif ev == MG_EV_ERROR:
            self.errors.append(data)
        elif ev == MG_EV_CLOSE:
            self.closed = True


def connect(mgr: Manager, port: int, path: str = "/", **kw: Any) -> tuple[Any, Client]:
    cl = Client()
    conn = mgr.ws_connect(f"ws://127.0.0.1:{port}{path}", cl, **kw)
    assert poll_until(mgr, lambda: cl.opened is not None or cl.errors or cl.closed, timeout=10)
    assert cl.opened is not None, cl.errors
    return conn, cl


@pytest.mark.parametrize("deflate", [True, False])
def test_our_client_echo_all_lengths(manager, deflate):
    with peer_server(peer_echo, max_size=None) as port:
        conn, cl = connect(manager, port, ws_deflate=deflate)
        assert cl.status == 101
        assert ("sec-websocket-extensions" in cl.opened) == deflate
        assert conn.is_websocket
        want = []
        for n in LENGTHS:
            text = ("ü" * n)[: n // 2]
            conn.ws_send(text)
            blob = bytes((i * 13) & 0xFF for i in range(n))
            conn.ws_send(blob, WEBSOCKET_OP_BINARY)
            want += [(0x81, text.encode()), (0x82, blob)]
        assert poll_until(manager, lambda: len(cl.msgs) >= len(want), timeout=30)
        assert cl.msgs == want


def test_our_client_reassembles_fragments_from_the_server(manager):
    def handler(ws: Any) -> None:
        ws.send(["one ", "two ", "three"])
        ws.send([b"\x01" * 100000, b"\x02"])
        peer_echo(ws)

    with peer_server(handler) as port:
        _, cl = connect(manager, port)
        assert poll_until(manager, lambda: len(cl.msgs) >= 2, timeout=10)
        assert cl.msgs == [(0x81, b"one two three"), (0x82, b"\x01" * 100000 + b"\x02")]


def test_our_client_answers_server_pings_and_can_ping(manager):
    pongs: list[bool] = []

    def handler(ws: Any) -> None:
        pongs.append(ws.ping(b"server ping").wait(5))
        peer_echo(ws)

    with peer_server(handler) as port:
        conn, cl = connect(manager, port)
        assert poll_until(manager, lambda: pongs, timeout=10)
        assert pongs == [True]
        conn.ws_send(b"client ping", WEBSOCKET_OP_PING)
        assert poll_until(
            manager, lambda: len(cl.events) >= 2, timeout=10
        )  # the ping, and the pong
        assert all(ev == MG_EV_WS_CTL and d is None for ev, d in cl.events)


def test_our_client_close_with_code(manager):
    seen: list[Any] = []

    def handler(ws: Any) -> None:
        try:
            for _ in ws:
                pass
        except ConnectionClosed:
            pass
        seen.append(ws.protocol.close_rcvd)

    with peer_server(handler) as port:
        conn, cl = connect(manager, port)
        conn.ws_send(struct.pack("!H", 4002) + b"client leaves", 8)
        assert poll_until(manager, lambda: cl.closed, timeout=10)
        assert poll_until(manager, lambda: seen, timeout=5)
        assert seen[0].code == 4002 and seen[0].reason == "client leaves"


def test_server_close_code_echoed_by_our_client(manager):
    sent: list[Any] = []

    def handler(ws: Any) -> None:
        ws.close(4003, "go away")
        sent.append(ws.protocol.close_rcvd)

    with peer_server(handler) as port:
        _, cl = connect(manager, port)
        assert poll_until(manager, lambda: cl.closed and sent, timeout=10)
        assert sent[0] is not None and sent[0].code == 4003
        assert not cl.errors


def test_our_client_subprotocol_header(manager):
    def handler(ws: Any) -> None:
        ws.send(ws.subprotocol or "none")
        peer_echo(ws)

    with peer_server(handler, subprotocols=["mqtt"]) as port:
        _, cl = connect(manager, port, extra_headers={"Sec-WebSocket-Protocol": "mqtt"})
        assert cl.opened["sec-websocket-protocol"] == "mqtt"
        assert poll_until(manager, lambda: cl.msgs, timeout=5)
        assert cl.msgs[0] == (0x81, b"mqtt")


def test_our_client_fails_on_a_plain_http_answer(manager):
    def http(conn: Any, ev: int, data: Any) -> None:
        if ev == 11:
            conn.reply(200, "not a websocket\n")

    with running_manager(http) as port:
        cl = Client()
        manager.ws_connect(f"ws://127.0.0.1:{port}/", cl)
        assert poll_until(manager, lambda: cl.closed, timeout=10)
        assert cl.errors == ["ws handshake error"] and cl.opened is None


def test_our_client_refused_connection_reports_error(manager):
    from conftest import free_port

    cl = Client()
    manager.ws_connect(f"ws://127.0.0.1:{free_port()}/", cl)
    assert poll_until(manager, lambda: cl.closed, timeout=10)
    assert cl.errors and cl.opened is None


def test_ws_connect_synchronous_failure_raises(manager):
    with pytest.raises(RuntimeError, match="Failed to create WebSocket connection to ''"):
        manager.ws_connect("")


def test_text_and_binary_flags_from_peer(manager):
    with peer_server(peer_echo) as port:
        conn, cl = connect(manager, port)
        conn.ws_send("t", WEBSOCKET_OP_TEXT)
        conn.ws_send(b"b", WEBSOCKET_OP_BINARY)
        assert poll_until(manager, lambda: len(cl.msgs) == 2, timeout=5)
        assert [f for f, _ in cl.msgs] == [0x81, 0x82]
