"""examples/mqtt_broker.py runs as documented: clients of mosquitto's and
paho's talk through it, its hooks refuse what they should, its counters
are published, and SIGTERM stops it (saving its file)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mqtt_brokers import PahoClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mqtt_broker.py"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def example(tmp_path):
    env = dict(os.environ, PORT="0", WS_PORT="0", PERSIST=str(tmp_path / "db"))
    p = subprocess.Popen([sys.executable, str(EXAMPLE)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    line = p.stdout.readline()
    m = re.search(r"mqtt://[0-9.]+:(\d+) and ws://[0-9.]+:(\d+)/mqtt", line)
    assert m, line
    yield p, int(m.group(1)), int(m.group(2)), tmp_path / "db"
    if p.poll() is None:
        p.kill()
    p.wait(10)


def test_example_broker(example):
    p, port, ws_port, db = example
    sub = PahoClient(port, "sub")
    sub.connect()
    sub.subscribe("sensors/#", 1)
    sub.subscribe("$SYS/broker/stats", 0)
    sub.publish("sensors/kitchen", b"21.5", 1, retain=True)
    got = {t: payload for t, payload, _, _ in sub.received(2)}
    assert got["sensors/kitchen"] == b"21.5"
    assert json.loads(got["$SYS/broker/stats"])["clients"] >= 0
    assert sub.subscribe("admin/#", 0) == [0x80]  # anonymous: refused
    web = PahoClient(ws_port, "browser", transport="websockets")  # the ws:// listener
    assert web.connect()[0] == 0
    assert web.subscribe("sensors/#", 1) == [1]
    assert web.received(1)[0][:2] == ("sensors/kitchen", b"21.5")  # retained, same broker
    web.publish("sensors/hall", b"19", 1)
    seen = [m[:2] for m in sub.received(3, timeout=3)]  # the stats may come in between
    assert ("sensors/hall", b"19") in seen
    web.disconnect()
    bad = PahoClient(port, "eve")
    bad.c.username_pw_set("admin", "wrong")
    assert bad.connect()[0] == 135  # CONNACK 5: not authorised
    bad.c.loop_stop()
    admin = PahoClient(port, "admin")
    admin.c.username_pw_set("admin", "admin")
    assert admin.connect()[0] == 0
    assert admin.subscribe("admin/#", 1) == [1]
    admin.disconnect()
    sub.disconnect()
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=20)
    assert "sensors/kitchen (QoS 1): b'21.5'" in out
    assert "Stopped." in out
    assert db.stat().st_size > 0  # the retained message was saved
