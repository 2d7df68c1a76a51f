"""MQTT 3.1.1 broker interoperability, in the spirit of the Eclipse Paho
interoperability tests (paho.mqtt.testing, client_test.py): basic, retained
messages, offline queueing, redelivery on reconnect, overlapping
subscriptions, keep-alive, will, zero-length client id, subscribe failure,
$ topics, unsubscribe.

Every test runs against our broker (``Manager.mqtt_broker``), against ours
again with the paho clients over WebSocket (``transport="websockets"`` to a
ws:// listener; the raw clients of the keep-alive and will cases stay on
its TCP listener, so those cases also cross transports) and against
mosquitto 2.0 (Debian's), with the same paho-mqtt clients, so the run shows
that ours does at least what mosquitto does.  Where the standard
lets a broker choose (QoS 0 while offline, one or two copies for
overlapping subscriptions), both choices pass and ours is pinned down in
tests/py/test_mqtt_broker.py.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator

import pytest
from mqtt_brokers import NOSUBSCRIBE, Mosquitto, OurBroker, PahoClient, closed_by_peer, raw_connect

TOPICS = ("TopicA", "TopicA/B", "Topic/C", "TopicA/C", "/TopicA")
WILDTOPICS = ("TopicA/+", "+/C", "#", "/#", "/+", "+/+", "TopicA/#")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["cymongoose", "cymongoose-ws", "mosquitto"])
def broker(request: pytest.FixtureRequest, tmp_path) -> Iterator[OurBroker | Mosquitto]:
    if request.param == "mosquitto":
        if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
            pytest.skip("mosquitto not installed (scripts/bootstrap.sh installs it)")
        b: OurBroker | Mosquitto = Mosquitto(tmp_path)
    else:
        b = OurBroker()
        if request.param == "cymongoose-ws":  # paho over WebSocket, raw clients on TCP
            b.tcp_port = b.port
            b.port = b.listen("ws://127.0.0.1:0")
            b.transport = "websockets"
    yield b
    b.close()


def tcp_port(broker) -> int:
    """The port of the raw TCP clients."""
    return getattr(broker, "tcp_port", broker.port)


@pytest.fixture
def clients(broker) -> Iterator[list[PahoClient]]:
    made: list[PahoClient] = []
    yield made
    for c in made:
        c.c.loop_stop()
        c.c.disconnect()


def client(broker, clients, client_id: str, clean: bool = True,
           keepalive: int = 60) -> PahoClient:
    c = PahoClient(broker.port, client_id, clean=clean, keepalive=keepalive,
                   transport=getattr(broker, "transport", "tcp"))
    clients.append(c)
    return c


def test_basic(broker, clients):
    a = client(broker, clients, "basic")
    assert a.connect() == (0, False)
    assert a.subscribe(TOPICS[0], 2) == [2]
    for qos in (0, 1, 2):
        a.publish(TOPICS[0], b"qos %d" % qos, qos)
    got = a.received(3)
    want = [(TOPICS[0], b"qos %d" % q, q) for q in (0, 1, 2)]
    assert sorted((t, p, q) for t, p, q, _ in got) == want
    a.disconnect()


def test_retained_messages(broker, clients):
    a = client(broker, clients, "retained")
    a.connect()
    for qos, topic in zip((0, 1, 2), (TOPICS[1], TOPICS[2], TOPICS[3]), strict=True):
        a.publish(topic, b"retained qos %d" % qos, qos, retain=True)
    a.subscribe(WILDTOPICS[5], 2)  # +/+
    got = a.received(3)
    assert len(got) == 3
    assert all(retain for *_, retain in got)
    assert {t for t, *_ in got} == {TOPICS[1], TOPICS[2], TOPICS[3]}
    assert {q for _, _, q, _ in got} == {0, 1, 2}
    a.disconnect()
    # Cleared by an empty retained payload: a new subscriber gets nothing.
    b = client(broker, clients, "retained2")
    b.connect()
    for topic in (TOPICS[1], TOPICS[2], TOPICS[3]):
        b.publish(topic, b"", 1, retain=True)
    b.subscribe(WILDTOPICS[5], 2)
    assert b.quiet(1.0) == []
    b.disconnect()


def test_offline_message_queueing(broker, clients):
    a = client(broker, clients, "offline", clean=False)
    assert a.connect()[0] == 0
    a.subscribe(WILDTOPICS[5], 2)
    a.disconnect()
    b = client(broker, clients, "offline-pub")
    b.connect()
    for qos in (0, 1, 2):
        b.publish(TOPICS[1], b"qos %d" % qos, qos)
    b.disconnect()
    a2 = client(broker, clients, "offline", clean=False)
    assert a2.connect() == (0, True)
    got = a2.received(3, timeout=3)
    # QoS 0 may be dropped for an offline client (both brokers do, by default).
    assert len(got) in (2, 3)
    assert {p for _, p, _, _ in got} >= {b"qos 1", b"qos 2"}
    a2.disconnect()


def test_redelivery_on_reconnect(broker, clients):
    a = client(broker, clients, "redeliver", clean=False)
    a.connect()
    a.subscribe(WILDTOPICS[6], 2)  # TopicA/#
    a.stop()  # no network loop: nothing is acknowledged
    b = client(broker, clients, "redeliver-pub")
    b.connect()
    b.publish(TOPICS[1], b"qos 1", 1)
    b.publish(TOPICS[3], b"qos 2", 2)
    b.disconnect()
    a.c._sock_close()  # gone without DISCONNECT, with both unacknowledged
    a2 = client(broker, clients, "redeliver", clean=False)
    assert a2.connect() == (0, True)
    got = a2.received(2)
    assert sorted(p for _, p, _, _ in got) == [b"qos 1", b"qos 2"]
    a2.disconnect()


def test_overlapping_subscriptions(broker, clients):
    a = client(broker, clients, "overlap")
    a.connect()
    assert a.subscribe([(WILDTOPICS[6], 2), (WILDTOPICS[0], 1)]) == [2, 1]
    a.publish(TOPICS[3], b"overlapping topic filters", 2)
    got = a.received(2, timeout=2)
    assert len(got) in (1, 2)
    if len(got) == 1:  # one copy: at the highest QoS of the overlapping subscriptions (§3.3.5)
        if broker.name == "mosquitto" and got[0][2] != 2:
            a.disconnect()
            pytest.xfail("mosquitto 2.0 sends one copy at the QoS of one subscription, "
                         "not the highest")
        assert got[0][2] == 2
    else:
        assert sorted(q for _, _, q, _ in got) == [1, 2]
    a.disconnect()


def test_keepalive(broker, clients):
    a = client(broker, clients, "keepalive-watch")
    a.connect()
    a.subscribe(TOPICS[4], 2)
    s = raw_connect(tcp_port(broker), "keepalive", keepalive=2,
                    will=(TOPICS[4], b"keepalive expiry", 1, False))
    try:
        assert closed_by_peer(s, 10)  # silent for 1.5 x 2 s: closed
    finally:
        s.close()
    got = a.received(1)
    assert [(t, p) for t, p, _, _ in got] == [(TOPICS[4], b"keepalive expiry")]


def test_will_message(broker, clients):
    a = client(broker, clients, "will-watch")
    a.connect()
    a.subscribe(TOPICS[2], 2)
    s = raw_connect(tcp_port(broker), "will",
                    will=(TOPICS[2], b"client not disconnected", 0, False))
    s.close()  # no DISCONNECT
    got = a.received(1)
    assert [(t, p) for t, p, _, _ in got] == [(TOPICS[2], b"client not disconnected")]
    # After a DISCONNECT, no will.
    s = raw_connect(tcp_port(broker), "will2",
                    will=(TOPICS[2], b"must not arrive", 0, False))
    s.sendall(b"\xe0\x00")
    assert closed_by_peer(s, 5)
    s.close()
    assert a.quiet(0.5) == []


def test_zero_length_clientid(broker, clients):
    a = client(broker, clients, "", clean=True)
    assert a.connect()[0] == 0
    a.disconnect()
    with pytest.raises(ValueError):  # paho itself refuses to send it...
        PahoClient(broker.port, "", clean=False)
    # ... so a raw CONNECT asks: refused with 0x02 (identifier rejected).
    s = socket.create_connection(("127.0.0.1", tcp_port(broker)), timeout=10)
    s.sendall(b"\x10\x0c\x00\x04MQTT\x04\x00\x00\x3c\x00\x00")
    assert s.recv(4) == b"\x20\x02\x00\x02"
    assert closed_by_peer(s, 5)
    s.close()


def test_subscribe_failure(broker, clients):
    a = client(broker, clients, "subfail")
    a.connect()
    codes = a.subscribe(NOSUBSCRIBE, 2)
    if broker.name == "mosquitto" and codes != [0x80]:
        a.disconnect()
        pytest.xfail("mosquitto 2.0 grants a 3.1.1 subscription its ACL refuses "
                     "(SUBACK 2, no 0x80)")
    assert codes == [0x80]
    assert a.subscribe([(NOSUBSCRIBE, 1), (TOPICS[0], 1)]) == [0x80, 1]
    a.disconnect()


def test_dollar_topics(broker, clients):
    a = client(broker, clients, "dollar")
    a.connect()
    a.subscribe(WILDTOPICS[5], 2)  # +/+
    a.subscribe(WILDTOPICS[2], 2)  # #
    a.publish("$" + TOPICS[1], b"", 1)
    a.publish("$" + TOPICS[1], b"not for wildcards", 1, retain=False)
    assert a.quiet(1.0) == []
    a.disconnect()


def test_unsubscribe(broker, clients):
    a = client(broker, clients, "unsub")
    a.connect()
    for t in TOPICS[1:4]:
        a.subscribe(t, 2)
    a.c.unsubscribe(TOPICS[1])
    a.quiet(0.3)
    for t in TOPICS[1:4]:
        a.publish(t, b"unsubscribe", 1)
    got = a.received(2)
    assert sorted(t for t, *_ in got) == sorted([TOPICS[2], TOPICS[3]])
    assert a.quiet(0.5) == []
    a.disconnect()
