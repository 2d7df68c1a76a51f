"""Answering a request after its handler returned: HttpMessage.copy() (a detached
message that stays valid), ws_upgrade / serve_file / serve_dir with it from a timer,
and Connection.ws_close_code (the peer's close code, 1005 / 1006)."""

from __future__ import annotations

import http.client
from typing import Any

import pytest
from conftest import HOST, listen_free, raw_connect, serve, wait_until
from ws_peers import OP_CLOSE, OP_TEXT, UPGRADE_REQUEST, RawWs, close_payload, frame

from cymongoose import (
    MG_EV_CLOSE,
    MG_EV_HTTP_MSG,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    Connection,
    HttpMessage,
    Manager,
)

if not hasattr(Connection, "ws_upgrade"):
    pytest.skip("WebSocket is not in this build", allow_module_level=True)

LATE_MS = 50


def accessors(hm: HttpMessage) -> tuple[Any, ...]:
    return (
        hm.method,
        hm.uri,
        hm.query,
        hm.proto,
        hm.body_bytes,
        hm.body_text,
        hm.header("X-Thing"),
        hm.header("missing", "dflt"),
        hm.headers(),
        hm.query_var("a"),
        hm.status(),
        hm.header_var("Content-Type", "charset"),
        bool(hm),
    )


def test_copy_has_every_accessor_and_outlives_the_event():
    seen: list[tuple[Any, ...]] = []
    copies: list[HttpMessage] = []
    views: list[HttpMessage] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            cp = data.copy()
            assert cp.copy() is cp  # a copy is immutable: copying it gives itself
            seen.append(accessors(data))
            assert accessors(cp) == seen[-1]
            copies.append(cp)
            views.append(data)
            conn.reply(200, b"ok")

    mgr = Manager(handler)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            c = http.client.HTTPConnection(HOST, port, timeout=10)
            for i in range(2):  # the second request reuses the first one's view object
                c.request(
                    "POST",
                    f"/p/{i}?a=x%20{i}&b=",
                    body=f"body {i}",
                    headers={"X-Thing": f"t{i}", "Content-Type": "text/plain; charset=utf-8"},
                )
                r = c.getresponse()
                assert (r.status, r.read()) == (200, b"ok")
            c.close()
        assert len(copies) == 2 and not views[0]  # the views died with their events
        for cp, before in zip(copies, seen, strict=True):
            assert accessors(cp) == before
        assert copies[0].uri == "/p/0" and copies[0].query_var("a") == "x 0"
        assert (
            copies[1].body_bytes == b"body 1"
            and copies[1].header_var("Content-Type", "charset") == "utf-8"
        )
        with pytest.raises(ValueError, match="not valid for this event"):
            views[0].copy()
        with pytest.raises(ValueError, match="not valid for this event"):
            HttpMessage.__new__(HttpMessage).copy()
    finally:
        mgr.close()


