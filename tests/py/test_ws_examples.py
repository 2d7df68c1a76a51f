"""examples/ws_echo.py and examples/ws_broadcast.py, run as a user would:
a subprocess on a free port, driven by the `websockets` client, stopped
with SIGINT (Manager.run() closes everything on the way out)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

websockets = pytest.importorskip("websockets")
from websockets.sync.client import connect  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@contextmanager
def example(name: str, **env: str) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / name)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PORT": "0", **env},
    )
    try:
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        yield int(m.group(1))
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert "Stopped." in out


def test_ws_echo_example_page_and_echo():
    with example("ws_echo.py") as port:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        page = opener.open(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert "new WebSocket(" in page and "/ws" in page
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send("héllo")
            assert ws.recv(timeout=5) == "héllo"
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=5) == b"\x00\x01"


def test_ws_broadcast_example_reaches_every_socket():
    with example("ws_broadcast.py", TICK_MS="200") as port:
        url = f"ws://127.0.0.1:{port}/ws"
        with connect(url) as a, connect(url) as b:

            def until(ws, pattern: str) -> str:
                for _ in range(50):
                    msg = ws.recv(timeout=5)
                    if re.search(pattern, msg):
                        return msg
                raise AssertionError(pattern)

            until(a, r"joined \(2 here\)")
            a.send("hello room")
            assert until(a, r": hello room$").endswith("hello room")
            assert until(b, r": hello room$").endswith("hello room")
            until(b, r"^tick \d+$")
