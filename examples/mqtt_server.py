"""A raw MQTT listener that plays a tiny broker by hand (the original's pattern).

    python examples/mqtt_server.py            # mqtt://127.0.0.1:1883
    PORT=0 python examples/mqtt_server.py     # any free port (printed)

Try it with mosquitto's clients (Debian: mosquitto-clients):
    mosquitto_sub -h 127.0.0.1 -p 1883 -t 'demo/#' -v &
    mosquitto_pub -h 127.0.0.1 -p 1883 -t demo/hello -m world -q 1

Manager.mqtt_listen() parses MQTT and acknowledges QoS 1 and 2 publishes by
itself, but it is not a broker: the handler answers CONNECT with a CONNACK,
SUBSCRIBE with a SUBACK, remembers who subscribed to what, and forwards each
PUBLISH with mqtt_pub().  No sessions, no retained messages, no wills.
"""

import os

from cymongoose import MG_EV_CLOSE, MG_EV_MQTT_CMD, Manager

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "1883"))
CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT = 1, 3, 8, 10, 12, 14


def topic_filters(payload: bytes, with_qos: bool) -> list[tuple[str, int]]:
    """The (filter, qos) entries of a SUBSCRIBE (or UNSUBSCRIBE) payload:
    a two-byte length, the filter, then (SUBSCRIBE only) one options byte."""
    out, i = [], 0
    while i + 2 <= len(payload):
        n = int.from_bytes(payload[i : i + 2], "big")
        topic = payload[i + 2 : i + 2 + n].decode("utf-8", "replace")
        i += 2 + n
        qos = payload[i] & 3 if with_qos and i < len(payload) else 0
        i += 1 if with_qos else 0
        out.append((topic, qos))
    return out


def matches(topic: str, flt: str) -> bool:
    """MQTT topic matching: '+' is one level, '#' the rest."""
    t, f = topic.split("/"), flt.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or part not in ("+", t[i]):
            return False
    return len(t) == len(f)


class HandBroker:
    def __init__(self) -> None:
        self.subs: dict[int, tuple[object, dict[str, int]]] = {}  # conn id -> (conn, filters)

    def __call__(self, conn, ev, data) -> None:
        if ev == MG_EV_MQTT_CMD:
            self.on_packet(conn, data)
        elif ev == MG_EV_CLOSE:
            self.subs.pop(conn.id, None)

    def on_packet(self, conn, msg) -> None:
        packet_id = msg.id.to_bytes(2, "big")
        if msg.cmd == CONNECT:
            conn.send(b"\x20\x02\x00\x00")  # CONNACK: session present 0, accepted
        elif msg.cmd == SUBSCRIBE:
            wanted = topic_filters(msg.data, with_qos=True)
            self.subs.setdefault(conn.id, (conn, {}))[1].update(wanted)
            codes = bytes(qos for _, qos in wanted)
            conn.send(bytes([0x90, 2 + len(codes)]) + packet_id + codes)  # SUBACK
            print(f"[{conn.id}] subscribed to {[t for t, _ in wanted]}")
        elif msg.cmd == UNSUBSCRIBE:
            for topic, _ in topic_filters(msg.data, with_qos=False):
                self.subs.get(conn.id, (conn, {}))[1].pop(topic, None)
            conn.send(b"\xb0\x02" + packet_id)  # UNSUBACK
        elif msg.cmd == PUBLISH:
            print(f"[{conn.id}] {msg.topic}: {msg.data!r}")
            for sub, filters in list(self.subs.values()):
                qos = max((q for f, q in filters.items() if matches(msg.topic, f)), default=-1)
                if qos >= 0:
                    sub.mqtt_pub(msg.topic, msg.data, qos=min(qos, msg.qos))
        elif msg.cmd == PINGREQ:
            conn.mqtt_pong()
        elif msg.cmd == DISCONNECT:
            conn.close()


def main() -> None:
    manager = Manager()
    listener = manager.mqtt_listen(f"mqtt://{HOST}:{PORT}", HandBroker())
    print(f"MQTT listening on mqtt://{HOST}:{listener.local_addr[1]}", flush=True)
    manager.run()  # until Ctrl-C or SIGTERM


if __name__ == "__main__":
    main()
