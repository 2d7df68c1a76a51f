"""A WebSocket protocol failure (RFC 6455 7.1.7) reports MG_EV_ERROR while the
connection drains, not yet closing (README "Where we differ"): the close frame with
the failure's code is queued and still leaves, nothing the application sends after it
reaches the peer, and the connection then closes (MG_EV_CLOSE) once it is written."""

from __future__ import annotations

import struct

from conftest import free_port, listen_free, poll_until, serve, wait_until
from ws_peers import OP_CLOSE, OP_TEXT, RawWs, frame

from cymongoose import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    WEBSOCKET_OP_TEXT,
    Manager,
)


def test_ws_failure_drains_then_closes():
    seen: list[tuple] = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.ws_upgrade(data)
        elif ev == MG_EV_ERROR:
            seen.append(("error", data, conn.is_closing, conn.is_draining, conn.send_len > 0))
            conn.ws_send("after the close frame", WEBSOCKET_OP_TEXT)  # dropped (RFC 6455 5.5.1)
        elif ev == MG_EV_CLOSE and conn.id != listener_id:
            seen.append(("close",))

    mgr = Manager(handler)
    try:
        lsn, port = listen_free(mgr)
        listener_id = lsn.id
        with serve(mgr, step_ms=5):
            ws = RawWs(port)
            try:
                ws.send(frame(OP_TEXT, b"hi", mask=False))  # unmasked client frame: 1002
                f = ws.recv_frame()
                assert f is not None and f[0] == 0x80 | OP_CLOSE
                assert struct.unpack("!H", f[1][:2])[0] == 1002
                ws.expect_eof()  # nothing after the close frame, then TCP closes
            finally:
                ws.close()
            assert wait_until(lambda: len(seen) == 2)
    finally:
        mgr.close()
    # During MG_EV_ERROR: draining with the close frame queued, not closing (SPEC 1.3
    # says closing; a closing connection would drop that frame unsent).
    kind, msg, closing, draining, queued = seen[0]
    assert kind == "error" and "mask" in msg
    assert (closing, draining, queued) == (False, True, True)
    assert seen[1] == ("close",)


def test_non_protocol_error_still_marks_closing():
    """The other MG_EV_ERRORs keep SPEC 1.3: is_closing is already set (a refused connect)."""
    states = []

    def handler(conn, ev, data):
        if ev == MG_EV_ERROR:
            states.append((conn.is_closing, conn.is_draining))

    with Manager(handler) as mgr:
        mgr.ws_connect(f"ws://127.0.0.1:{free_port()}/")  # nothing listens: refused
        assert poll_until(mgr, lambda: states)
    assert states[0][0] is True
