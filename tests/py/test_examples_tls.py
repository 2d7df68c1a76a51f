"""examples/https_server.py and https_client.py run as a new user would: the
certificate how-to of examples/README.md (its ``sh`` block, run as written), then
the server with curl and our client against it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from http_peers import _child_env

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def howto_block() -> str:
    text = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    section = text.split("### Making a test certificate", 1)[1]
    m = re.search(r"^```sh\n(.*?)^```", section, re.M | re.S)
    assert m, "no sh block under 'Making a test certificate'"
    return m.group(1)


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("howto")
    subprocess.run(["bash", "-euo", "pipefail", "-c", howto_block()], cwd=d, check=True,
                   capture_output=True, timeout=60)
    for name in ("ca.pem", "server.pem", "server.key"):
        assert (d / name).stat().st_size > 0
    return d


def start_server(cert_dir: Path) -> tuple[subprocess.Popen, int]:
    env = dict(_child_env(), PORT="0", CERT=str(cert_dir / "server.pem"),
               KEY=str(cert_dir / "server.key"))
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "https_server.py")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"https://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"no URL printed: {line!r} {err}")
    return proc, int(m.group(1))


def client(url: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / "https_client.py"), url],
                          env=dict(_child_env(), **env), capture_output=True, timeout=60)


def test_https_examples(cert_dir, curl):
    proc, port = start_server(cert_dir)
    url = f"https://localhost:{port}/"
    try:
        r = subprocess.run([curl, "-sS", "--noproxy", "*", "--max-time", "20", "--cacert",
                            str(cert_dir / "ca.pem"), url + "info"],
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert b'"tls": true' in r.stdout and b'"handshake": true' in r.stdout
        ok = client(url, CA=str(cert_dir / "ca.pem"))
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout == b"Hello over TLS\n" and b"HTTP 200" in ok.stderr
        # No CA: the system trust store does not know the test CA.
        bad = client(url)
        assert bad.returncode == 1
        assert b"certificate verify failed" in bad.stderr
        # A name the certificate does not carry.
        wrong = client(url, CA=str(cert_dir / "ca.pem"), NAME="example.com")
        assert wrong.returncode == 1 and b"hostname mismatch" in wrong.stderr
        insecure = client(url, INSECURE="1")
        assert insecure.returncode == 0 and insecure.stdout == b"Hello over TLS\n"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Stopped." in out


def test_https_server_without_certificate(tmp_path):
    env = dict(_child_env(), PORT="0", CERT=str(tmp_path / "missing.pem"))
    r = subprocess.run([sys.executable, str(EXAMPLES / "https_server.py")], env=env,
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1 and "examples/README.md" in r.stderr
    assert os.listdir(tmp_path) == []
