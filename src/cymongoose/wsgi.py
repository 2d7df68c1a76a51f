"""A WSGI (PEP 3333) server on the cymongoose event loop.

The poll thread parses requests (in C), builds the environ and hands it to a pool of
worker threads, which run the application.  A worker sends the finished response back with
one ``Manager.wakeup()``: our wakeup carries any payload size, in order (SPEC Decision 8),
so a response is one message and the poll thread writes it with one ``send()`` and
``http_end()``.  Responses that are long or produced piece by piece stream through a small
bounded queue per connection, which the poll thread drains as the socket takes the bytes::

    from cymongoose.wsgi import serve
    serve(app, "http://127.0.0.1:8000", workers=8)
"""

from __future__ import annotations

import io
import queue
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from ._mongoose import (
    MG_EV_CLOSE,
    MG_EV_HTTP_MSG,
    MG_EV_WAKEUP,
    MG_EV_WRITE,
    Connection,
    HttpMessage,
    Manager,
)

__all__ = ["FileWrapper", "WSGIServer", "serve"]

_SPOOL_BODY = 1 << 20  # request bodies above this go to a temporary file
_STREAM_BATCH = 256 << 10  # a streamed body is queued in pieces of about this size
_STREAM_QUEUE = 16  # pieces queued per connection before the worker waits
_SEND_HIWAT = 1 << 20  # stop draining a stream while this much waits in the send buffer
_INLINE_MAX = 1 << 20  # responses up to this size go out as one message

# Wakeup payload kinds (first byte).
_INLINE = 73  # b"I": a whole response
_DRAIN = 68  # b"D": a stream has pieces queued
_ABORT = 88  # b"X": the response failed after its head went out: close

_ERROR_RESPONSE = (
    b"IHTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 22\r\n\r\nInternal Server Error\n"
)

_END = object()  # end of a stream
_CLOSE = object()  # end of a stream, then close the connection


class FileWrapper:
    """``wsgi.file_wrapper``: iterate a file-like object in blocks; ``close()`` closes it."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read, size = self.filelike.read, self.blksize
        while True:
            data = read(size)
            if not data:
                return
            yield data


def _path_info(path: str) -> str:
    """PEP 3333: PATH_INFO is the percent-decoded path, its bytes as latin-1."""
    if "%" not in path and path.isascii():
        return path
    raw = path.encode("utf-8", "surrogateescape")
    return unquote_to_bytes(raw).decode("latin-1")


def _request_closes(environ: dict[str, Any]) -> bool:
    """Does the request end its connection (RFC 9112 9.3: "close" among the Connection
    options, or HTTP/1.0 without "keep-alive")?  The core's rule, seen from the environ."""
    options = {o.strip().lower() for o in environ.get("HTTP_CONNECTION", "").split(",")}
    if "close" in options:
        return True
    return environ["SERVER_PROTOCOL"] == "HTTP/1.0" and "keep-alive" not in options


