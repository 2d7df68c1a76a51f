"""The command line (python -m cymongoose): Flask and Starlette apps served through it and
exercised with httpx, --workers N with SO_REUSEPORT and its supervisor, signals, errors.

Every server is a subprocess that is always reaped; ports come from the OS (port 0)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LoggedProcess

httpx = pytest.importorskip("httpx")
pytest.importorskip("flask")
pytest.importorskip("starlette")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LISTEN = re.compile(r"listening on (\S+) \(pid (\d+)\)")


class Server(LoggedProcess):
    """A `python -m cymongoose ...` subprocess and what it logged."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cymongoose", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        super().__init__(proc, proc.stderr)

    @property
    def url(self) -> str:
        return self.wait_log(LISTEN.pattern)[0].group(1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._reader.join(5)


@contextlib.contextmanager
def serve(*args: str, cwd: Path = EXAMPLES) -> Iterator[Server]:
    server = Server(list(args), cwd)
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL if server.proc.poll() is None and False else signal.SIGTERM)


def run_cli(*args: str, cwd: Path = EXAMPLES) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cymongoose", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ---- apps -----------------------------------------------------------------------------


def test_flask_app_through_the_cli():
    with serve("wsgi", "flask_app:app", "--listen", "http://127.0.0.1:0", "--threads", "4") as s:
        with httpx.Client(base_url=s.url, timeout=10) as c:
            r = c.get("/")
            assert r.status_code == 200 and r.json()["hello"] == "world"
            r = c.post("/echo", content=b"\x00binary\xff")
            assert r.content == b"\x00binary\xff"
            assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
            r = c.get("/stream")
            assert r.text == "".join(f"line {i}\n" for i in range(5))
            assert c.get("/boom").status_code == 500
            assert c.get("/").status_code == 200  # the server goes on
        assert s.stop() == 0


def test_starlette_app_through_the_cli_lifespan_and_stream():
    with serve("asgi", "starlette_app:app", "--listen", "http://127.0.0.1:0", "--access-log") as s:
        with httpx.Client(base_url=s.url, timeout=10) as c:
            r = c.get("/")
            assert r.json()["greeting"] == "hello from the lifespan"
            r = c.post("/echo", content=b"x" * 100_000)
            assert r.headers["x-length"] == "100000" and len(r.content) == 100_000
            with c.stream("GET", "/stream") as r:
                assert "".join(r.iter_text()) == "0\n1\n2\n3\n4\n"
        assert s.stop() == 0
        assert any('"GET / HTTP/1.1" 200' in line for line in s.lines)


def test_root_path_and_file_wrapper(tmp_path):
    (tmp_path / "mounted.py").write_text(
        "import io\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    text = environ['SCRIPT_NAME'] + '|' + environ['PATH_INFO']\n"
        "    return environ['wsgi.file_wrapper'](io.BytesIO(text.encode()), 4)\n"
    )
    with serve(
        "wsgi", "mounted:app", "--listen", "http://127.0.0.1:0", "--root-path", "/api", cwd=tmp_path
    ) as s:
        assert httpx.get(s.url + "/api/users/1", timeout=10).text == "/api|/users/1"


def test_wsgi_validate_app_through_the_cli(tmp_path):
    (tmp_path / "plain.py").write_text(
        "from wsgiref.validate import validator\n"
        "def _app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [environ['PATH_INFO'].encode()]\n"
        "app = validator(_app)\n"
    )
    with serve("wsgi", "plain:app", "--listen", "http://127.0.0.1:0", cwd=tmp_path) as s:
        assert httpx.get(s.url + "/x/y", timeout=10).text == "/x/y"


def test_static_directory(tmp_path):
    (tmp_path / "hello.txt").write_text("static hello\n")
    with serve("static", str(tmp_path), "--listen", "http://127.0.0.1:0") as s:
        r = httpx.get(s.url + "/hello.txt", timeout=10)
        assert r.text == "static hello\n" and r.headers["content-type"].startswith("text/plain")
        assert httpx.get(s.url + "/missing", timeout=10).status_code == 404


# ---- signals, workers ------------------------------------------------------------------------


def test_sigterm_lets_the_request_in_progress_finish(tmp_path):
    (tmp_path / "slow.py").write_text(
        "import time\n"
        "def app(environ, start_response):\n"
        "    time.sleep(1.0)\n"
        "    start_response('200 OK', [])\n"
        "    return [b'finished']\n"
    )
    with serve("wsgi", "slow:app", "--listen", "http://127.0.0.1:0", cwd=tmp_path) as s:
        url = s.url
        result = {}

        def get():
            result["r"] = httpx.get(url, timeout=15)

        t = threading.Thread(target=get)
        t.start()
        time.sleep(0.3)  # the request is in the app
        assert s.stop(signal.SIGTERM) == 0
        t.join(15)
    assert result["r"].text == "finished"


def test_sigusr1_prints_the_counters():
    with serve("wsgi", "flask_app:app", "--listen", "http://127.0.0.1:0") as s:
        httpx.get(s.url + "/", timeout=10)
        s.proc.send_signal(signal.SIGUSR1)
        m = s.wait_log(r"stats pid \d+: .*http_requests=(\d+).*responses=2xx:(\d+)")[0]
        assert int(m.group(1)) >= 1 and int(m.group(2)) >= 1


