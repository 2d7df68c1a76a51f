"""MQTT over TLS (mqtts://), both directions, with real peers (issues 9 and 14): our
client (tls_init in MG_EV_CONNECT) against mosquitto with a TLS listener, and
paho-mqtt with TLS against our raw mqtt_listen("mqtts://...") listener whose
tls_init is set on the listener.  Certificates: tests/py/tls_certs.py."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import tls_certs
from conftest import HOST, poll_until, serve, wait_until
from mqtt_peers import MqttLog, mosquitto
from test_mqtt_listen import CONNECT, DISCONNECT, PUBLISH, HandBroker

from cymongoose import MG_EV_CONNECT, MG_EV_TLS_HS, Manager, TlsOpts

paho = pytest.importorskip("paho.mqtt.client")

CONNACK, PUBACK, SUBACK = 2, 4, 9


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tls_certs.Certs:
    return tls_certs.make(tmp_path_factory.getbasetemp() / "tls-certs")


@pytest.fixture(scope="module")
def tls_broker(certs) -> Iterator[int]:
    """mosquitto with one TLS listener: the RSA leaf (localhost, 127.0.0.1) and
    its EC intermediate; our root as its CA file."""
    with mosquitto(tls=(certs.root.cert_path, certs.leaf.cert_path, certs.leaf.key_path)) as port:
        yield port


class TlsLog(MqttLog):
    """MqttLog whose connection calls tls_init(opts) in MG_EV_CONNECT, and
    which also records MG_EV_TLS_HS as ("tls",)."""

    def __init__(self, opts: TlsOpts) -> None:
        super().__init__()
        self.opts = opts

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_CONNECT:
            conn.tls_init(self.opts)
        elif ev == MG_EV_TLS_HS:
            self.events.append(("tls",))
        super().__call__(conn, ev, data)


def tls_connect(mgr: Manager, url: str, opts: TlsOpts, **kw: Any) -> tuple[Any, TlsLog]:
    log = TlsLog(opts)
    conn = mgr.mqtt_connect(url, log, **kw)
    assert poll_until(mgr, lambda: log.opened() or log.of("close")), log.events
    return conn, log


# ---- our client, mosquitto over TLS -----------------------------------------------


def test_our_client_qos1_round_trip_through_mosquitto_over_tls(manager, certs, tls_broker):
    conn, log = tls_connect(manager, f"mqtts://localhost:{tls_broker}",
                            TlsOpts(ca=certs.root.cert), client_id="cm-tls")
    assert log.events[:3] == [("tls",), ("open", 0), ("cmd", CONNACK, 0, 0)], log.events
    assert conn.is_tls
    conn.mqtt_sub("secure/#", qos=1)
    assert poll_until(manager, lambda: log.cmds(SUBACK)), log.events
    big = bytes((i * 7) & 0xFF for i in range(300_000))  # many TLS records, several reads
    ids = [conn.mqtt_pub("secure/small", b"over tls", qos=1),
           conn.mqtt_pub("secure/big", big, qos=1)]
    assert all(i > 0 for i in ids)
    assert poll_until(manager, lambda: len(log.msgs()) == 2 and len(log.cmds(PUBACK)) == 2,
                      timeout=20), log.events
    assert [(m[1], m[2], m[3]) for m in log.msgs()] == [("secure/small", b"over tls", 1),
                                                        ("secure/big", big, 1)]
    assert sorted(c[2] for c in log.cmds(PUBACK)) == sorted(ids)  # mosquitto acked ours
    conn.mqtt_disconnect()
    assert poll_until(manager, lambda: log.of("close"))
    assert log.of("error") == []


def test_our_client_by_ip_with_name_option(manager, certs, tls_broker):
    """The URL's host is an IP; name= sets SNI and the name checked instead."""
    conn, log = tls_connect(manager, f"mqtts://{HOST}:{tls_broker}",
                            TlsOpts(ca=certs.root.cert, name="localhost"), version=5)
    assert log.opened() and log.of("open")[0] == ("open", 0), log.events
    conn.mqtt_pub("v5/tls", "five", qos=1)
    assert poll_until(manager, lambda: log.cmds(PUBACK)), log.events


@pytest.mark.parametrize(("opts", "why"), [
    ({"name": "not-the-broker.test"}, "hostname mismatch"),
    ({"ca": "unknown_ca"}, "certificate verify failed"),
])
def test_our_client_refuses_a_wrong_broker_certificate(manager, certs, tls_broker, opts, why):
    ca = getattr(certs, opts.get("ca", "root")).cert
    _, log = tls_connect(manager, f"mqtts://localhost:{tls_broker}",
                         TlsOpts(ca=ca, name=opts.get("name")))
    assert not log.opened() and log.of("close"), log.events
    errors = log.of("error")
    assert len(errors) == 1 and why in errors[0][1], errors
    assert ("tls",) not in log.events


def test_our_client_without_tls_init_gets_nothing_from_a_tls_port(manager, tls_broker):
    """SPEC: TLS is never automatic.  An mqtts:// URL without tls_init speaks
    plaintext; mosquitto's TLS listener hangs up, no CONNACK."""
    log = MqttLog()
    conn = manager.mqtt_connect(f"mqtts://localhost:{tls_broker}", log)
    assert poll_until(manager, lambda: log.of("close"), timeout=10), log.events
    assert not log.opened() and not conn.is_tls


