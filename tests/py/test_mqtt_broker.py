"""Our MQTT broker (Manager.mqtt_broker) with mosquitto's command-line clients
and paho-mqtt: fan-out, QoS 1/2 across a reconnect of a persistent session,
retained, wildcards, takeover, MQTT 5, the hooks, the events and counters,
persistence across a restart of the Manager.  The Paho interoperability
cases, run against mosquitto too, are in test_mqtt_interop.py."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from mqtt_brokers import HOST, OurBroker, PahoClient, closed_by_peer, raw_connect

from cymongoose import Manager

pytestmark = pytest.mark.timeout(60)

needs_clients = pytest.mark.skipif(shutil.which("mosquitto_pub") is None,
                                   reason="mosquitto-clients not installed")


@pytest.fixture
def broker():
    b = OurBroker()
    yield b
    b.close()


def sub_proc(port: int, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pub(port: int, *args: str) -> None:
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), *args], check=True, timeout=20)


def wait_subscriptions(b: OurBroker, n: int) -> None:
    end = time.monotonic() + 15
    while b.stats()["subscriptions"] < n and time.monotonic() < end:
        time.sleep(0.05)
    assert b.stats()["subscriptions"] >= n


@needs_clients
def test_fan_out_to_many_mosquitto_subscribers(broker):
    n, count = 20, 5
    subs = [sub_proc(broker.port, "-t", "fan/#", "-q", "1", "-C", str(count), "-v")
            for _ in range(n)]
    wait_subscriptions(broker, n)
    for i in range(count):
        pub(broker.port, "-t", f"fan/{i}", "-m", f"m{i}", "-q", "1")
    want = "".join(f"fan/{i} m{i}\n" for i in range(count))
    for p in subs:
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, err
        assert out == want  # each message once, in order
    st = broker.stats()
    assert st["messages_in"] == count and st["messages_out"] == n * count


@needs_clients
def test_persistent_session_across_reconnect_mosquitto(broker):
    args = ("-i", "durable", "-c", "-q", "2", "-t", "p/+")
    p = sub_proc(broker.port, *args, "-C", "1")
    wait_subscriptions(broker, 1)
    pub(broker.port, "-t", "p/first", "-m", "1", "-q", "2")
    assert p.communicate(timeout=20)[0] == "1\n"
    # Offline: QoS 1 and 2 are queued for the session, QoS 0 is not.
    for qos in ("0", "1", "2"):
        pub(broker.port, "-t", "p/x", "-m", f"qos{qos}", "-q", qos)
    p = sub_proc(broker.port, *args, "-C", "2", "-W", "10")
    out, err = p.communicate(timeout=20)
    assert out == "qos1\nqos2\n", err


@needs_clients
def test_retained_and_wildcards_mosquitto(broker):
    pub(broker.port, "-t", "home/kitchen/temp", "-m", "21", "-r", "-q", "1")
    pub(broker.port, "-t", "home/hall/temp", "-m", "19", "-r")
    pub(broker.port, "-t", "$SYS/internal", "-m", "x", "-r")
    out = subprocess.run(["mosquitto_sub", "-h", HOST, "-p", str(broker.port), "-t", "home/+/temp",
                          "-v", "-C", "2", "-W", "10"], capture_output=True, text=True, timeout=20)
    assert sorted(out.stdout.splitlines()) == ["home/hall/temp 19", "home/kitchen/temp 21"]
    # '#' does not match $SYS; asking for it by name does.
    out = subprocess.run(["mosquitto_sub", "-h", HOST, "-p", str(broker.port), "-t", "#", "-t",
                          "$SYS/#", "-v", "-C", "3", "-W", "10"], capture_output=True, text=True,
                         timeout=20)
    assert sorted(out.stdout.splitlines()) == ["$SYS/internal x", "home/hall/temp 19",
                                               "home/kitchen/temp 21"]
    pub(broker.port, "-t", "home/hall/temp", "-n", "-r")  # an empty retained payload deletes
    assert broker.stats()["retained"] == 2


def test_handler_events_and_stats(broker):
    c = PahoClient(broker.port, "observer")
    c.connect()
    c.subscribe("obs/#", 1)
    c.publish("obs/a", b"\x00binary", 1)
    assert c.received(1)[0][1] == b"\x00binary"
    end = time.monotonic() + 5
    while not broker.published and time.monotonic() < end:
        time.sleep(0.01)
    assert broker.published == [("obs/a", b"\x00binary", 1)]
    st = broker.stats()
    assert st["clients"] == 1 and st["subscriptions"] == 1 and st["connects"] == 1
    assert st["messages_in"] == 1 and st["messages_out"] == 1 and st["dropped"] == 0
    assert set(st) == {"clients", "sessions", "subscriptions", "retained", "messages_in",
                       "messages_out", "dropped", "connects"}
    broker.call(lambda: broker.listener.mqtt_broker_publish("obs/b", "from the broker", 1))
    got = c.received(1)
    assert got[0][:3] == ("obs/b", b"from the broker", 1)
    c.disconnect()


def test_takeover(broker):
    a = PahoClient(broker.port, "same", clean=False)
    a.connect()
    a.subscribe("t/#", 1)
    b = PahoClient(broker.port, "same", clean=False)
    assert b.connect() == (0, True)  # the session is taken over, not discarded
    assert a.disconnected.wait(10)
    a.c.loop_stop()
    b.publish("t/1", b"to the new one", 1)
    assert b.received(1)[0][1] == b"to the new one"
    b.disconnect()


def test_mqtt5_assigned_id_and_expiry(broker):
    c = PahoClient(broker.port, "", version=mqtt.MQTTv5)
    ids = []
    c.c.on_connect = lambda cl, u, flags, rc, props: (
        ids.append(getattr(props, "AssignedClientIdentifier", None)), c.connack.put((rc.value, 0)))
    assert c.connect()[0] == 0
    assert ids and ids[0] and ids[0].startswith("auto-")
    c.subscribe("v5/t", 2)
    c.publish("v5/t", b"five", 2)
    assert c.received(1)[0][:3] == ("v5/t", b"five", 2)
    c.disconnect()
    assert broker.stats()["sessions"] == 0  # expiry 0: gone with the connection


def test_keepalive_will_and_zero_length_id(broker):
    w = PahoClient(broker.port, "watch")
    w.connect()
    w.subscribe("dead/#", 0)
    s = raw_connect(broker.port, "", keepalive=1, will=("dead/1", b"bye", 0, False))
    t0 = time.monotonic()
    assert closed_by_peer(s, 10)
    assert time.monotonic() - t0 >= 1.2  # 1.5 x keep-alive, with the timer's resolution
    s.close()
    assert w.received(1)[0][:2] == ("dead/1", b"bye")
    w.disconnect()


def test_auth_and_acl_hooks():
    calls = []

    def auth(client_id, username, password):
        calls.append((client_id, username, password))
        return username == "alice" and password == "secret"

    def acl(client_id, username, topic, is_publish):
        if topic == "boom":
            raise RuntimeError("hook failed")  # refuses, and is reported
        return not topic.startswith("private/") or username == "alice"

    errors: list[BaseException] = []
    b = OurBroker(auth=auth, acl=acl, error_handler=errors.append)
    try:
        bad = PahoClient(b.port, "eve")
        bad.c.username_pw_set("eve", "guess")
        assert bad.connect()[0] == 135  # CONNACK 5, which paho reports as "Not authorized"
        bad.c.loop_stop()
        anon = PahoClient(b.port, "anon")
        assert anon.connect()[0] == 135
        anon.c.loop_stop()
        assert calls[:2] == [("eve", "eve", "guess"), ("anon", None, None)]
        ok = PahoClient(b.port, "alice")
        ok.c.username_pw_set("alice", "secret")
        assert ok.connect()[0] == 0
        assert ok.subscribe([("private/x", 1), ("boom", 1)]) == [1, 0x80]
        ok.publish("private/x", b"mine", 1)
        assert ok.received(1)[0][1] == b"mine"
        ok.disconnect()
    finally:
        b.close()
    assert [str(e) for e in errors] == ["hook failed"]


def test_options_checked_and_shared_between_listeners(tmp_path):
    m = Manager()
    try:
        with pytest.raises(ValueError):
            m.mqtt_broker(f"http://{HOST}:0")
        with pytest.raises(TypeError):
            m.mqtt_broker(f"mqtt://{HOST}:0", auth=42)
        with pytest.raises(ValueError):
            m.mqtt_broker(f"mqtt://{HOST}:0", max_inflight=0)
        path = str(tmp_path / "db")
        a = m.mqtt_broker(f"mqtt://{HOST}:0", persist=path, max_queued=10)
        b = m.mqtt_broker(f"tcp://{HOST}:0", persist=path, max_queued=10)  # same options: fine
        with pytest.raises(ValueError, match="running already"):
            m.mqtt_broker(f"mqtt://{HOST}:0", max_queued=11)
        assert a.mqtt_broker_stats() == b.mqtt_broker_stats()
        with pytest.raises(ValueError):
            m.listen(f"tcp://{HOST}:0").mqtt_broker_stats()
    finally:
        m.close()


def _run_until(m: Manager, cond, seconds: float = 10) -> None:
    end = time.monotonic() + seconds
    while not cond() and time.monotonic() < end:
        m.poll(10)


def test_persistence_across_manager_restart(tmp_path):
    path = tmp_path / "broker.db"
    b = OurBroker(persist=path)
    try:
        c = PahoClient(b.port, "keeper", clean=False)
        c.connect()
        c.subscribe("keep/#", 2)
        c.disconnect()
        p = PahoClient(b.port, "pub")
        p.connect()
        p.publish("keep/queued", b"while away", 2)
        p.publish("keep/retained", b"still here", 1, retain=True)
        p.disconnect()
    finally:
        b.close()  # Manager.close() saves
    assert path.stat().st_size > 0
    b = OurBroker(persist=path)
    try:
        c = PahoClient(b.port, "keeper", clean=False)
        assert c.connect() == (0, True)
        got = c.received(2)
        assert sorted(p for _, p, _, _ in got) == [b"still here", b"while away"]
        n = PahoClient(b.port, "newcomer")
        n.connect()
        n.subscribe("keep/retained", 1)
        assert n.received(1)[0][1:] == (b"still here", 1, True)
        n.disconnect()
        c.disconnect()
    finally:
        b.close()
    # A damaged file is reported, and left as it is.
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF
    path.write_bytes(bytes(data))
    m = Manager()
    try:
        with pytest.raises(RuntimeError, match="checksum"):
            m.mqtt_broker(f"mqtt://{HOST}:0", persist=str(path))
    finally:
        m.close()
    assert path.read_bytes() == bytes(data)


def test_malformed_packet_closes(broker):
    s = socket.create_connection((HOST, broker.port), timeout=10)
    s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
    assert s.recv(4) == b"\x20\x02\x00\x00"
    s.sendall(b"\x82\x05\x00\x01\x00\x01a")  # SUBSCRIBE without its QoS byte
    assert closed_by_peer(s, 5)
    s.close()
