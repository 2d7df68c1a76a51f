"""Shared fixtures and helpers for the cymongoose pytest suite.

Everything here is bounded: every loop has both an iteration cap and a
deadline, every socket has a timeout, and tests only talk to 127.0.0.1 / ::1.

Helpers are plain functions so test modules can ``from conftest import ...``;
the most used ones are also exposed as fixtures.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import cymongoose
from cymongoose import Manager

HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 5.0

# urllib must never go through a proxy configured in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------
# Waiting


def wait_until(cond: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT,
               interval: float = 0.005) -> Any:
    """Call ``cond`` until it is truthy or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    max_iter = int(timeout / max(interval, 0.001)) + 10
    value = cond()
    for _ in range(max_iter):
        if value or time.monotonic() >= deadline:
            break
        time.sleep(interval)
        value = cond()
    return value


def poll_until(mgr: Manager, cond: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT,
               step_ms: int = 10) -> Any:
    """Drive ``mgr.poll(step_ms)`` on this thread until ``cond()`` is truthy.

    Returns the last value of ``cond()`` (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    max_iter = int(timeout * 1000 / max(step_ms, 1)) * 4 + 100
    value = cond()
    for _ in range(max_iter):
        if value or time.monotonic() >= deadline:
            break
        mgr.poll(step_ms)
        value = cond()
    return value


def poll_for(mgr: Manager, seconds: float, step_ms: int = 10) -> None:
    """Poll for (about) ``seconds`` regardless of what happens."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds * 1000 / max(step_ms, 1)) * 4 + 10):
        if time.monotonic() >= deadline:
            break
        mgr.poll(step_ms)


# --------------------------------------------------------------------------
# Background polling


class Server:
    """Polls a Manager on a background thread until stopped (or ``max_seconds``)."""

    def __init__(self, mgr: Manager, step_ms: int = 10, max_seconds: float = 60.0):
        self.mgr = mgr
        self.step_ms = step_ms
        self.max_seconds = max_seconds
        self.stop_flag = threading.Event()
        self.errors: list[BaseException] = []
        self.iterations = 0
        self.thread = threading.Thread(target=self._run, name="cm-serve", daemon=True)

    def _run(self) -> None:
        # Bounded by time, not by a count of iterations: a busy server polls far
        # more often than every step_ms, and a count cap would stop it silently.
        deadline = time.monotonic() + self.max_seconds
        while not self.stop_flag.is_set():
            if time.monotonic() >= deadline:
                self.errors.append(TimeoutError(f"server polled for {self.max_seconds} s "
                                                "without being stopped"))
                break
            try:
                self.mgr.poll(self.step_ms)
            except BaseException as exc:  # noqa: BLE001 - reported in stop()
                self.errors.append(exc)
                break
            self.iterations += 1

    def start(self) -> Server:
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_flag.set()
        with contextlib.suppress(Exception):
            if self.mgr.wakeup_id:
                self.mgr.wakeup(self.mgr.wakeup_id, b"")
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "poll thread did not stop"
        if self.errors:
            raise self.errors[0]


@contextlib.contextmanager
def serve(mgr: Manager, step_ms: int = 10, max_seconds: float = 60.0) -> Iterator[Server]:
    """Poll ``mgr`` in a background thread for the duration of the ``with`` block."""
    server = Server(mgr, step_ms=step_ms, max_seconds=max_seconds).start()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------
# Listening / ports


def listen_free(mgr: Manager, scheme: str = "http", handler: Any = None,
                host: str = HOST, **kwargs: Any) -> tuple[Any, int]:
    """Listen on an OS-chosen port; return ``(listener, port)``."""
    conn = mgr.listen(f"{scheme}://{host}:0", handler, **kwargs)
    port = conn.local_addr[1]
    assert isinstance(port, int) and port > 0
    return conn, port


