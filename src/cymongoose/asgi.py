"""An ASGI 3 server (HTTP, WebSocket, lifespan) on the cymongoose event loop.

The Manager runs *inside* the asyncio loop, on its thread: its epoll descriptor is watched
with ``loop.add_reader`` and ``poll(0)`` runs when it is readable, so requests reach the
application without crossing threads, and a response is written straight into the
connection's send buffer (then flushed by the next ``poll(0)``, scheduled once per asyncio
iteration).  No poll thread, no wakeup round trip, no GIL hand-over per request::

    from cymongoose.asgi import serve
    serve(app, "http://127.0.0.1:8000")

uvloop is used when it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import struct
import sys
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

from ._mongoose import (
    MG_EV_CLOSE,
    MG_EV_HTTP_MSG,
    MG_EV_WRITE,
    MG_EV_WS_MSG,
    WEBSOCKET_OP_BINARY,
    Connection,
    HttpMessage,
    Manager,
)

__all__ = ["ASGIServer", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

_ASGI = {"version": "3.0", "spec_version": "2.4"}
_BODY_PIECE = 64 << 10  # a request body reaches the app in pieces of this size
_SEND_HIWAT = 256 << 10  # a streaming app waits while this much is unsent ...
_SEND_LOWAT = 64 << 10  # ... until it drains below this
_TICK = 0.05  # s between polls that only run the loop's timers (HTTP deadlines)
_ERROR_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 22\r\n\r\nInternal Server Error\n"
)
_WS_CLOSE = 8  # WebSocket close opcode (SPEC 1.2: not exported, hard-coded)
_WS_NONE, _WS_CONNECTING, _WS_OPEN, _WS_CLOSED = 0, 1, 2, 3
_RESP_CHUNKED, _RESP_CLOSE = 1, 2  # bits of Connection.http_response()


def _addrs(conn: Connection) -> tuple[Any, Any]:
    """(server, client) of a connection, kept in ``conn.userdata``: a keep-alive connection
    asks the binding once, not per request."""
    addrs = conn.userdata
    if addrs is None:
        local, remote = conn.local_addr, conn.remote_addr
        addrs = conn.userdata = (
            (local[0], local[1]) if local else None,
            (remote[0], remote[1]) if remote else None,
        )
    return addrs


def _build_http_scope(
    hm: HttpMessage,
    conn: Connection,
    root_path: str = "",
    state: dict[str, Any] | None = None,
    scope_type: str = "http",
) -> dict[str, Any]:
    """The ASGI scope of the request `hm` (valid only during the handler call)."""
    uri = hm.uri
    proto = hm.proto
    server, client = _addrs(conn)
    tls = conn.is_tls
    scope: dict[str, Any] = {
        "type": scope_type,
        "asgi": _ASGI,
        "http_version": "1.1" if proto == "HTTP/1.1" else proto[5:],
        "method": hm.method,
        "scheme": ("https" if tls else "http")
        if scope_type == "http"
        else ("wss" if tls else "ws"),
        "path": unquote(uri) if "%" in uri else uri,
        "raw_path": uri.encode("utf-8", "surrogateescape"),
        "query_string": hm.query.encode("utf-8", "surrogateescape"),
        "root_path": root_path,
        "headers": [
            (k.lower().encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
            for k, v in hm.headers()
        ],
        "server": server,
        "client": client,
    }
    if state is not None:
        scope["state"] = state.copy()
    return scope


def _build_ws_scope(
    hm: HttpMessage, conn: Connection, root_path: str = "", state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ASGI scope of a WebSocket upgrade request."""
    scope = _build_http_scope(hm, conn, root_path, state, "websocket")
    del scope["method"]
    protocols = hm.header("Sec-WebSocket-Protocol")
    scope["subprotocols"] = (
        [p.strip() for p in protocols.split(",") if p.strip()] if protocols else []
    )
    return scope


