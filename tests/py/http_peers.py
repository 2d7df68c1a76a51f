"""Helpers shared by the HTTP peer tests (test_http_*.py): a cymongoose HTTP server
in a subprocess (so a test can watch its memory and prove it never crashed), and
h11 as a strict HTTP/1.1 client.

Everything is bounded: the subprocess exits by itself after ``max_seconds``, every
socket read has a deadline, and only 127.0.0.1 is used.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import h11

HOST = "127.0.0.1"

# The server run by spawn_server().  It answers /hello and /echo itself and
# serves everything else from its root directory with serve_dir(); SIGTERM (or
# max_seconds) stops Manager.run(), which closes everything and returns, so a
# clean exit is status 0 and a crash shows as a signal.
SERVER_CODE = r"""
import json, signal, sys
from cymongoose import MG_EV_HTTP_MSG, Manager

cfg = json.loads(sys.argv[1])
root = cfg.get("root")

def handler(conn, ev, data):
    if ev != MG_EV_HTTP_MSG:
        return
    if data.uri == "/hello":
        conn.reply(200, "hello world\n")
    elif data.uri == "/echo":
        conn.reply(200, data.body_bytes, {"Content-Type": "application/octet-stream"})
    elif root:
        conn.serve_dir(data, root)
    else:
        conn.reply(404, "no root\n")

mgr = Manager(handler)
lsn = mgr.listen("http://127.0.0.1:0", **cfg.get("limits", {}))
mgr.timer_add(int(cfg["max_seconds"] * 1000), lambda: signal.raise_signal(signal.SIGTERM))
print("PORT", lsn.local_addr[1], flush=True)
mgr.run(poll_ms=50)
print("BYE", flush=True)
"""


def _child_env() -> dict[str, str]:
    """The environment for a Python child that imports our extension.  Under
    scripts/asan-pytest.sh this interpreter has the ASan runtime preloaded but
    LD_PRELOAD is gone from os.environ (so that curl & co. run without it); a
    child that loads the sanitized extension needs it again, first."""
    env = dict(os.environ)
    if "LD_PRELOAD" in env:
        return env
    with contextlib.suppress(OSError), open("/proc/self/maps", encoding="ascii",
                                            errors="replace") as f:
        for line in f:
            path = line.split()[-1]
            if "/libasan.so" in path:
                env["LD_PRELOAD"] = path
                break
    return env


class ServerProc:
    """A running server subprocess (see spawn_server)."""

    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc = proc
        self.port = port

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kb(self) -> int:
        """VmRSS of the server process, in KiB."""
        with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit status (0: run() returned and close() ran)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
            raise AssertionError("server did not stop on SIGTERM") from None


@contextlib.contextmanager
def spawn_server(root: str | os.PathLike[str] | None = None, max_seconds: float = 120.0,
                 **limits: Any) -> Iterator[ServerProc]:
    """Run SERVER_CODE in a subprocess listening on 127.0.0.1; yields a ServerProc.

    ``limits`` are passed to ``Manager.listen`` (max_body=..., head_timeout_ms=...).
    On exit the server is stopped and must have exited cleanly."""
    cfg = {"root": os.fspath(root) if root is not None else None,
           "max_seconds": max_seconds, "limits": limits}
    proc = subprocess.Popen([sys.executable, "-c", SERVER_CODE, json.dumps(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_child_env())
    server = None
    try:
        line = proc.stdout.readline()  # the server prints its port first
        if not line.startswith("PORT "):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"server did not start: {line!r} {err[-2000:]}")
        server = ServerProc(proc, int(line.split()[1]))
        yield server
    finally:
        if server is not None:
            rc = server.stop()
            err = proc.stderr.read() if proc.stderr else ""
            assert rc == 0, f"server exited with {rc}: {err[-2000:]}"
        elif proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


# --------------------------------------------------------------------------
# h11 as a strict client


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=timeout)


def h11_read(sock: socket.socket, conn: h11.Connection, timeout: float = 5.0
             ) -> tuple[list[h11.InformationalResponse], h11.Response, bytes]:
    """Read one complete response with h11 (which raises RemoteProtocolError at the
    first byte that breaks RFC 9112).  Returns (1xx responses, response, body)."""
    deadline = time.monotonic() + timeout
    infos: list[h11.InformationalResponse] = []
    response = None
    body = bytearray()
    for _ in range(1_000_000):
        event = conn.next_event()
        if event is h11.NEED_DATA:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete response in time")
            sock.settimeout(left)
            try:
                conn.receive_data(sock.recv(1 << 16))  # b"": EOF
            except ConnectionResetError:
                conn.receive_data(b"")
            continue
        if isinstance(event, h11.InformationalResponse):
            infos.append(event)
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return infos, response, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            raise AssertionError("connection closed before the response ended")
        else:  # pragma: no cover - PAUSED or an unexpected event
            raise AssertionError(f"unexpected h11 event {event!r}")
    raise AssertionError("too many events")


def h11_send(sock: socket.socket, conn: h11.Connection, method: str, target: str,
             headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
    """Send one request through h11 (Host added; Content-Length for a body)."""
    hdrs = [("Host", "localhost")] + list(headers or [])
    names = {n.lower() for n, _ in hdrs}
    if body and "content-length" not in names and "transfer-encoding" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    data = conn.send(h11.Request(method=method, target=target, headers=hdrs))
    if body:
        data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    sock.sendall(data)


def header(resp: h11.Response | h11.InformationalResponse, name: str) -> str | None:
    """First header called ``name`` (h11 lowercases names), decoded, or None."""
    key = name.lower().encode()
    for k, v in resp.headers:
        if k == key:
            return v.decode("latin-1")
    return None


def h11_get(port: int, target: str, method: str = "GET",
            headers: list[tuple[str, str]] | None = None, body: bytes = b"",
            timeout: float = 5.0) -> tuple[h11.Response, bytes]:
    """One request on a new connection, read strictly with h11."""
    with connect(port, timeout) as sock:
        conn = h11.Connection(h11.CLIENT)
        h11_send(sock, conn, method, target, headers, body)
        _, resp, data = h11_read(sock, conn, timeout)
        return resp, data
