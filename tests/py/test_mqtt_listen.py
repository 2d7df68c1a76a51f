"""The raw MQTT listener (Manager.mqtt_listen, SPEC 2.12) against real clients:
paho-mqtt and mosquitto's command-line clients talk to a handler that plays
broker by hand, in the original's mqtt_server.py pattern (it sends CONNACK
itself on cmd == 1 and routes PUBLISH with mqtt_pub).  A raw socket sends
what no real client would: malformed packets close the connection with
MG_EV_ERROR saying why.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading

import pytest
from conftest import poll_until, raw_connect, recv_until_eof, serve, wait_until
from mqtt_peers import MqttLog

from cymongoose import MG_EV_CLOSE, MG_EV_MQTT_CMD, MG_EV_MQTT_OPEN, Manager

paho = pytest.importorskip("paho.mqtt.client")

CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT = 1, 3, 8, 10, 12, 14


def topic_matches(topic: str, flt: str) -> bool:
    t, f = topic.split("/"), flt.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(t) == len(f)


class HandBroker:
    """The handler of the original's raw-listener example, a little stricter."""

    def __init__(self) -> None:
        self.subs: list[tuple[object, str, int]] = []
        self.seen: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, conn, ev, data) -> None:
        if ev == MG_EV_MQTT_CMD:
            with self.lock:
                self.seen.append(data.cmd)
            if data.cmd == CONNECT:
                conn.send(b"\x20\x02\x00\x00")  # CONNACK, accepted
            elif data.cmd == SUBSCRIBE:
                with self.lock:
                    self.subs.append((conn, data.topic, data.qos))
                conn.send(bytes([0x90, 3, data.id >> 8, data.id & 0xFF, data.qos]))  # SUBACK
            elif data.cmd == UNSUBSCRIBE:
                with self.lock:
                    self.subs = [s for s in self.subs if not (s[0] is conn and s[1] == data.topic)]
                conn.send(bytes([0xB0, 2, data.id >> 8, data.id & 0xFF]))  # UNSUBACK
            elif data.cmd == PUBLISH:
                with self.lock:
                    targets = [(c, q) for c, f, q in self.subs if topic_matches(data.topic, f)]
                for c, q in targets:
                    c.mqtt_pub(data.topic, data.data, qos=min(q, data.qos))
            elif data.cmd == PINGREQ:
                conn.mqtt_pong()
            elif data.cmd == DISCONNECT:
                conn.close()
        elif ev == MG_EV_CLOSE:
            with self.lock:
                self.subs = [s for s in self.subs if s[0] is not conn]


@pytest.fixture
def hand_broker(manager):
    broker = HandBroker()
    lsn = manager.mqtt_listen("mqtt://127.0.0.1:0", broker)
    with serve(manager):
        yield broker, lsn.local_addr[1]


def paho_client(port: int, client_id: str, protocol=None):
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=protocol or paho.MQTTv311)
    got: list[tuple[str, bytes, int]] = []
    acked: list[int] = []
    c.on_message = lambda cl, ud, msg: got.append((msg.topic, msg.payload, msg.qos))
    c.on_publish = lambda cl, ud, mid, rc, props: acked.append(mid)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    assert wait_until(c.is_connected), "paho did not get CONNACK"
    return c, got, acked