class _ConnState:
    """One request (or WebSocket) in progress on a connection."""

    __slots__ = (
        "body",
        "chunked",
        "close_after",
        "conn",
        "disconnect",
        "disconnected",
        "drained",
        "head_only",
        "headers",
        "hm",
        "http11",
        "id",
        "scope",
        "started",
        "status",
        "task",
        "ws_queue",
        "ws_state",
    )

    def __init__(self, conn: Connection, scope: dict[str, Any], body: bytes) -> None:
        self.conn = conn
        self.id = conn.id
        self.scope = scope
        self.body: bytes | None = body  # None once handed to the app
        self.disconnected = False
        self.disconnect: asyncio.Future[None] | None = None  # made when someone waits for it
        self.drained: asyncio.Future[None] | None = None  # a streaming send waits for room
        self.started = False  # the response head went out
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunked = False
        self.close_after = False
        self.head_only = scope.get("method") == "HEAD"
        self.http11 = scope["http_version"] == "1.1"  # chunked framing allowed
        self.task: asyncio.Task[None] | None = None
        self.ws_queue: asyncio.Queue[Message] | None = None
        self.ws_state = _WS_NONE
        self.hm: HttpMessage | None = None  # the upgrade request, while it is valid


class ASGIServer:
    """Serve an ASGI 3 application.

    ``await start(url)`` runs the lifespan startup, then listens; ``await stop()`` stops
    listening, cancels what is in progress, closes, and runs the lifespan shutdown.
    ``error_handler(exc)`` receives the application's exceptions (else they are printed).
    """

    def __init__(
        self,
        app: ASGIApp,
        error_handler: Callable[[BaseException], object] | None = None,
        *,
        root_path: str = "",
        access_log: Callable[[str], object] | None = None,
        lifespan: str = "auto",
    ) -> None:
        self.app = app
        self.error_handler = error_handler
        self.manager: Manager | None = None
        self._root_path = root_path.rstrip("/")
        self._access_log = access_log
        self._lifespan_mode = lifespan
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: dict[int, _ConnState] = {}
        self._listeners: list[Connection] = []
        self._state: dict[str, Any] = {}
        self._lifespan_queue: asyncio.Queue[Message] | None = None
        self._lifespan_task: asyncio.Task[None] | None = None
        self._lifespan_supported = False
        self._flush_due = False
        self._tick: asyncio.TimerHandle | None = None
        self._fd = -1

    # ---- start, stop ----------------------------------------------------------------------

    async def start(self, url: str = "http://127.0.0.1:8000", **options: Any) -> Connection:
        """Run the lifespan startup, then listen on ``url`` (``Manager.listen`` options pass)."""
        if self.manager is None:
            await self._lifespan_startup()
            self._loop = asyncio.get_running_loop()
            self.manager = Manager(self._event_handler, error_handler=self._report)
            self._fd = self.manager.fileno()
            self._loop.add_reader(self._fd, self._poll)
            self._tick = self._loop.call_later(_TICK, self._on_tick)
        return self.listen(url, **options)

    def listen(self, url: str, **options: Any) -> Connection:
        """Add a listener (after ``start()``)."""
        if self.manager is None:
            raise RuntimeError("ASGIServer is not started")
        listener = self.manager.listen(url, **options)
        self._listeners.append(listener)
        self._schedule_flush()
        return listener

    def stop_listening(self) -> None:
        """Close the listeners: no new connections; those open go on."""
        for listener in self._listeners:
            with contextlib.suppress(RuntimeError):
                listener.close()
        self._listeners.clear()
        self._schedule_flush()

    async def drain(self, timeout: float) -> bool:
        """Stop listening and wait (at most ``timeout`` s) for the requests in progress."""
        self.stop_listening()
        for st in list(self._conns.values()):
            if st.ws_state == _WS_OPEN:  # RFC 6455 7.4.1: 1001, the server is going away
                self._ws_close(st, 1001, "server shutting down")
                self._ws_push(st, {"type": "websocket.disconnect", "code": 1001})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            busy = [s for s in self._conns.values() if s.task is not None and not s.task.done()]
            unsent = self.manager is not None and any(c.send_len for c in self.manager.connections)
            if not busy and not unsent:
                return True
            await asyncio.sleep(0.01)
        return False

    async def stop(self) -> None:
        """Stop serving: cancel what runs, close every connection, then lifespan shutdown."""
        manager = self.manager
        if manager is None:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            loop.remove_reader(self._fd)
        if self._tick is not None:
            self._tick.cancel()
        tasks = [s.task for s in self._conns.values() if s.task is not None and not s.task.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        manager.close()
        self.manager = None
        self._conns.clear()
        self._listeners.clear()
        await self._lifespan_shutdown()

    # ---- driving the Manager from asyncio ------------------------------------------------

    def _poll(self) -> None:
        manager = self.manager
        if manager is None:
            return
        manager.poll(0)
        if manager.timeout() == 0:  # work left pending (a flush, a resumed read)
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Run poll(0) once more in this asyncio iteration: output written by the app
        leaves then, and work the loop left pending is done."""
        if not self._flush_due and self._loop is not None:
            self._flush_due = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        self._poll()

    def _on_tick(self) -> None:
        self._poll()
        if self.manager is not None and self._loop is not None:
            self._tick = self._loop.call_later(_TICK, self._on_tick)

    def _report(self, exc: BaseException) -> None:
        if self.error_handler is not None:
            try:
                self.error_handler(exc)
                return
            except Exception:  # noqa: BLE001
                pass
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)

    # ---- events ---------------------------------------------------------------------------

    # Plain chains of event tests: the loop calls them for these events only.
    def _event_handler(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            self._on_request(conn, data)
        elif ev == MG_EV_CLOSE:
            self._on_close(conn)

    def _stream_handler(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WRITE:
            self._on_write(conn)
        elif ev == MG_EV_CLOSE:
            self._on_close(conn)

    def _on_request(self, conn: Connection, hm: HttpMessage) -> None:
        if self._is_ws_upgrade(hm):
            self._on_ws_request(conn, hm)
            return
        scope = _build_http_scope(
            hm, conn, self._root_path, self._state if self._lifespan_supported else None
        )
        st = _ConnState(conn, scope, hm.body_bytes)
        self._conns[st.id] = st
        st.task = self._loop.create_task(self._run_http(st))  # type: ignore[union-attr]

    def _on_close(self, conn: Connection) -> None:
        st = self._conns.pop(conn.id, None)
        if st is None:
            return
        st.disconnected = True
        if st.disconnect is not None and not st.disconnect.done():
            st.disconnect.set_result(None)
        if st.drained is not None and not st.drained.done():
            st.drained.set_result(None)
        if st.ws_queue is not None and st.ws_state != _WS_NONE:
            st.ws_state = _WS_CLOSED
            st.hm = None
            # The client's close code (1005: its close frame had none); 1006 when the
            # connection ended without a close frame, or before the upgrade was answered.
            code = conn.ws_close_code or 1006
            st.ws_queue.put_nowait({"type": "websocket.disconnect", "code": code})

    def _on_write(self, conn: Connection) -> None:
        st = self._conns.get(conn.id)
        if (
            st is not None
            and st.drained is not None
            and conn.send_len < _SEND_LOWAT
            and not st.drained.done()
        ):
            st.drained.set_result(None)

    # ---- HTTP -----------------------------------------------------------------------------

    async def _run_http(self, st: _ConnState) -> None:
        try:
            await self.app(st.scope, self._http_receive(st), self._http_send(st))
        except Exception as exc:  # noqa: BLE001 - the server answers 500 and goes on
            self._report(exc)
            if not st.started and not st.disconnected:
                st.conn.send(_ERROR_500)
                self._end(st, finished=False, close=False)
            elif not st.disconnected:
                st.conn.close()
                self._schedule_flush()
            return
        if not st.started and not st.disconnected:
            # The app returned without answering (ASGI: the server sends 500).
            st.conn.send(_ERROR_500)
            self._end(st, finished=False, close=False)

    def _http_receive(self, st: _ConnState) -> Callable[[], Awaitable[Message]]:
        async def receive() -> Message:
            body = st.body
            if body is not None:
                if len(body) <= _BODY_PIECE:
                    st.body = None
                    return {"type": "http.request", "body": body, "more_body": False}
                st.body = body[_BODY_PIECE:]
                return {"type": "http.request", "body": body[:_BODY_PIECE], "more_body": True}
            if not st.disconnected:
                if st.disconnect is None:
                    st.disconnect = asyncio.get_running_loop().create_future()
                await st.disconnect
            return {"type": "http.disconnect"}

        return receive

    def _http_send(self, st: _ConnState) -> Callable[[Message], Awaitable[None]]:
        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.body":
                if st.disconnected:
                    return
                body = message.get("body", b"")
                if message.get("more_body", False):
                    await self._send_piece(st, body)
                elif st.started:
                    self._send_last(st, body)
                else:
                    self._send_whole(st, body)
            elif kind == "http.response.start":
                if st.status:
                    raise RuntimeError("http.response.start sent twice")
                st.status = int(message["status"])
                st.headers = list(message.get("headers", ()))
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r} on an HTTP connection")

        return send

    # The head is written by Connection.http_response (C): the status line, the app's
    # header pairs as they are (checked for CR/LF/NUL), Content-Length or chunked framing.

    def _send_whole(self, st: _ConnState, body: bytes) -> None:
        if not st.status:
            raise RuntimeError("http.response.body before http.response.start")
        st.started = True
        flags = st.conn.http_response(st.status, st.headers, body, st.head_only, st.http11)
        self._end(st, finished=True, close=bool(flags & _RESP_CLOSE))

    async def _send_piece(self, st: _ConnState, body: bytes) -> None:
        conn = st.conn
        if not st.started:
            if not st.status:
                raise RuntimeError("http.response.body before http.response.start")
            st.started = True
            conn.set_handler(self._stream_handler)  # MG_EV_WRITE tells when it drains
            flags = conn.http_response(st.status, st.headers, None, st.head_only, st.http11)
            st.chunked = bool(flags & _RESP_CHUNKED)
            st.close_after = bool(flags & _RESP_CLOSE)
        if body and not st.head_only:
            conn.send(b"%x\r\n%s\r\n" % (len(body), body) if st.chunked else body)
        self._schedule_flush()
        if conn.send_len >= _SEND_HIWAT:  # back-pressure: wait until the client reads
            st.drained = asyncio.get_running_loop().create_future()
            await st.drained
            st.drained = None

    def _send_last(self, st: _ConnState, body: bytes) -> None:
        conn = st.conn
        # HEAD: no body, so no framing either, not even the last chunk (RFC 9110 9.3.2).
        if st.chunked and not st.head_only:
            conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n")
        elif body and not st.head_only:
            conn.send(body)
        self._end(st, finished=False, close=st.close_after)

    def _end(self, st: _ConnState, finished: bool, close: bool) -> None:
        """The response is complete (`finished`: http_response already said so to the
        core): the next request on the connection may come, or it closes."""
        conn = st.conn
        self._conns.pop(st.id, None)
        st.disconnected = True  # later sends of this app are ignored
        if st.disconnect is not None and not st.disconnect.done():
            st.disconnect.set_result(None)
        if not finished:
            conn.set_handler(None)  # a streamed response switched it to _stream_handler
            if close:
                conn.drain()
            else:
                conn.http_end()
        if self._access_log is not None:
            s = st.scope
            self._access_log(
                f'{s["client"][0]} "{s["method"]} {s["path"]} HTTP/{s["http_version"]}" {st.status}'
            )
        self._schedule_flush()

    # ---- WebSocket --------------------------------------------------------------------------

    @staticmethod
    def _is_ws_upgrade(hm: HttpMessage) -> bool:
        upgrade = hm.header("Upgrade")
        return upgrade is not None and upgrade.lower() == "websocket"

    def _on_ws_request(self, conn: Connection, hm: HttpMessage) -> None:
        if not hasattr(conn, "ws_upgrade"):
            conn.reply(404, b"WebSocket is not available in this build\n")
            return
        state = self._state if self._lifespan_supported else None
        st = _ConnState(conn, _build_ws_scope(hm, conn, self._root_path, state), b"")
        st.body = None
        st.ws_state = _WS_CONNECTING
        st.ws_queue = asyncio.Queue()
        st.ws_queue.put_nowait({"type": "websocket.connect"})
        self._conns[st.id] = st
        # The app runs now, inside this event, until it first waits: an app that accepts
        # at once answers with the request's view, no copy.  One that waits first (an auth
        # check, a lookup) answers later, with a copy of the request that outlives the view.
        st.hm = hm
        try:
            self._start_ws(st, self.app(st.scope, self._ws_receive(st), self._ws_send(st)))
        finally:
            waiting = st.ws_state == _WS_CONNECTING and st.task is not None
            st.hm = hm.copy() if waiting else None

    def _start_ws(self, st: _ConnState, coro: Any) -> None:
        loop = self._loop
        assert loop is not None
        if sys.version_info >= (3, 12):  # a real task, run eagerly until it waits
            task = asyncio.Task(self._ws_run(st, coro), loop=loop, eager_start=True)  # type: ignore[call-arg]
            st.task = None if task.done() else task
            return
        # Python < 3.12: drive the coroutine by hand until it first waits, then a task
        # resumes it (asyncio.current_task() is None during this first step).
        try:
            fut = coro.send(None)
        except StopIteration:
            self._ws_finished(st)
            return
        except Exception as exc:  # noqa: BLE001
            self._ws_failed(st, exc)
            self._ws_finished(st)
            return
        st.task = loop.create_task(self._ws_resume(st, coro, fut))

    async def _ws_run(self, st: _ConnState, coro: Any) -> None:
        try:
            await coro
        except Exception as exc:  # noqa: BLE001
            self._ws_failed(st, exc)
        finally:
            self._ws_finished(st)

    async def _ws_resume(self, st: _ConnState, coro: Any, fut: Any) -> None:
        try:
            while True:
                if fut is None:  # a bare yield (asyncio.sleep(0))
                    await asyncio.sleep(0)
                else:
                    # What a Task does with a yielded future: take it over (clear its
                    # "blocking" mark), wait for it; the coroutine then sees the outcome
                    # itself, through fut.result() inside it.
                    fut._asyncio_future_blocking = False
                    with contextlib.suppress(BaseException):
                        await fut
                try:
                    fut = coro.send(None)
                except StopIteration:
                    return
        except Exception as exc:  # noqa: BLE001
            self._ws_failed(st, exc)
        finally:
            self._ws_finished(st)

    def _ws_failed(self, st: _ConnState, exc: BaseException) -> None:
        self._report(exc)
        if st.ws_state == _WS_CONNECTING and st.hm is not None:
            self._ws_refuse(st, 500, b"Internal Server Error\n")
        elif st.ws_state == _WS_OPEN:
            self._ws_close(st, 1011, "")  # RFC 6455 7.4.1: an unexpected condition

    def _ws_finished(self, st: _ConnState) -> None:
        """The app returned: ASGI says the connection closes (1000 if still open)."""
        if st.ws_state == _WS_OPEN and not st.disconnected:
            self._ws_close(st, 1000, "")
        elif st.ws_state == _WS_CONNECTING and st.hm is not None:
            self._ws_refuse(st, 403, b"Forbidden\n")  # returned without accepting
        self._schedule_flush()

    def _ws_refuse(self, st: _ConnState, status: int, body: bytes) -> None:
        """Answer the upgrade request with an HTTP error instead of 101 (as uvicorn does)."""
        st.conn.reply(status, body)
        st.ws_state = _WS_CLOSED
        st.hm = None
        self._schedule_flush()

    def _ws_close(self, st: _ConnState, code: int, reason: str) -> None:
        if st.ws_state == _WS_OPEN and not st.disconnected:
            st.conn.ws_send(_close_payload(code, reason), _WS_CLOSE)
            self._schedule_flush()
        st.ws_state = _WS_CLOSED

    @staticmethod
    def _ws_push(st: _ConnState, message: Message) -> None:
        if st.ws_queue is not None:
            st.ws_queue.put_nowait(message)

    def _ws_handler(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WS_MSG:
            self._on_ws_message(conn, data)
        elif ev == MG_EV_WRITE:
            self._on_write(conn)
        elif ev == MG_EV_CLOSE:
            self._on_close(conn)

    def _on_ws_message(self, conn: Connection, msg: Any) -> None:
        st = self._conns.get(conn.id)
        if st is None or st.ws_queue is None:
            return
        if msg.flags & WEBSOCKET_OP_BINARY:
            st.ws_queue.put_nowait({"type": "websocket.receive", "bytes": msg.data})
        else:
            st.ws_queue.put_nowait({"type": "websocket.receive", "text": msg.text})

    def _ws_receive(self, st: _ConnState) -> Callable[[], Awaitable[Message]]:
        queue = st.ws_queue
        assert queue is not None

        async def receive() -> Message:
            return await queue.get()

        return receive

    def _ws_send(self, st: _ConnState) -> Callable[[Message], Awaitable[None]]:
        async def send(message: Message) -> None:
            kind = message["type"]
            conn = st.conn
            if kind == "websocket.send":
                if st.ws_state != _WS_OPEN or st.disconnected:
                    raise OSError("WebSocket is closed")  # like uvicorn: ClientDisconnected
                text = message.get("text")
                if text is not None:
                    conn.ws_send(text, 1)
                else:
                    conn.ws_send(message.get("bytes") or b"", WEBSOCKET_OP_BINARY)
                self._schedule_flush()
                if conn.send_len >= _SEND_HIWAT:  # back-pressure: wait until the client reads
                    st.drained = asyncio.get_running_loop().create_future()
                    await st.drained
                    st.drained = None
            elif kind == "websocket.accept":
                if st.disconnected:  # the client left meanwhile: receive() says so
                    return
                if st.ws_state != _WS_CONNECTING or st.hm is None:
                    raise RuntimeError("websocket.accept: the WebSocket is not connecting")
                extra = {
                    bytes(k).decode("latin-1"): bytes(v).decode("latin-1")
                    for k, v in message.get("headers") or ()
                }
                if message.get("subprotocol"):
                    extra["Sec-WebSocket-Protocol"] = message["subprotocol"]
                hm, st.hm = st.hm, None
                conn.set_handler(self._ws_handler)
                conn.ws_upgrade(hm, extra or None)
                st.ws_state = _WS_OPEN
                self._schedule_flush()
            elif kind == "websocket.close":
                if st.ws_state == _WS_CONNECTING and st.hm is not None:
                    self._ws_refuse(st, 403, b"Forbidden\n")  # ASGI: close before accept is a 403
                else:
                    self._ws_close(st, int(message.get("code", 1000)), message.get("reason") or "")
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r} on a WebSocket")

        return send

    # ---- lifespan ---------------------------------------------------------------------------

    async def _lifespan_startup(self) -> None:
        if self._lifespan_mode == "off":
            return
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan_queue = queue
        done: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._lifespan_waiter = done

        async def receive() -> Message:
            return await queue.get()

        async def send(message: Message) -> None:
            if not self._lifespan_waiter.done():
                self._lifespan_waiter.set_result(message)

        async def run() -> None:
            scope = {"type": "lifespan", "asgi": _ASGI, "state": self._state}
            try:
                await self.app(scope, receive, send)
            except BaseException as exc:  # noqa: BLE001 - apps that do not speak lifespan
                if not self._lifespan_waiter.done():
                    self._lifespan_waiter.set_exception(exc)
                elif self._lifespan_supported:
                    self._report(exc)  # noqa: B023
            else:
                if not self._lifespan_waiter.done():
                    self._lifespan_waiter.set_result({"type": "lifespan.unsupported"})

        self._lifespan_task = asyncio.get_running_loop().create_task(run())
        await queue.put({"type": "lifespan.startup"})
        try:
            message = await done
        except Exception:  # noqa: BLE001 - raised or refused: no lifespan (like uvicorn "auto")
            if self._lifespan_mode == "on":
                raise
            return
        kind = message.get("type")
        if kind == "lifespan.startup.failed":
            raise RuntimeError(f"ASGI lifespan startup failed: {message.get('message', '')}")
        if kind == "lifespan.startup.complete":
            self._lifespan_supported = True

    async def _lifespan_shutdown(self) -> None:
        task, queue = self._lifespan_task, self._lifespan_queue
        if not self._lifespan_supported or task is None or queue is None or task.done():
            return
        waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._lifespan_waiter = waiter
        await queue.put({"type": "lifespan.shutdown"})
        try:
            message = await asyncio.wait_for(waiter, 5)
        except (Exception, asyncio.TimeoutError) as exc:  # noqa: BLE001
            self._report(exc)
            return
        finally:
            self._lifespan_supported = False
        if message.get("type") == "lifespan.shutdown.failed":
            print(f"ASGI lifespan shutdown failed: {message.get('message', '')}", file=sys.stderr)
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            await asyncio.wait_for(task, 1)


def _close_payload(code: int, reason: str) -> bytes:
    return struct.pack("!H", code) + reason.encode("utf-8")


def serve(app: ASGIApp, url: str = "http://127.0.0.1:8000", **options: Any) -> None:
    """Serve ``app`` on ``url`` until SIGINT or SIGTERM (uvloop if installed)."""

    async def main() -> None:
        server = ASGIServer(app)
        await server.start(url, **options)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
            await server.drain(10)
        finally:
            await server.stop()

    run(main())


def run(main: Awaitable[Any]) -> Any:
    """asyncio.run, on uvloop when it is installed."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.run(main)  # type: ignore[arg-type]
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)  # type: ignore[arg-type]
    uvloop.install()
    return asyncio.run(main)
