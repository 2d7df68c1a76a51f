"""Our MQTT client (Manager.mqtt_connect) against mosquitto (SPEC 1.4-1.6, 2.12).

Every test runs its own mosquitto on a free loopback port (mqtt_peers.py).
Waits are bounded polls for an outcome; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import poll_until
from mqtt_peers import MqttLog, mosquitto

from cymongoose import (
    MG_EV_MQTT_CMD,
    MG_EV_MQTT_MSG,
    MQTT_PROP_TYPE_STRING_PAIR,
    AsyncManager,
    Manager,
    MqttMessage,
)

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 2, 3, 4, 5, 6, 7
SUBACK, UNSUBACK, PINGRESP = 9, 11, 13
USER_PROPERTY, CONTENT_TYPE, SESSION_EXPIRY = 0x26, 0x03, 0x11


@pytest.fixture
def broker():
    # One message in flight per client: a QoS 1/2 message is not sent before
    # the previous one is acknowledged, so receiving several proves our
    # automatic PUBACK / PUBREC / PUBCOMP.
    with mosquitto("allow_anonymous true\nmax_inflight_messages 1\n") as port:
        yield f"mqtt://127.0.0.1:{port}"


def connect(mgr: Manager, url: str, **kwargs) -> tuple[object, MqttLog]:
    log = MqttLog()
    conn = mgr.mqtt_connect(url, log, **kwargs)
    assert poll_until(mgr, log.opened), log.events
    return conn, log


def subscribe(mgr, conn, log, topic, qos=0, **kwargs):
    before = len(log.cmds(SUBACK))
    conn.mqtt_sub(topic, qos, **kwargs)
    assert poll_until(mgr, lambda: len(log.cmds(SUBACK)) > before), log.events


def test_connect_open_before_connack(manager, broker):
    conn, log = connect(manager, broker, client_id="cm-open", keepalive=30)
    assert log.events[:2] == [("open", 0), ("cmd", CONNACK, 0, 0)]
    assert conn.is_client and not conn.is_closing


def test_qos_0_1_2_publish_and_subscribe(manager, broker):
    conn, log = connect(manager, broker, client_id="cm-qos")
    subscribe(manager, conn, log, "t/#", 2)
    ids = [conn.mqtt_pub(f"t/q{q}", f"payload {q}".encode(), qos=q) for q in (0, 1, 2)]
    assert ids[0] == 0 and ids[1] > 0 and ids[2] == ids[1] + 1  # one counter
    assert poll_until(manager, lambda: len(log.msgs()) == 3), log.events
    got = sorted((m[1], m[2], m[3]) for m in log.msgs())
    assert got == [("t/q0", b"payload 0", 0), ("t/q1", b"payload 1", 1), ("t/q2", b"payload 2", 2)]
    # our publishes were acknowledged with the ids mqtt_pub returned ...
    assert poll_until(manager, lambda: log.cmds(PUBCOMP)), log.events
    assert [c[2] for c in log.cmds(PUBACK)] == [ids[1]]
    assert [c[2] for c in log.cmds(PUBREC)] == [ids[2]]
    assert [c[2] for c in log.cmds(PUBCOMP)] == [ids[2]]
    # ... and the broker's QoS 2 delivery went through PUBREL (we answered PUBCOMP)
    assert poll_until(manager, lambda: log.cmds(PUBREL)), log.events


def test_many_acknowledged_deliveries(manager, broker):
    """With one message in flight, each of 20 QoS 1 and 20 QoS 2 deliveries
    needs the automatic acknowledgement of the one before.  (Published one at
    a time: mosquitto 2.0 drops QoS 1 messages that arrive in a burst while
    the subscriber's only in-flight slot is taken.)"""
    sub, slog = connect(manager, broker, client_id="cm-sub")
    subscribe(manager, sub, slog, "many/+", 2)
    pub, _ = connect(manager, broker, client_id="cm-pub")
    for i in range(20):
        for n, qos in ((1, 1), (2, 2)):
            pub.mqtt_pub(f"many/{n}", str(i), qos=qos)
            want = 2 * i + n
            assert poll_until(manager, lambda w=want: len(slog.msgs()) == w), slog.events[-4:]
    assert poll_until(manager, lambda: len(slog.cmds(PUBREL)) == 20), slog.events[-4:]
    for topic, qos in (("many/1", 1), ("many/2", 2)):
        assert [m[2] for m in slog.msgs() if m[1] == topic] == [b"%d" % i for i in range(20)]
        assert {m[3] for m in slog.msgs() if m[1] == topic} == {qos}


def test_msg_before_cmd_and_view_invalid_after(manager, broker):
    kept: list[MqttMessage] = []
    order: list[str] = []
    log = MqttLog()

    def handler(conn, ev, data):
        log(conn, ev, data)
        if ev == MG_EV_MQTT_MSG:
            kept.append(data)
            order.append("msg")
        elif ev == MG_EV_MQTT_CMD and data.cmd == PUBLISH:
            order.append("cmd")

    conn = manager.mqtt_connect(broker, handler, client_id="cm-order")
    assert poll_until(manager, log.opened)
    subscribe(manager, conn, log, "o/t")
    conn.mqtt_pub("o/t", "hello")
    assert poll_until(manager, lambda: order == ["msg", "cmd"]), order
    view = kept[0]
    assert not view and view.topic == "" and view.data == b"" and view.text == ""
    assert (view.id, view.cmd, view.qos, view.ack, view.properties()) == (0, 0, 0, 0, [])


def test_retained(manager, broker):
    pub, plog = connect(manager, broker, client_id="cm-ret-pub")
    pub.mqtt_pub("r/t", "kept", qos=1, retain=True)
    pub.mqtt_pub("r/other", "not kept")
    pub.mqtt_ping()  # PINGRESP: everything before it was read by the broker
    assert poll_until(manager, lambda: plog.cmds(PINGRESP))
    sub, slog = connect(manager, broker, client_id="cm-ret-sub")
    subscribe(manager, sub, slog, "r/#", 1)
    assert poll_until(manager, lambda: slog.msgs()), slog.events
    assert [(m[1], m[2]) for m in slog.msgs()] == [("r/t", b"kept")]


def test_will_published_when_client_vanishes(manager, broker):
    watcher, wlog = connect(manager, broker, client_id="cm-watch")
    subscribe(manager, watcher, wlog, "wills/#", 1)
    doomed, dlog = connect(manager, broker, client_id="cm-doomed", will_topic="wills/doomed",
                           will_message=b"\x00gone", will_qos=1, will_retain=False)
    doomed.close()  # TCP closed without DISCONNECT: the broker sends the will
    assert poll_until(manager, lambda: wlog.msgs()), wlog.events
    assert [(m[1], m[2], m[3]) for m in wlog.msgs()] == [("wills/doomed", b"\x00gone", 1)]


def test_no_will_after_disconnect(manager, broker):
    watcher, wlog = connect(manager, broker, client_id="cm-watch2")
    subscribe(manager, watcher, wlog, "wills/#")
    subscribe(manager, watcher, wlog, "marker")
    polite, _ = connect(manager, broker, client_id="cm-polite", will_topic="wills/polite",
                        will_message="should not appear")
    polite.mqtt_disconnect()  # [MQTT-3.14.4-3]: the will is discarded
    assert poll_until(manager, lambda: polite.is_closing or polite.id == 0)  # the broker closes
    watcher.mqtt_pub("marker", "after")
    assert poll_until(manager, lambda: wlog.msgs())
    assert [m[1] for m in wlog.msgs()] == ["marker"]


def test_unsubscribe(manager, broker):
    conn, log = connect(manager, broker, client_id="cm-unsub")
    subscribe(manager, conn, log, "u/a")
    subscribe(manager, conn, log, "u/b")
    conn.mqtt_unsub("u/a")
    assert poll_until(manager, lambda: log.cmds(UNSUBACK)), log.events
    conn.mqtt_pub("u/a", "dropped")
    conn.mqtt_pub("u/b", "delivered")  # in order on one connection: u/a came first
    assert poll_until(manager, lambda: log.msgs())
    assert [(m[1], m[2]) for m in log.msgs()] == [("u/b", b"delivered")]


def test_ping(manager, broker):
    conn, log = connect(manager, broker)  # random client id
    conn.mqtt_ping()
    assert poll_until(manager, lambda: log.cmds(PINGRESP)), log.events


def test_mqtt5_properties(manager, broker):
    props = [{"id": SESSION_EXPIRY, "iv": 0}, {"id": USER_PROPERTY, "key": "client", "val": "cm"}]
    conn, log = connect(manager, broker, client_id="cm-v5", version=5, properties=props)
    assert log.events[0] == ("open", 0)
    subscribe(manager, conn, log, "v5/t", 1)
    pub_props = [
        {"id": CONTENT_TYPE, "val": "text/plain"},
        {"id": USER_PROPERTY, "key": "k1", "val": "v1"},
        {"id": USER_PROPERTY, "key": "k2", "val": "v2"},
    ]
    assert conn.mqtt_pub("v5/t", "five", qos=1, properties=pub_props) > 0
    assert poll_until(manager, lambda: log.msgs()), log.events
    _, topic, data, qos, got = log.msgs()[0]
    assert (topic, data, qos) == ("v5/t", b"five", 1)
    users = [(p["key"], p["val"]) for p in got if p["id"] == USER_PROPERTY]
    assert users == [("k1", "v1"), ("k2", "v2")]
    assert {"id": CONTENT_TYPE, "iv": 0, "key": "", "val": "text/plain"} in got
    assert MQTT_PROP_TYPE_STRING_PAIR == 2


def test_mqtt5_connack_properties_and_will(manager, broker):
    seen = []
    log = MqttLog()

    def handler(conn, ev, data):
        log(conn, ev, data)
        if ev == MG_EV_MQTT_CMD and data.cmd == CONNACK:
            seen.extend(data.properties())

    watcher, wlog = connect(manager, broker, client_id="cm-w5", version=5)
    subscribe(manager, watcher, wlog, "w5")
    doomed = manager.mqtt_connect(broker, handler, client_id="cm-d5", version=5, will_topic="w5",
                                  will_message="bye", will_properties=[{"id": CONTENT_TYPE,
                                                                        "val": "text/x"}])
    assert poll_until(manager, log.opened)
    # mosquitto 2 announces some of its limits in CONNACK (§3.2.2.3)
    assert all(set(p) == {"id", "iv", "key", "val"} for p in seen)
    doomed.close()
    assert poll_until(manager, lambda: wlog.msgs()), wlog.events
    assert wlog.msgs()[0][1:3] == ("w5", b"bye")
    assert {"id": CONTENT_TYPE, "iv": 0, "key": "", "val": "text/x"} in wlog.msgs()[0][4]


def test_refused_connack_closes():
    with mosquitto("allow_anonymous false\n") as port, Manager() as mgr:
        log = MqttLog()
        conn = mgr.mqtt_connect(f"mqtt://127.0.0.1:{port}", log, username="nobody", password="x")
        assert poll_until(mgr, lambda: log.of("close")), log.events
        assert log.events[:3] == [("open", 5), ("cmd", CONNACK, 0, 5), ("close",)]
        assert conn.id == 0  # the object is closed


def test_connect_argument_errors(manager):
    with pytest.raises(RuntimeError, match="Failed to connect to MQTT broker ''"):
        manager.mqtt_connect("")
    with pytest.raises(ValueError, match="version"):
        manager.mqtt_connect("mqtt://127.0.0.1:1", version=6)
    with pytest.raises(ValueError, match="password needs a username"):
        manager.mqtt_connect("mqtt://127.0.0.1:1", password="p")
    with pytest.raises(ValueError, match="will_qos"):
        manager.mqtt_connect("mqtt://127.0.0.1:1", will_topic="w", will_qos=3)
    with pytest.raises(ValueError, match="keepalive"):
        manager.mqtt_connect("mqtt://127.0.0.1:1", keepalive=70000)
    with pytest.raises(ValueError, match="version=5"):
        manager.mqtt_connect("mqtt://127.0.0.1:1", properties=[{"id": SESSION_EXPIRY, "iv": 1}])
    with pytest.raises(ValueError, match="not allowed"):  # Topic Alias is for PUBLISH
        manager.mqtt_connect("mqtt://127.0.0.1:1", version=5, properties=[{"id": 0x23, "iv": 1}])
    with pytest.raises(ValueError, match="unknown id"):
        manager.mqtt_connect("mqtt://127.0.0.1:1", version=5, properties=[{"id": 0x7E}])
    with pytest.raises(ValueError, match="null character"):
        manager.mqtt_connect("mqtt://127.0.0.1:1", client_id="a\0b")
    with pytest.raises(TypeError):
        manager.mqtt_connect("mqtt://127.0.0.1:1", version=5, properties=[1])
    assert manager.connections == ()
    # MQTT 5 lets a password go without a user name
    conn = manager.mqtt_connect("mqtt://127.0.0.1:1", version=5, password="p")
    assert conn.id > 0


def test_methods_after_close_and_bad_arguments(manager, broker):
    conn, log = connect(manager, broker, client_id="cm-closed")
    with pytest.raises(ValueError, match="qos"):
        conn.mqtt_pub("t", "x", qos=3)
    with pytest.raises(ValueError, match="qos"):
        conn.mqtt_sub("t", qos=-1)
    with pytest.raises(ValueError, match="version=5"):
        conn.mqtt_pub("t", "x", properties=[{"id": CONTENT_TYPE, "val": "a"}])
    with pytest.raises(TypeError):
        conn.mqtt_pub("t", 42)
    conn.close()
    assert poll_until(manager, lambda: conn.id == 0)
    calls = (lambda: conn.mqtt_pub("t", "x"), lambda: conn.mqtt_sub("t"),
             lambda: conn.mqtt_unsub("t"), conn.mqtt_ping, conn.mqtt_pong, conn.mqtt_disconnect)
    for call in calls:
        with pytest.raises(RuntimeError, match="closed"):
            call()


def test_packet_ids_one_counter_per_manager(manager):
    a = manager.listen("tcp://127.0.0.1:0")
    b = manager.listen("tcp://127.0.0.1:0")
    first = a.mqtt_pub("t", "x", qos=1)
    assert b.mqtt_pub("t", "x", qos=2) == first + 1
    assert a.mqtt_pub("t", "x", qos=0) == 0
    with Manager() as other:  # a counter per manager
        assert other.listen("tcp://127.0.0.1:0").mqtt_pub("t", "x", qos=1) == 1


def test_async_manager_mqtt(broker):
    """AsyncManager.mqtt_connect / mqtt_listen pass everything through to the Manager."""
    async def main() -> list[tuple]:
        log = MqttLog()
        async with AsyncManager() as am:
            lsn = am.mqtt_listen("mqtt://127.0.0.1:0")
            assert lsn.is_listening
            conn = am.mqtt_connect(broker, handler=log, client_id="cm-aio", version=5)
            for _ in range(500):
                if log.opened():
                    break
                await asyncio.sleep(0.01)
            assert conn.id > 0
        return log.events

    events = asyncio.run(main())
    assert events[:2] == [("open", 0), ("cmd", CONNACK, 0, 0)]