def test_paho_pub_sub_through_the_hand_broker(hand_broker):
    broker, port = hand_broker
    sub, got, _ = paho_client(port, "paho-sub")
    pub, _, acked = paho_client(port, "paho-pub")
    try:
        res, _mid = sub.subscribe("sensors/#", qos=2)
        assert res == 0
        assert wait_until(lambda: len(broker.subs) == 1)
        infos = [pub.publish(f"sensors/t{q}", f"v{q}".encode(), qos=q) for q in (0, 1, 2)]
        # QoS 1 and 2 complete only through our automatic PUBACK, PUBREC and PUBCOMP
        for info in infos:
            info.wait_for_publish(timeout=5)
            assert info.is_published()
        assert wait_until(lambda: len(got) == 3), got
        assert sorted(got) == [(f"sensors/t{q}", f"v{q}".encode(), q) for q in (0, 1, 2)]
        sub.unsubscribe("sensors/#")
        assert wait_until(lambda: not broker.subs)
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()
    assert wait_until(lambda: broker.seen.count(DISCONNECT) == 2)


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto-clients not installed")
def test_mosquitto_clients_against_the_hand_broker(hand_broker):
    broker, port = hand_broker
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "cli/+",
                            "-q", "1", "-C", "2", "-W", "10"], stdout=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: broker.subs, timeout=10)
        for text in ("one", "two"):
            cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", "cli/x", "-m", text,
                   "-q", "2"]
            pub = subprocess.run(cmd, timeout=10, capture_output=True)
            assert pub.returncode == 0, pub.stderr  # it waits for our PUBREC / PUBCOMP
        out, _ = sub.communicate(timeout=10)
    finally:
        sub.kill()
        sub.wait()
    assert out.split() == ["one", "two"]


def test_no_handler_no_connack(manager):
    lsn = manager.mqtt_listen("mqtt://127.0.0.1:0")
    log = MqttLog()
    manager.mqtt_connect(f"mqtt://127.0.0.1:{lsn.local_addr[1]}", log)
    assert not poll_until(manager, log.opened, timeout=0.3)


def test_listen_errors(manager):
    with pytest.raises(RuntimeError, match="Failed to listen for MQTT on 'mqtt://256.1.1.1:1'"):
        manager.mqtt_listen("mqtt://256.1.1.1:1")


def test_events_inside_mqtt_calls_reach_their_handler(manager):
    seen = []
    lsn = manager.mqtt_listen("mqtt://127.0.0.1:0", lambda c, ev, d: seen.append(("lsn", ev)))
    url = f"mqtt://127.0.0.1:{lsn.local_addr[1]}"
    manager.mqtt_connect(url, lambda c, ev, d: seen.append(("cli", ev)))
    assert ("lsn", 1) in seen and ("cli", 1) in seen  # MG_EV_OPEN fired inside the calls


MALFORMED = [
    (b"\x30\x02\x00\x00", "MQTT: invalid topic name"),
    (b"\x30\x04\x00\x02a+", "MQTT: invalid topic name"),
    (b"\x82\x05\x00\x01\x00\x00\x00", "MQTT: invalid topic filter"),
    (b"\x82\x02\x00\x01", "MQTT: no topic filter"),
    (b"\x00\x00", "MQTT: reserved packet type"),
    (b"\xc1\x00", "MQTT: reserved fixed-header flags set"),
    (b"\x36\x05\x00\x01t\x00\x01", "MQTT: invalid QoS"),
    (b"\x32\x05\x00\x01t\x00\x00", "MQTT: packet identifier 0"),
    (b"\x30\x04\x00\x02\xc0\x80", "MQTT: string is not valid MQTT UTF-8"),
    (b"\x30\xff\xff\xff\xff\x7f", "MQTT: bad remaining length encoding"),
    (b"\x30\xff\xff\xff\x7f", "MQTT: packet of 268435460 bytes over the receive limit"),
    (b"\x10\x0c\x00\x04MQTX\x04\x00\x00\x00\x00\x00", "MQTT: protocol name is not MQTT"),
]


@pytest.mark.parametrize(("packet", "why"), MALFORMED)
def test_malformed_packet_closes_with_error(manager, packet, why):
    log = MqttLog()
    lsn = manager.mqtt_listen("mqtt://127.0.0.1:0", log)
    with raw_connect(lsn.local_addr[1]) as s:
        s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")  # a good CONNECT first
        assert poll_until(manager, lambda: log.cmds(CONNECT))
        s.sendall(packet)
        assert poll_until(manager, lambda: log.of("close")), log.events
        assert log.events[-2:] == [("error", why), ("close",)]
        data, eof = _drain(manager, s)
        assert eof and data == b""