def free_port(host: str = HOST) -> int:
    """A port that nothing listens on right now (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_accepts(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def have_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# Clients


def http_get(url: str, data: bytes | None = None, timeout: float = DEFAULT_TIMEOUT,
             method: str | None = None, headers: dict[str, str] | None = None):
    """urllib request without proxies; returns ``(status, headers, body)``.

    HTTP error statuses are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def raw_connect(port: int, host: str = HOST, timeout: float = DEFAULT_TIMEOUT) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def recv_exact(sock: socket.socket, n: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Receive exactly ``n`` bytes (or fewer if the peer closes / time runs out)."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    got = 0
    for _ in range(n // 1024 + 100000):
        if got >= n:
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - got, 1 << 20))
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket, timeout: float = DEFAULT_TIMEOUT,
                   limit: int = 64 << 20) -> tuple[bytes, bool]:
    """Read until EOF; return ``(data, saw_eof)``."""
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    total = 0
    for _ in range(100000):
        left = deadline - time.monotonic()
        if left <= 0 or total > limit:
            return b"".join(chunks), False
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            return b"".join(chunks), False
        except ConnectionResetError:
            return b"".join(chunks), True
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks), False


_CL_RE = re.compile(rb"^content-length:[ \t]*(\d+)[ \t]*\r?$", re.I | re.M)


class HttpReader:
    """Reads complete HTTP/1.1 responses (Content-Length framed) from a raw socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def _fill(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(1 << 20)
        except (TimeoutError, ConnectionResetError):
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_response(self, timeout: float = DEFAULT_TIMEOUT) -> bytes | None:
        """One complete raw response (head + body) or None on EOF/timeout."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if not self._fill(deadline):
                return None
        else:
            return None
        head = self.buf[: end + 4]
        m = _CL_RE.search(head)
        length = int(m.group(1)) if m else 0
        total = end + 4 + length
        for _ in range(100000):
            if len(self.buf) >= total:
                break
            if not self._fill(deadline):
                return None
        raw, self.buf = self.buf[:total], self.buf[total:]
        return raw


def split_response(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """``(status_line, [(name, value), ...], body)`` of a raw response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name, value.strip(b" \t")))
    return lines[0], headers, body


# --------------------------------------------------------------------------
# Recording handler


class Recorder:
    """A handler that records ``(conn, ev, data)``; ``on`` maps events to callbacks.

    Message views are only valid inside the handler, so ``data`` is stored as is
    (tests that need view fields copy them in an ``on`` callback)."""

    def __init__(self, on: dict[int, Callable[..., Any]] | None = None,
                 skip_poll: bool = True):
        self.events: list[tuple[Any, int, Any]] = []
        self.on = on or {}
        self.skip_poll = skip_poll
        self.lock = threading.Lock()

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        if not (self.skip_poll and ev == cymongoose.MG_EV_POLL):
            with self.lock:
                self.events.append((conn, ev, data))
        cb = self.on.get(ev)
        if cb is not None:
            cb(conn, ev, data)

    def evs(self, conn: Any = None, exclude: tuple[int, ...] = ()) -> list[int]:
        with self.lock:
            return [e for c, e, _ in self.events
                    if (conn is None or c is conn) and e not in exclude]

    def count(self, ev: int, conn: Any = None) -> int:
        return self.evs(conn).count(ev)

    def conns(self, ev: int) -> list[Any]:
        with self.lock:
            return [c for c, e, _ in self.events if e == ev]


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def make_manager() -> Iterator[Callable[..., Manager]]:
    """Factory for Managers that are always closed at teardown."""
    created: list[Manager] = []

    def factory(*args: Any, **kwargs: Any) -> Manager:
        mgr = Manager(*args, **kwargs)
        created.append(mgr)
        return mgr

    yield factory
    for mgr in created:
        mgr.close()


@pytest.fixture
def manager(make_manager) -> Manager:
    """A plain Manager (no default handler, wakeup enabled), closed at teardown."""
    return make_manager(enable_wakeup=True)


@pytest.fixture
def ipv6() -> None:
    if not have_ipv6():
        pytest.skip("IPv6 loopback (::1) is not available")


@pytest.fixture
def curl() -> str:
    import shutil

    path = shutil.which("curl")
    if not path:
        pytest.skip("curl is not installed")
    return path


class LoggedProcess:
    """A subprocess whose output lines a thread collects, so a test can wait for a line
    (a server's "listening on ...") without blocking on the pipe.  `stream` is the pipe
    to read: proc.stdout or proc.stderr."""

    def __init__(self, proc: subprocess.Popen[str], stream: Any) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._stream = stream
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line)

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 20) -> list[re.Match[str]]:
        """The first `count` matches of `pattern` in the output, waiting at most `timeout`
        s (less if the process exits); AssertionError with the output otherwise."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in map(rx.search, list(self.lines)) if m]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no {pattern!r} x{count} in:\n{''.join(self.lines)}")