def _build_environ(
    hm: HttpMessage, conn: Connection, server_name: str, server_port: int | str, root_path: str = ""
) -> dict[str, Any]:
    """The PEP 3333 environ of the request `hm` (valid only during the handler call)."""
    path = _path_info(hm.uri)
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    remote = conn.remote_addr or ("", 0, False)
    body = hm.body_bytes
    if len(body) > _SPOOL_BODY:
        stream: Any = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BODY)  # noqa: SIM115 - the app reads it
        stream.write(body)
        stream.seek(0)
    else:
        stream = io.BytesIO(body)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": hm.method,
        "SCRIPT_NAME": root_path,
        "PATH_INFO": path,
        "QUERY_STRING": hm.query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": hm.proto,
        "REMOTE_ADDR": remote[0],
        "REMOTE_PORT": str(remote[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if conn.is_tls else "http",
        "wsgi.input": stream,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        # wsgi.input ends where the body ends (the extension gunicorn, Werkzeug and
        # mod_wsgi share): Flask reads a chunked body whole, as under gunicorn.
        "wsgi.input_terminated": True,
    }
    for name, value in hm.headers():
        key = name.upper().replace("-", "_")
        if key == "TRANSFER_ENCODING":
            # The body was de-chunked: as RFC 9112 7.1.3 decodes it, "chunked" goes and
            # Content-Length comes, so apps that read CONTENT_LENGTH bytes (Django) see it.
            environ["CONTENT_LENGTH"] = str(len(body))
            continue
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            environ[key] = value
            continue
        if "_" in name:
            continue  # X_Forwarded_For must not pass for X-Forwarded-For (spoofing)
        key = "HTTP_" + key
        old = environ.get(key)
        # RFC 9110 5.3: repeated fields join with commas (cookies with "; ", RFC 6265 5.4).
        environ[key] = (
            value if old is None else old + ("; " if key == "HTTP_COOKIE" else ", ") + value
        )
    return environ


class _Stream:
    """A response streamed from a worker to the poll thread, through a bounded queue."""

    __slots__ = ("closed", "pieces")

    def __init__(self) -> None:
        self.pieces: queue.Queue[Any] = queue.Queue(_STREAM_QUEUE)
        self.closed = False  # the connection went away: the worker stops


class _Response:
    """What one worker knows about the response it is producing."""

    __slots__ = ("chunked", "close", "head", "headers", "sent", "status")

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.head = b""
        self.sent = False  # the head went to the poll thread
        self.chunked = False
        self.close = False


class WSGIServer:
    """Serve a WSGI application; ``workers`` threads run it.

    ``error_handler(exc)`` receives exceptions of the application (else they are printed
    to ``wsgi.errors``) and of the server's handler; ``stream_timeout`` (s) is how long a
    worker waits for a client that does not read a streamed response before giving up.
    """

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        workers: int = 4,
        error_handler: Callable[[BaseException], object] | None = None,
        stream_timeout: float = 5.0,
        *,
        root_path: str = "",
        multiprocess: bool = False,
        access_log: Callable[[str], object] | None = None,
    ) -> None:
        self.app = app
        self.error_handler = error_handler
        self.manager = Manager(self._event_handler, enable_wakeup=True, error_handler=error_handler)
        self._stash: dict[int, bytes] = {}  # kept for code that looks: wakeups need no stash here
        self._streams: dict[int, _Stream] = {}
        self._stream_timeout = stream_timeout
        self._root_path = root_path.rstrip("/")
        self._multiprocess = multiprocess
        self._access_log = access_log
        self._listeners: list[Connection] = []
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._worker, name=f"cymongoose-wsgi-{i}", daemon=True)
            for i in range(max(1, int(workers)))
        ]
        for t in self._threads:
            t.start()
        self._stopping = False
        self._closed = False

    # ---- the poll thread ------------------------------------------------------------------

    def listen(self, url: str = "http://127.0.0.1:8000", **options: Any) -> Connection:
        """Listen on ``url`` (``Manager.listen`` options such as ``max_body`` pass on)."""
        listener = self.manager.listen(url, **options)
        self._listeners.append(listener)
        return listener

    # Both handlers are plain chains of event tests, so the loop calls them only for these
    # events (see cymongoose._interest): a connection that streams switches to the second
    # one, which also wants MG_EV_WRITE to refill its send buffer as the socket drains.
    def _event_handler(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            self._on_request(conn, data)
        elif ev == MG_EV_WAKEUP:
            self._on_wakeup(conn, data)
        elif ev == MG_EV_CLOSE:
            self._on_close(conn)

    def _stream_handler(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == MG_EV_WAKEUP:
            self._on_wakeup(conn, data)
        elif ev == MG_EV_WRITE:
            self._drain(conn)
        elif ev == MG_EV_CLOSE:
            self._on_close(conn)

    def _on_request(self, conn: Connection, hm: HttpMessage) -> None:
        local = conn.local_addr or ("", 0, False)
        environ = _build_environ(hm, conn, local[0], local[1], self._root_path)
        if self._multiprocess:
            environ["wsgi.multiprocess"] = True
        self._jobs.put((conn.id, environ))

    def _on_wakeup(self, conn: Connection, data: bytes) -> None:
        kind = data[0] if data else 0
        if kind == _INLINE:
            conn.send(memoryview(data)[1:])
            conn.http_end()
        elif kind == _DRAIN:
            if conn.id in self._streams:  # else a late D after the stream ended
                conn.set_handler(self._stream_handler)
                self._drain(conn)
        elif kind == _ABORT:
            conn.close()

    def _drain(self, conn: Connection) -> None:
        """Move queued pieces of the stream into the send buffer while it has room."""
        stream = self._streams.get(conn.id)
        if stream is None:
            return
        pieces = stream.pieces
        while conn.send_len < _SEND_HIWAT:
            try:
                piece = pieces.get_nowait()
            except queue.Empty:
                return
            if piece is _END or piece is _CLOSE:
                del self._streams[conn.id]
                conn.set_handler(None)
                if piece is _CLOSE:
                    conn.drain()
                else:
                    conn.http_end()
                return
            conn.send(piece)

    def _on_close(self, conn: Connection) -> None:
        stream = self._streams.pop(conn.id, None)
        if stream is not None:
            stream.closed = True
            try:  # unblock a worker waiting for room
                while True:
                    stream.pieces.get_nowait()
            except queue.Empty:
                pass

    # ---- the worker threads ---------------------------------------------------------------

    def _worker(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                self._run_app(*job)
            except RuntimeError:
                # wakeup() after close(): the server stopped while the app ran.
                if not self._closed:
                    raise

    def _report(self, exc: BaseException, environ: dict[str, Any]) -> None:
        if self.error_handler is not None:
            try:
                self.error_handler(exc)
                return
            except Exception:  # noqa: BLE001
                pass
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=environ["wsgi.errors"])

    def _run_app(self, conn_id: int, environ: dict[str, Any]) -> None:
        resp = _Response()
        out: list[bytes] = []

        def write(data: bytes) -> None:
            if resp.status is None:
                raise AssertionError("write() before start_response()")
            out.append(bytes(data))

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            if exc_info is not None:
                try:
                    if resp.sent:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif resp.status is not None:
                raise AssertionError("start_response() called twice without exc_info")
            resp.status = status
            resp.headers = headers
            return write

        result: Any = None
        try:
            result = self.app(environ, start_response)
            self._respond(conn_id, environ, resp, result, out)
        except Exception as exc:  # noqa: BLE001 - PEP 3333: the server answers 500 and goes on
            self._report(exc, environ)
            wake = self.manager.wakeup
            if not resp.sent:
                wake(conn_id, _ERROR_RESPONSE)
            else:
                self._end_stream(conn_id, abort=True)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:  # noqa: BLE001
                    self._report(exc, environ)
            if self._access_log is not None and resp.status is not None:
                self._access_log(
                    f'{environ["REMOTE_ADDR"]} "{environ["REQUEST_METHOD"]} {environ["PATH_INFO"]} '
                    f'{environ["SERVER_PROTOCOL"]}" {resp.status[:3]}'
                )

    def _respond(
        self, conn_id: int, environ: dict[str, Any], resp: _Response, result: Any, out: list[bytes]
    ) -> None:
        head_only = environ["REQUEST_METHOD"] == "HEAD"
        if type(result) is list or type(result) is tuple:
            # The common case: the whole body at once.
            out.extend(result)
            if resp.status is None:
                raise RuntimeError("the application returned without calling start_response()")
            total = sum(map(len, out))
            if total <= _INLINE_MAX:
                self._send_whole(conn_id, environ, resp, out, total, head_only)
                return
            it: Iterator[bytes] = iter(())
        else:
            it = iter(result)
            # One piece then the end (a typical generator body): still one message.
            first = next(it, None)
            if first is not None:
                out.append(first)
                second = next(it, None)
                if second is None:
                    if resp.status is None:
                        raise RuntimeError(
                            "the application returned without calling start_response()"
                        )
                    total = sum(map(len, out))
                    self._send_whole(conn_id, environ, resp, out, total, head_only)
                    return
                out.append(second)
            if resp.status is None:
                raise RuntimeError("the application returned without calling start_response()")
        self._send_stream(conn_id, environ, resp, out, it, head_only)

    def _head(self, environ: dict[str, Any], resp: _Response, length: int | None) -> bytes:
        """Status line and header block; adds Content-Type/-Length or chunked framing."""
        status = resp.status or "500 Internal Server Error"
        code = int(status[:3])
        lines = [f"HTTP/1.1 {status}\r\n"]
        has_type = has_length = has_conn = False
        for name, value in resp.headers:
            lname = name.lower()
            if lname == "content-length":
                has_length = True
            elif lname == "content-type":
                has_type = True
            elif lname == "connection":
                has_conn = True
                resp.close = resp.close or value.lower() == "close"
            lines.append(f"{name}: {value}\r\n")
        bodiless = code < 200 or code == 204 or code == 304
        if not has_type and not bodiless:
            lines.append("Content-Type: text/plain\r\n")
        if not has_length and not bodiless:
            if length is not None:
                lines.append(f"Content-Length: {length}\r\n")
            elif environ["SERVER_PROTOCOL"] == "HTTP/1.1":
                lines.append("Transfer-Encoding: chunked\r\n")
                resp.chunked = True
            else:
                resp.close = True  # HTTP/1.0: the end of the body is the end of the connection
        # RFC 9112 9.6: a response after which the connection closes says so (the
        # request asked for it, or the body ends with the connection).
        if not has_conn and code >= 200 and (resp.close or _request_closes(environ)):
            lines.append("Connection: close\r\n")
        lines.append("\r\n")
        text = "".join(lines)
        # A CR or LF inside a name or value would split the response (header injection):
        # each line ends with the only CR LF it may hold.
        if text.count("\n") != len(lines) or text.count("\r") != len(lines):
            raise ValueError("response header contains CR or LF")
        return text.encode("latin-1")

    def _send_whole(
        self,
        conn_id: int,
        environ: dict[str, Any],
        resp: _Response,
        out: list[bytes],
        total: int,
        head_only: bool,
    ) -> None:
        head = self._head(environ, resp, total)
        resp.sent = True
        if resp.close:
            # The response asks for the connection to end: stream path closes after it.
            stream = _Stream()
            self._streams[conn_id] = stream
            self._put(conn_id, stream, head + (b"" if head_only else b"".join(out)))
            self._put(conn_id, stream, _CLOSE)
            return
        if head_only:
            self.manager.wakeup(conn_id, b"I" + head)
        else:
            self.manager.wakeup(conn_id, b"".join((b"I", head, *out)))

    def _send_stream(
        self,
        conn_id: int,
        environ: dict[str, Any],
        resp: _Response,
        out: list[bytes],
        rest: Iterator[bytes],
        head_only: bool,
    ) -> None:
        head = self._head(environ, resp, None)
        resp.sent = True
        stream = _Stream()
        self._streams[conn_id] = stream
        chunked = resp.chunked and not head_only
        batch = [head]
        size = len(head)

        def add(piece: bytes) -> None:
            nonlocal size
            if chunked:
                batch.append(b"%x\r\n" % len(piece))
                batch.append(piece)
                batch.append(b"\r\n")
            else:
                batch.append(piece)
            size += len(piece)

        # What is already there goes in batches; then each piece the iterable produces
        # goes out as it comes (a slow generator is a live stream, not a buffer).
        for piece in out:
            if piece and not head_only:
                add(piece)
            if size >= _STREAM_BATCH:
                if not self._put(conn_id, stream, b"".join(batch)):
                    return
                batch, size = [], 0
        for piece in rest:
            if not piece or head_only:
                continue
            add(piece)
            if not self._put(conn_id, stream, b"".join(batch)):
                return
            batch, size = [], 0
        if chunked:
            batch.append(b"0\r\n\r\n")
        if batch:
            self._put(conn_id, stream, b"".join(batch))
        self._put(conn_id, stream, _CLOSE if resp.close else _END)

    def _put(self, conn_id: int, stream: _Stream, piece: Any) -> bool:
        """Queue a piece and tell the poll thread; False once the client is gone."""
        deadline = time.monotonic() + self._stream_timeout
        while not stream.closed:
            try:
                stream.pieces.put(piece, timeout=0.1)
            except queue.Full:
                if time.monotonic() >= deadline:
                    stream.closed = True
                    self.manager.wakeup(conn_id, b"X")  # a client that does not read: give up
                    return False
                continue
            self.manager.wakeup(conn_id, b"D")
            return True
        return False

    def _end_stream(self, conn_id: int, abort: bool) -> None:
        stream = self._streams.get(conn_id)
        if stream is not None:
            stream.closed = True
        self.manager.wakeup(conn_id, b"X" if abort else b"D")

    # ---- running --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run()`` to finish (from a signal handler or another thread)."""
        self._stopping = True
        try:
            self.manager.wakeup(self.manager.wakeup_id, b"")
        except RuntimeError:
            pass

    def run(self, poll_ms: int = 100, *, graceful_timeout: float = 10.0) -> None:
        """Serve until SIGINT or SIGTERM, then drain: stop accepting, let the requests in
        progress finish (at most ``graceful_timeout`` s) and close."""

        def on_signal(signum: int, frame: Any) -> None:
            self.stop()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)
        try:
            while not self._stopping:
                self.manager.poll(poll_ms)
            self.drain(graceful_timeout)
        finally:
            self.close()

    def drain(self, timeout: float) -> bool:
        """Stop accepting, then poll until the workers are idle and every response is
        out, at most ``timeout`` s.  Returns True if everything finished."""
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        manager = self.manager
        while time.monotonic() < deadline:
            manager.poll(10)
            if any(t.is_alive() for t in self._threads) or self._streams:
                continue
            if all(c.send_len == 0 for c in manager.connections):
                return True
        return False

    def close(self) -> None:
        """Close every connection and stop the workers; idempotent."""
        self._closed = True
        if any(t.is_alive() for t in self._threads):
            for _ in self._threads:
                self._jobs.put(None)
        for stream in self._streams.values():
            stream.closed = True
        self._streams.clear()
        self.manager.close()


def serve(
    app: Callable[..., Iterable[bytes]],
    url: str = "http://127.0.0.1:8000",
    workers: int = 4,
    stream_timeout: float = 5.0,
) -> None:
    """Serve ``app`` on ``url`` until SIGINT or SIGTERM."""
    server = WSGIServer(app, workers=workers, stream_timeout=stream_timeout)
    server.listen(url)
    server.run()