def test_asgi_lifespan_shutdown_runs_on_sigint(tmp_path):
    marker = tmp_path / "shutdown.txt"
    (tmp_path / "life.py").write_text(
        "import contextlib, pathlib\n"
        "from starlette.applications import Starlette\n"
        "@contextlib.asynccontextmanager\n"
        "async def lifespan(app):\n"
        "    yield\n"
        f"    pathlib.Path({str(marker)!r}).write_text('done')\n"
        "app = Starlette(lifespan=lifespan)\n"
    )
    with serve("asgi", "life:app", "--listen", "http://127.0.0.1:0", cwd=tmp_path) as s:
        s.url  # noqa: B018 - started
        assert s.stop(signal.SIGINT) == 0
    assert marker.read_text() == "done"


def _pids(url: str, n: int) -> set[int]:
    pids = set()
    for _ in range(n):
        # A new connection each time, so the kernel may pick another worker.
        with httpx.Client(timeout=10) as c:
            pids.add(c.get(url + "/").json()["pid"])
    return pids


@pytest.mark.parametrize("kind,app", [("wsgi", "flask_app:app"), ("asgi", "starlette_app:app")])
def test_two_workers_share_one_port(kind, app):
    with serve(kind, app, "--listen", "http://127.0.0.1:0", "--workers", "2") as s:
        matches = s.wait_log(LISTEN.pattern, count=2)
        urls = {m.group(1) for m in matches}
        assert len(urls) == 1  # one port
        worker_pids = {int(m.group(2)) for m in matches}
        seen = _pids(urls.pop(), 60)
        assert seen == worker_pids
        assert s.stop() == 0


def test_a_killed_worker_is_replaced():
    with serve("wsgi", "flask_app:app", "--listen", "http://127.0.0.1:0", "--workers", "2") as s:
        first = {int(m.group(2)) for m in s.wait_log(LISTEN.pattern, count=2)}
        os.kill(min(first), signal.SIGKILL)
        third = s.wait_log(LISTEN.pattern, count=3)
        new = {int(m.group(2)) for m in third} - first
        assert len(new) == 1
        url = third[0].group(1)
        for _ in range(50):
            if _pids(url, 20) == (first - {min(first)}) | new:
                break
        else:
            raise AssertionError("the new worker never answered")
        assert s.stop() == 0


# ---- errors --------------------------------------------------------------------------------


def test_bad_module_app_and_url_exit_2(tmp_path):
    r = run_cli("wsgi", "no_such_module:app", cwd=tmp_path)
    assert r.returncode == 2 and "cannot import module 'no_such_module'" in r.stderr
    r = run_cli("wsgi", "flask_app:nope")
    assert r.returncode == 2 and "has no attribute 'nope'" in r.stderr
    r = run_cli("asgi", "flask_app", "--listen", "http://127.0.0.1:0")
    assert r.returncode == 2 and "MODULE:APP" in r.stderr
    r = run_cli("wsgi", "flask_app:app", "--listen", "http://example.com:80")
    assert r.returncode == 2 and "bad URL" in r.stderr
    r = run_cli("wsgi", "flask_app:app", "--listen", "ftp://127.0.0.1:21")
    assert r.returncode == 2 and "bad URL" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # one line, no traceback


def test_busy_port_exits_3():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli("wsgi", "flask_app:app", "--listen", f"http://127.0.0.1:{port}")
    assert r.returncode == 3 and "address already in use" in r.stderr


def test_help_and_console_script():
    r = run_cli("--help")
    assert r.returncode == 0
    for word in ("static", "wsgi", "asgi", "mqtt-broker", "MODULE:APP", "exit codes"):
        assert word in r.stdout
    r = run_cli("wsgi", "--help")
    for opt in (
        "--listen",
        "--workers",
        "--threads",
        "--tls-cert",
        "--log-level",
        "--access-log",
        "--root-path",
    ):
        assert opt in r.stdout


def test_mqtt_broker_subcommand(tmp_path):
    import socket

    from cymongoose import Manager

    if not hasattr(Manager, "mqtt_broker"):
        r = run_cli("mqtt-broker", "--listen", "mqtt://127.0.0.1:0")
        assert r.returncode == 2 and "broker is not available in this build" in r.stderr
        return
    persist = tmp_path / "broker.db"
    with serve("mqtt-broker", "--listen", "mqtt://127.0.0.1:0", "--persist", str(persist)) as s:
        url = s.url
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            # CONNECT, MQTT 3.1.1, clean session, keep-alive 60 s, client id "t".
            c.sendall(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01t")
            assert c.recv(4) == b"\x20\x02\x00\x00"  # CONNACK, accepted
        assert s.stop() == 0


def test_starlette_websocket_route_through_the_cli():
    from cymongoose import Connection

    if not hasattr(Connection, "ws_upgrade"):
        pytest.skip("WebSocket is not in this build")
    websockets = pytest.importorskip("websockets")
    import asyncio

    from websockets.asyncio.client import connect

    async def talk(url: str) -> list[str]:
        async with connect(url.replace("http://", "ws://") + "/ws") as ws:
            out = []
            for word in ("one", "two", "trois"):
                await ws.send(word)
                out.append(await asyncio.wait_for(ws.recv(), 10))
            return out

    for workers in ("1", "2"):
        with serve(
            "asgi", "starlette_app:app", "--listen", "http://127.0.0.1:0", "--workers", workers
        ) as s:
            url = s.wait_log(LISTEN.pattern, count=int(workers))[0].group(1)
            assert asyncio.run(talk(url)) == ["one", "two", "trois"]
            assert websockets is not None
            assert s.stop() == 0
