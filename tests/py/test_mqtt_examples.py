"""examples/mqtt_client.py and examples/mqtt_server.py, run as a user would:
the client against mosquitto and against the example server, and
mosquitto's own clients against the example server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_peers import mosquitto

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_client(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / "mqtt_client.py")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "MQTT_URL": url, **env})


@pytest.fixture
def example_server() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "mqtt_server.py")],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PORT": "0"})
    try:
        line = proc.stdout.readline()  # "MQTT listening on mqtt://127.0.0.1:PORT"
        assert line.startswith("MQTT listening on "), line
        yield line.split()[-1]
    finally:
        proc.terminate()  # Manager.run() stops on SIGTERM and closes everything
        assert proc.wait(10) == 0


def test_client_against_mosquitto():
    with mosquitto() as port:
        r = run_client(f"mqtt://127.0.0.1:{port}", COUNT="4", QOS="2")
    assert r.returncode == 0, r.stderr
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("received")] == [
        f"received cymongoose/example: message {i} (QoS 2)" for i in range(4)
    ]


def test_client_against_example_server(example_server):
    r = run_client(example_server, QOS="1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("received cymongoose/example") == 3


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto-clients not installed")
def test_mosquitto_clients_against_example_server(example_server):
    port = example_server.rsplit(":", 1)[1]
    cmd = ["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t", "demo/#", "-t", "x", "-v",
           "-C", "1", "-W", "20"]
    sub = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        # publish until the subscription is in place (mosquitto_sub gives no sign)
        for _ in range(100):
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-t", "demo/hello",
                            "-m", "world", "-q", "1"], timeout=10, check=True)
            try:
                out, _ = sub.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            pytest.fail("mosquitto_sub received nothing")
    finally:
        sub.kill()
        sub.wait()
    assert out.strip() == "demo/hello world"