class Late:
    """A server that answers each upgrade request LATE_MS after its event, from a timer,
    echoes messages, and records the close codes it saw."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.opened: list[str] = []
        self.codes: list[Any] = []
        self.conns: list[Connection] = []
        self.errors: list[BaseException] = []

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            cp = data.copy()
            self.mgr.timer_add(LATE_MS, lambda: self.upgrade(conn, cp))
        elif ev == MG_EV_WS_OPEN:
            self.opened.append(data.uri)
            assert conn.ws_close_code is None
        elif ev == MG_EV_WS_MSG:
            conn.ws_send(b"echo:" + data.data, OP_TEXT)
        elif ev == MG_EV_CLOSE and conn.is_websocket:
            self.codes.append(conn.ws_close_code)
            self.conns.append(conn)

    def upgrade(self, conn: Connection, cp: HttpMessage) -> None:
        try:
            conn.ws_upgrade(cp, {"X-Late": "yes"})
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)


@pytest.mark.parametrize(
    "ending, code",
    [("normal", 1000), ("app", 4001), ("empty", 1005), ("drop", 1006)],
)
def test_upgrade_later_and_the_close_code(ending, code):
    mgr = Manager()
    late = Late(mgr)
    try:
        _, port = listen_free(mgr, handler=late)
        with serve(mgr):
            ws = RawWs(port, "/late", headers="Sec-WebSocket-Protocol: chat\r\n")
            assert b"X-Late: yes" in ws.head and b"Sec-WebSocket-Protocol: chat" in ws.head
            ws.send(frame(OP_TEXT, b"hi"))
            assert ws.recv_message() == (0x81, b"echo:hi")
            if ending == "drop":
                ws.close()
            else:
                payload = b"" if ending == "empty" else close_payload(code)
                ws.send(frame(OP_CLOSE, payload))
                ws.expect_close(None if ending == "empty" else code)
                ws.close()
            assert wait_until(lambda: late.codes)
        assert late.opened == ["/late"] and late.errors == []
        assert late.codes == [code]
        assert late.conns[0].ws_close_code == code  # kept once the connection is gone
    finally:
        mgr.close()


def test_upgrade_with_the_websockets_client():
    websockets = pytest.importorskip("websockets.sync.client")
    mgr = Manager()
    late = Late(mgr)
    try:
        _, port = listen_free(mgr, handler=late)
        with serve(mgr):
            with websockets.connect(f"ws://{HOST}:{port}/chat", open_timeout=10) as ws:
                assert ws.response.headers["X-Late"] == "yes"
                ws.send("hello")
                assert ws.recv(timeout=10) == "echo:hello"
                ws.close(4002)
            assert wait_until(lambda: late.codes)
        assert late.codes == [4002] and late.errors == []
    finally:
        mgr.close()


def test_upgrade_after_an_answer_raises():
    """Answered already: ws_upgrade raises and nothing follows the 200."""
    errors: list[BaseException] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, b"plain")
            try:
                conn.ws_upgrade(data)
            except RuntimeError as exc:
                errors.append(exc)
            cp = data.copy()

            def later() -> None:
                try:
                    conn.ws_upgrade(cp)
                except RuntimeError as exc:
                    errors.append(exc)

            mgr.timer_add(LATE_MS, later)

    mgr = Manager(handler)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            c = http.client.HTTPConnection(HOST, port, timeout=10)
            c.request(
                "GET",
                "/",
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "13",
                },
            )
            r = c.getresponse()
            assert (r.status, r.read()) == (200, b"plain")
            assert wait_until(lambda: len(errors) == 2)
            c.request("GET", "/again")  # still HTTP, keep-alive: answered
            r = c.getresponse()
            assert (r.status, r.read()) == (200, b"plain")
            c.close()
        assert all("answered already" in str(e) for e in errors[:2])
    finally:
        mgr.close()


@pytest.mark.parametrize("how", ["file", "dir"])
def test_serve_later_with_a_copy(tmp_path, how):
    (tmp_path / "hello.txt").write_bytes(b"hello from disk\n")

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            cp = data.copy()
            if how == "file":
                mgr.timer_add(LATE_MS, lambda: conn.serve_file(cp, str(tmp_path / "hello.txt")))
            else:
                mgr.timer_add(LATE_MS, lambda: conn.serve_dir(cp, str(tmp_path)))

    mgr = Manager(handler)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            c = http.client.HTTPConnection(HOST, port, timeout=10)
            for _ in range(2):  # keep-alive: the second request waits for the first answer
                c.request("GET", "/hello.txt")
                r = c.getresponse()
                assert (r.status, r.read()) == (200, b"hello from disk\n")
            c.close()
    finally:
        mgr.close()


def test_client_gone_before_the_late_upgrade():
    """The peer leaves before the answer: the late upgrade of the closed connection raises
    'Connection has been closed', as every method of a closed connection does."""
    got: list[Any] = []
    kept: list[HttpMessage] = []

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            kept.append(data.copy())
        elif ev == MG_EV_CLOSE and not conn.is_listening:
            got.append(("closed", conn.ws_close_code))
            cp = kept[0]

            def later() -> None:  # after the close: the connection is gone
                try:
                    conn.ws_upgrade(cp)
                    got.append("upgraded")
                except RuntimeError as exc:
                    got.append(str(exc))

            mgr.timer_add(1, later)

    mgr = Manager(handler)
    try:
        _, port = listen_free(mgr)
        with serve(mgr):
            s = raw_connect(port)
            s.sendall(UPGRADE_REQUEST)
            s.close()
            assert wait_until(lambda: len(got) == 2)
        assert got == [("closed", None), "Connection has been closed"]
    finally:
        mgr.close()
