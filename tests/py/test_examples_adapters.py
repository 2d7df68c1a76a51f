"""examples/asyncio_server.py runs as documented (the Flask and Starlette examples are
exercised through the command line in test_cli.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "asyncio_server.py"


def test_asyncio_example():
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "0", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        assert m, line
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        body = opener.open(m.group(1) + "/hello", timeout=10).read()
        assert body == b"hello from AsyncManager\n"
        out, _ = proc.communicate(timeout=20)
        assert "asyncio saw a request for /hello" in out
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