# ---- paho-mqtt over TLS, our raw listener --------------------------------------------


@pytest.fixture
def tls_hand_broker(manager, certs):
    broker = HandBroker()
    hs: list[bool] = []

    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_TLS_HS:
            hs.append(conn.is_tls)
        broker(conn, ev, data)

    lsn = manager.mqtt_listen(f"mqtts://{HOST}:0", handler)
    lsn.tls_init(TlsOpts(cert=certs.leaf.cert, key=certs.leaf.key))
    with serve(manager):
        yield broker, lsn.local_addr[1], hs


def paho_tls(port: int, client_id: str, certs: tls_certs.Certs) -> tuple[Any, list[Any]]:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    c.tls_set(ca_certs=str(certs.root.cert_path), cert_reqs=ssl.CERT_REQUIRED)
    got: list[tuple[str, bytes, int]] = []
    c.on_message = lambda cl, ud, msg: got.append((msg.topic, msg.payload, msg.qos))
    c.connect("localhost", port, keepalive=30)
    c.loop_start()
    assert wait_until(c.is_connected), "paho did not get CONNACK over TLS"
    return c, got


def test_paho_over_tls_through_our_raw_listener(tls_hand_broker, certs):
    broker, port, hs = tls_hand_broker
    sub, got = paho_tls(port, "paho-tls-sub", certs)
    pub, _ = paho_tls(port, "paho-tls-pub", certs)
    try:
        res, _mid = sub.subscribe("tls/#", qos=2)
        assert res == 0
        assert wait_until(lambda: len(broker.subs) == 1)
        big = b"\xa5" * 200_000
        infos = [pub.publish("tls/q1", b"secure one", qos=1), pub.publish("tls/q2", big, qos=2)]
        for info in infos:  # our automatic PUBACK, PUBREC and PUBCOMP, encrypted
            info.wait_for_publish(timeout=10)
            assert info.is_published()
        assert wait_until(lambda: len(got) == 2, timeout=10), got
        assert sorted(got) == [("tls/q1", b"secure one", 1), ("tls/q2", big, 2)]
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()
    assert wait_until(lambda: broker.seen.count(DISCONNECT) == 2)
    assert broker.seen.count(CONNECT) == 2 and broker.seen.count(PUBLISH) == 2
    assert hs == [True, True]


def test_our_client_through_our_raw_tls_listener(manager, certs):
    """Both ends ours in one loop: MG_EV_MQTT_OPEN after the handshake."""
    broker = HandBroker()
    lsn = manager.mqtt_listen(f"mqtts://{HOST}:0", broker)
    lsn.tls_init(TlsOpts(cert=certs.leaf.cert, key=certs.leaf.key))
    conn, log = tls_connect(manager, f"mqtts://localhost:{lsn.local_addr[1]}",
                            TlsOpts(ca=certs.root.cert))
    assert log.events[:2] == [("tls",), ("open", 0)], log.events
    conn.mqtt_sub("self/+", qos=1)
    assert poll_until(manager, lambda: broker.subs)
    conn.mqtt_pub("self/x", "to myself", qos=1)
    assert poll_until(manager, lambda: log.msgs()), log.events
    assert log.msgs()[0][1:4] == ("self/x", b"to myself", 1)


# ---- paho-mqtt over TLS, our broker ----------------------------------------------------


def paho_round_trip(port: int, certs: tls_certs.Certs, prefix: str) -> list[Any]:
    """A subscriber and a publisher over TLS; what the subscriber got."""
    sub, got = paho_tls(port, f"{prefix}-sub", certs)
    pub, _ = paho_tls(port, f"{prefix}-pub", certs)
    try:
        subacked: list[int] = []
        sub.on_subscribe = lambda *a: subacked.append(1)
        res, _mid = sub.subscribe("b/#", qos=1)
        assert res == 0
        assert wait_until(lambda: subacked, timeout=10)  # QoS 0 below needs it in place
        for q in (0, 1, 2):
            pub.publish(f"b/q{q}", f"tls {q}".encode(), qos=q).wait_for_publish(timeout=10)
        assert wait_until(lambda: len(got) == 3, timeout=10), got
        return sorted(got)
    finally:
        for c in (sub, pub):
            c.disconnect()
            c.loop_stop()


def test_paho_over_tls_through_our_broker(manager, certs):
    if not hasattr(manager, "mqtt_broker"):
        pytest.skip("the broker is not in this build")
    lsn = manager.mqtt_broker(f"mqtts://{HOST}:0")
    lsn.tls_init(TlsOpts(cert=certs.leaf.cert, key=certs.leaf.key))
    assert lsn.is_tls
    with serve(manager):
        got = paho_round_trip(lsn.local_addr[1], certs, "brk")
    assert got == [(f"b/q{q}", f"tls {q}".encode(), min(q, 1)) for q in (0, 1, 2)]
    assert lsn.mqtt_broker_stats()["connects"] == 2
