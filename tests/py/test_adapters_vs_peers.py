"""Our command line against the servers our users run today (issue 11, "tried as a new user
would"): examples/flask_app.py under gunicorn (gthread) and under
`python -m cymongoose wsgi`, examples/starlette_app.py under uvicorn and under
`python -m cymongoose asgi`, each with 1 and 2 workers, get the same requests, and the
answers are compared: status and reason, HTTP version, body bytes, and every header the
app or the server sets except `date` and `server`.

Where we legitimately answer differently, the difference is written down in KNOWN_*
below with the reason, and asserted: a new difference, or a known one that went away,
fails the test.

Each server is a subprocess in its own session, started once per (app, server, workers),
stopped with SIGTERM (its exit code is compared too) and killed with its workers if it
does not stop; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LoggedProcess

httpx = pytest.importorskip("httpx")
pytest.importorskip("flask")
pytest.importorskip("starlette")
pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn")
pytest.importorskip("websockets")

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START_TIMEOUT = 30.0  # s for a server and its workers to come up on a loaded machine
IO_TIMEOUT = 10.0
IGNORED = {"date", "server"}  # differ by nature between two servers

# What says "ready" in each server's log, and how many times (once per worker, or once).
READY = {
    "gunicorn": (r"Listening at: (http://\S+)", r"Booting worker with pid", True),
    "uvicorn": (r"Uvicorn running on (http://\S+)", r"Application startup complete", True),
    "cymongoose": (r"listening on (http://\S+) \(pid \d+\)", r"listening on http", True),
}


def command(server: str, app: str, workers: int) -> list[str]:
    py = sys.executable
    if server == "gunicorn":
        return [
            py, "-m", "gunicorn", "-k", "gthread", "-w", str(workers), "--threads", "4",
            "-b", "127.0.0.1:0", "--graceful-timeout", "5", "--no-control-socket", app,
        ]  # fmt: skip
    if server == "uvicorn":
        return [
            py, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "0",
            "--workers", str(workers), "--timeout-graceful-shutdown", "5",
        ]  # fmt: skip
    kind = "wsgi" if app.startswith("flask") else "asgi"
    return [
        py, "-m", "cymongoose", kind, app, "--listen", "http://127.0.0.1:0",
        "--workers", str(workers), "--threads", "4", "--graceful-timeout", "5",
    ]  # fmt: skip


class Server(LoggedProcess):
    """One server subprocess (a session of its own, so its workers die with it)."""

    def __init__(self, server: str, app: str, workers: int) -> None:
        self.name = server
        proc = subprocess.Popen(
            command(server, app, workers),
            cwd=EXAMPLES,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        super().__init__(proc, proc.stdout)
        url_rx, ready_rx, _ = READY[server]
        self.url = self.wait_log(url_rx, 1, START_TIMEOUT)[0].group(1)
        self.wait_log(ready_rx, workers, START_TIMEOUT)

    def stop(self) -> int | None:
        """SIGTERM, then the exit code; SIGKILL to the whole session if it hangs."""
        rc = None
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # workers left behind, if any
            if self.proc.poll() is None:
                self.proc.wait(10)
            self._reader.join(5)
        return rc


# ---- what we ask, and how an answer is written down ----------------------------------


@dataclasses.dataclass
class Answer:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]  # in order, lowercased names, minus IGNORED
    body: bytes

    def without(self, *names: str) -> Answer:
        return dataclasses.replace(self, headers=[h for h in self.headers if h[0] not in names])

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


def normalize(base: str, status: int, reason: str, version: str, raw_headers, body: bytes):
    """What may differ between two runs of one app: the port in absolute URLs, the pid
    the apps' "/" reports, and so the length of that body (checked against the body
    before it is replaced)."""
    port_free = base.encode()
    body_n = re.sub(rb'"pid": ?\d+', b'"pid":PID', body.replace(port_free, b"BASE"))
    headers = []
    for k, v in raw_headers:
        k = k.lower()
        if k in IGNORED:
            continue
        v = v.replace(base, "BASE")
        if k == "content-length" and v == str(len(body)):
            v = "len(body)"
        if k == "allow":  # Werkzeug joins a set: its order changes with the hash seed
            v = ", ".join(sorted(v.split(", ")))
        headers.append((k, v))
    # Header order is free (RFC 9110 section 5.3) except among fields of one name, which a
    # stable sort keeps (two Set-Cookie stay in the app's order).
    return Answer(status, reason, version, sorted(headers, key=lambda h: h[0]), body_n)


def http_answer(base: str, r: httpx.Response) -> Answer:
    return normalize(
        base,
        r.status_code,
        r.reason_phrase,
        r.http_version,
        [(k.decode(), v.decode()) for k, v in r.headers.raw],
        r.content,
    )


def raw_answer(base: str, request: bytes) -> Answer:
    """A request written by hand on a connection of its own, the answer read until the
    server closes it (HTTP/1.0 and Connection: close requests)."""
    host, port = base.removeprefix("http://").split(":")
    data = b""
    with socket.create_connection((host, int(port)), timeout=IO_TIMEOUT) as s:
        s.sendall(request)
        deadline = time.monotonic() + IO_TIMEOUT
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        else:
            raise AssertionError(f"the server never closed: {data[:300]!r}")
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, reason = (status_line.split(" ", 2) + [""])[:3]
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
    return normalize(base, int(status), reason, version, headers, body)


def chunks() -> Iterator[bytes]:
    yield b"sent "
    yield b"in "
    yield b"chunks"  # no Content-Length: httpx sends Transfer-Encoding: chunked


HTTP_REQUESTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "GET /": ("GET", "/", {}),
    "HEAD /": ("HEAD", "/", {}),
    "GET /?q=1 with a custom header": ("GET", "/?q=1", {"headers": {"X-Custom": "yes"}}),
    "POST /echo binary": ("POST", "/echo", {"content": b"\x00binary\xff" * 3}),
    "POST /echo 1 MB": ("POST", "/echo", {"content": bytes(range(256)) * 4096}),
    "POST /echo chunked": ("POST", "/echo", {"content": chunks()}),
    "POST /echo empty": ("POST", "/echo", {"content": b""}),
    "GET /echo (wrong method)": ("GET", "/echo", {}),
    "GET /stream": ("GET", "/stream", {}),
    "HEAD /stream": ("HEAD", "/stream", {}),
    "OPTIONS /echo": ("OPTIONS", "/echo", {}),
    "GET /old (redirect)": ("GET", "/old", {}),
    "GET /stream/ (slash)": ("GET", "/stream/?a=b%20c", {}),
    "GET /missing": ("GET", "/missing", {}),
    "GET /boom": ("GET", "/boom", {}),
    "GET / after the error": ("GET", "/", {}),
}
RAW_REQUESTS: dict[str, bytes] = {
    "HTTP/1.0 GET /stream": b"GET /stream HTTP/1.0\r\nHost: h\r\n\r\n",
    "HTTP/1.1 GET / Connection: close": b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
}
NAMES = [*HTTP_REQUESTS, *RAW_REQUESTS, "GET /ticks (endless)"]


def client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, timeout=IO_TIMEOUT, trust_env=False)


def ask_ticks(base: str) -> Answer:
    """The endless /ticks stream: its first two events must arrive while the app is still
    producing (a server that buffered the response whole would never send them: the read
    times out and the test fails). Then the client goes away."""
    want = b"data: tick 0\n\ndata: tick 1\n\n"
    got = b""
    with client(base) as c, c.stream("GET", "/ticks") as r:
        # Each read waits IO_TIMEOUT at most, and each brings at least one byte.
        for piece in r.iter_bytes():
            got += piece
            if len(got) >= len(want):
                break
        headers = [(k.decode(), v.decode()) for k, v in r.headers.raw]
        return normalize(base, r.status_code, r.reason_phrase, r.http_version, headers, got)


def ask_http(base: str) -> dict[str, Answer]:
    out = {}
    # One keep-alive connection for the lot, as a browser or a proxy would; but a new one
    # after the app error: uvicorn closes the connection once an app has raised, without
    # saying so (no Connection: close), and a request sent meanwhile is reset.
    c = client(base)
    try:
        for name, (method, path, kw) in HTTP_REQUESTS.items():
            if "content" in kw and not isinstance(kw["content"], bytes):
                kw = dict(kw, content=chunks())  # a fresh generator for every server
            try:
                out[name] = http_answer(base, c.request(method, path, **kw))
            except httpx.HTTPError as e:
                raise AssertionError(f"{name}: {e!r}") from e
            if name == "GET /boom":
                c.close()
                c = client(base)
    finally:
        c.close()
    for name, request in RAW_REQUESTS.items():
        out[name] = raw_answer(base, request)
    out["GET /ticks (endless)"] = ask_ticks(base)
    return out


async def ask_ws(base: str) -> dict[str, Any]:
    ws_url = base.replace("http://", "ws://")
    out: dict[str, Any] = {}
    async with connect(ws_url + "/ws", subprotocols=["echo"], open_timeout=IO_TIMEOUT) as ws:
        resp = ws.response
        # The client checked Sec-WebSocket-Accept (it depends on the random key).
        headers = {k.lower(): v for k, v in resp.headers.raw_items() if k.lower() not in IGNORED}
        headers["sec-websocket-accept"] = "checked"
        out["handshake"] = (resp.status_code, sorted(headers.items()))
        out["subprotocol"] = ws.subprotocol
        echoed = []
        for text in ("one", "two", "é" * 5000):
            await ws.send(text)
            echoed.append(await asyncio.wait_for(ws.recv(), IO_TIMEOUT))
        out["echo"] = echoed
        await ws.send("bye")
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
        await asyncio.wait_for(ws.wait_closed(), IO_TIMEOUT)
        out["close"] = (ws.close_code, ws.close_reason)
    async with connect(ws_url + "/ws", open_timeout=IO_TIMEOUT, compression=None) as ws:
        out["no subprotocol asked"] = ws.subprotocol
        await ws.send("plain")
        out["plain"] = await asyncio.wait_for(ws.recv(), IO_TIMEOUT)
    try:
        async with connect(ws_url + "/missing", open_timeout=IO_TIMEOUT):
            out["not a ws route"] = "accepted"
    except InvalidStatus as e:
        out["not a ws route"] = e.response.status_code
    return out


# ---- the runs ---------------------------------------------------------------------------


def run(server: str, app: str, workers: int, with_ws: bool) -> dict[str, Any]:
    srv = Server(server, app, workers)
    answers: dict[str, Any] = {}
    try:
        answers["http"] = ask_http(srv.url)
        if with_ws:
            answers["ws"] = asyncio.run(ask_ws(srv.url))
    except Exception as e:
        srv.stop()
        log = "".join(srv.lines)[-3000:]
        raise AssertionError(f"{server} {app} x{workers}: {e!r}\n{log}") from e
    answers["exit code"] = srv.stop()
    return answers


@pytest.fixture(scope="module", params=[1, 2], ids=["workers1", "workers2"])
def flask_runs(request) -> dict[str, Any]:
    runs = {s: run(s, "flask_app:app", request.param, False) for s in ("gunicorn", "cymongoose")}
    return dict(runs, workers=request.param)


@pytest.fixture(scope="module", params=[1, 2], ids=["workers1", "workers2"])
def starlette_runs(request) -> dict[str, Any]:
    runs = {s: run(s, "starlette_app:app", request.param, True) for s in ("uvicorn", "cymongoose")}
    return dict(runs, workers=request.param)


# ---- where we differ, on purpose --------------------------------------------------------

Known = Callable[[Answer], Answer]


def no_keep_alive_field(peer: Answer) -> Answer:
    """gunicorn adds `Connection: keep-alive` to every HTTP/1.1 response it keeps the
    connection of; we (like uvicorn) do not: HTTP/1.1 connections persist unless one side
    says close (RFC 9112 9.3), so the field says nothing."""
    assert peer.header("connection") == ["keep-alive"]
    return peer.without("connection")


def http11_to_http10(peer: Answer) -> Answer:
    """gunicorn answers an HTTP/1.0 request with an HTTP/1.0 status line; we (like uvicorn)
    send HTTP/1.1, the version RFC 9110 2.5 says a server SHOULD send (its highest, same
    major). The framing is HTTP/1.0's either way: no chunks, the body ends with the
    connection, Connection: close (compared)."""
    assert peer.version == "HTTP/1.0"
    return dataclasses.replace(peer, version="HTTP/1.1")


def head_says_chunked(peer: Answer) -> Answer:
    """HEAD of a streamed response: gunicorn sends neither Content-Length nor
    Transfer-Encoding; we send the Transfer-Encoding: chunked a GET would get, as RFC 9110
    9.3.2 asks (the same header fields as GET) and as uvicorn does. No body either way."""
    peer = no_keep_alive_field(peer)
    assert "transfer-encoding" not in dict(peer.headers) and peer.body == b""
    headers = sorted([*peer.headers, ("transfer-encoding", "chunked")], key=lambda h: h[0])
    return dataclasses.replace(peer, headers=headers)


KNOWN_FLASK: dict[str, Known] = {
    **dict.fromkeys([*HTTP_REQUESTS, "GET /ticks (endless)"], no_keep_alive_field),
    "HTTP/1.0 GET /stream": http11_to_http10,
    "HEAD /stream": head_says_chunked,
}
KNOWN_STARLETTE: dict[str, Known] = {}


def expected(known: dict[str, Known], name: str, peer: Answer) -> Answer:
    return known[name](peer) if name in known else peer


def ws_deflate_defaults(peer: dict[str, Any]) -> dict[str, Any]:
    """Both negotiate permessage-deflate (RFC 7692) with websockets' client offer; uvicorn
    asks for 4 KiB compression windows (server_/client_max_window_bits=12, to save memory
    per connection), we accept the offer as made (the default 32 KiB windows). Both valid;
    the messages compared below are the same."""
    status, headers = peer["handshake"]
    d = dict(headers)
    assert d["sec-websocket-extensions"] == (
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    )
    d["sec-websocket-extensions"] = "permessage-deflate"
    return dict(peer, handshake=(status, sorted(d.items())))


# ---- the comparisons --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_flask_same_answers_as_gunicorn(flask_runs, name):
    peer, ours = flask_runs["gunicorn"]["http"][name], flask_runs["cymongoose"]["http"][name]
    assert ours == expected(KNOWN_FLASK, name, peer)


@pytest.mark.parametrize("name", NAMES)
def test_starlette_same_answers_as_uvicorn(starlette_runs, name):
    peer, ours = starlette_runs["uvicorn"]["http"][name], starlette_runs["cymongoose"]["http"][name]
    assert ours == expected(KNOWN_STARLETTE, name, peer)


def test_starlette_websocket_same_as_uvicorn(starlette_runs):
    peer, ours = starlette_runs["uvicorn"]["ws"], starlette_runs["cymongoose"]["ws"]
    assert ours == ws_deflate_defaults(peer)


# The comparisons above could pass with two equally broken servers: pin what the example
# apps answer, so both sides are checked against the apps themselves.


def test_the_flask_app_answers_what_it_says(flask_runs):
    f = flask_runs["cymongoose"]["http"]
    assert f["GET /"].body == b'{"hello":"world","pid":PID}\n'
    assert f["POST /echo chunked"].body == b"sent in chunks"
    assert f["POST /echo 1 MB"].body == bytes(range(256)) * 4096
    assert f["POST /echo binary"].header("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert f["GET /stream"].body == b"".join(b"line %d\n" % i for i in range(5))
    assert f["GET /boom"].status == 500 and f["GET / after the error"].status == 200


def test_the_starlette_app_answers_what_it_says(starlette_runs):
    s = starlette_runs["cymongoose"]["http"]
    assert b"hello from the lifespan" in s["GET /"].body  # lifespan state reached the request
    assert s["POST /echo chunked"].body == b"sent in chunks"
    assert s["POST /echo 1 MB"].header("x-length") == [str(256 * 4096)]
    assert s["GET /stream"].header("transfer-encoding") == ["chunked"]
    assert s["GET /old (redirect)"].header("location") == ["BASE/"]
    w = starlette_runs["cymongoose"]["ws"]
    assert w["subprotocol"] == "echo" and w["close"] == (4000, "see you")
    assert w["echo"] == ["one", "two", "é" * 5000]


def test_sigterm_stops_gunicorn_and_us_cleanly(flask_runs):
    assert flask_runs["gunicorn"]["exit code"] == 0
    assert flask_runs["cymongoose"]["exit code"] == 0


def test_sigterm_stops_uvicorn_and_us_cleanly(starlette_runs):
    # One uvicorn process finishes its graceful shutdown (lifespan included), then raises
    # SIGTERM again against itself, so its status is "killed by SIGTERM"; with --workers its
    # supervisor exits 0. Ours is exit code 0, "stopped cleanly", as `--help` documents,
    # either way.
    one_process = starlette_runs["workers"] == 1
    assert starlette_runs["uvicorn"]["exit code"] == (-signal.SIGTERM if one_process else 0)
    assert starlette_runs["cymongoose"]["exit code"] == 0