def _drain(manager: Manager, s: socket.socket) -> tuple[bytes, bool]:
    manager.poll(10)
    return recv_until_eof(s, timeout=5)


def recv_polling(manager: Manager, s: socket.socket, n: int) -> bytes:
    """Read `n` bytes from `s` while polling `manager` (which answers them)."""
    buf = bytearray()
    s.setblocking(False)

    def more() -> bool:
        with contextlib.suppress(BlockingIOError):
            chunk = s.recv(n - len(buf))
            if not chunk:
                return True  # EOF
            buf.extend(chunk)
        return len(buf) >= n

    poll_until(manager, more)
    s.settimeout(5)
    return bytes(buf)


def test_split_packets_and_automatic_acks(manager):
    """A packet that arrives a byte at a time is one event; the listener
    acknowledges QoS 1 and 2 and answers PUBREL with PUBCOMP by itself."""
    log = MqttLog()
    lsn = manager.mqtt_listen("mqtt://127.0.0.1:0", log)
    with raw_connect(lsn.local_addr[1]) as s:
        for b in b"\x32\x08\x00\x03a/b\x12\x34":
            s.sendall(bytes([b]))
            manager.poll(1)
        assert not log.msgs()
        s.sendall(b"Z")
        assert poll_until(manager, lambda: log.msgs())
        assert log.msgs() == [("msg", "a/b", b"Z", 1, [])]
        assert recv_polling(manager, s, 4) == b"\x40\x02\x12\x34"  # PUBACK
        s.sendall(b"\x34\x06\x00\x01t\x00\x07!")  # QoS 2
        assert recv_polling(manager, s, 4) == b"\x50\x02\x00\x07"  # PUBREC
        s.sendall(b"\x62\x02\x00\x07")  # PUBREL
        assert recv_polling(manager, s, 4) == b"\x70\x02\x00\x07"  # PUBCOMP
        s.sendall(b"\x50\x02\x00\x09")  # a PUBREC, as if we had published QoS 2
        assert recv_polling(manager, s, 4) == b"\x62\x02\x00\x09"  # PUBREL


def test_mqtt_calls_on_other_connections_write_bytes(manager):
    lsn = manager.listen("tcp://127.0.0.1:0")
    lsn.mqtt_ping()
    lsn.mqtt_pong()
    assert lsn.mqtt_pub("t", b"x", qos=1) > 0
    lsn.mqtt_sub("a/#", 1)
    lsn.mqtt_unsub("a/#")
    lsn.mqtt_disconnect()
    out = lsn.send_data()
    assert out.startswith(b"\xc0\x00\xd0\x00\x32\x06\x00\x01t")
    assert out.endswith(b"\xe0\x00")
    http = manager.listen("http://127.0.0.1:0")
    http.mqtt_pub("t", "y")
    assert http.send_data() == b"\x30\x04\x00\x01ty"


def test_mqtt_open_only_on_connack(manager):
    """A CONNACK refusing the client: MG_EV_MQTT_OPEN(code) then MG_EV_MQTT_CMD,
    then the close; an accepting one leaves the connection open."""
    def refuse(conn, ev, data):
        if ev == MG_EV_MQTT_CMD and data.cmd == CONNECT:
            conn.send(b"\x20\x02\x00\x04")

    lsn = manager.mqtt_listen("mqtt://127.0.0.1:0", refuse)
    log = MqttLog()
    opens = []

    def client(conn, ev, data):
        log(conn, ev, data)
        if ev == MG_EV_MQTT_OPEN:
            opens.append((data, conn.is_closing))

    url = f"mqtt://127.0.0.1:{lsn.local_addr[1]}"
    manager.mqtt_connect(url, client, username="u", password="bad")
    assert poll_until(manager, lambda: log.of("close")), log.events
    assert log.events == [("open", 4), ("cmd", 2, 0, 4), ("close",)]
    assert opens == [(4, False)]
