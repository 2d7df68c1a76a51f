"""An MQTT client: subscribe to a topic, publish to it, print what comes back.

    python examples/mqtt_client.py                       # broker mqtt://127.0.0.1:1883
    MQTT_URL=mqtt://test.mosquitto.org:1883 python examples/mqtt_client.py
    COUNT=10 QOS=2 TOPIC=demo/me python examples/mqtt_client.py

Any broker works (mosquitto, or examples/mqtt_server.py).  The client
connects with a will (published by the broker if we vanish without saying
goodbye), subscribes once MG_EV_MQTT_OPEN says the broker accepted us,
publishes COUNT messages, and leaves with DISCONNECT once it has received
them all.  QoS 1 and 2 acknowledgements are automatic; keep-alive pings are
not, so a timer sends them.
"""

import os
import sys
import time

from cymongoose import (
    MG_EV_CLOSE,
    MG_EV_ERROR,
    MG_EV_MQTT_CMD,
    MG_EV_MQTT_MSG,
    MG_EV_MQTT_OPEN,
    Manager,
)

URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")
TOPIC = os.environ.get("TOPIC", "cymongoose/example")
COUNT = int(os.environ.get("COUNT", "3"))
QOS = int(os.environ.get("QOS", "1"))
KEEPALIVE = 30
SUBACK = 9


class Client:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.done = False
        self.failed = ""

    def __call__(self, conn, ev, data) -> None:
        if ev == MG_EV_MQTT_OPEN:  # data: the CONNACK code, 0 = accepted
            if data != 0:
                self.failed = f"broker refused us: CONNACK {data}"
                return
            print(f"connected to {URL}")
            conn.mqtt_sub(TOPIC, qos=QOS)
        elif ev == MG_EV_MQTT_CMD and data.cmd == SUBACK:  # subscribed: now publish
            for i in range(COUNT):
                packet_id = conn.mqtt_pub(TOPIC, f"message {i}", qos=QOS)
                print(f"published message {i} (packet id {packet_id})")
        elif ev == MG_EV_MQTT_MSG:  # data: an MqttMessage, valid during this call only
            print(f"received {data.topic}: {data.text} (QoS {data.qos})")
            self.received.append(data.data)
            if len(self.received) == COUNT:
                conn.mqtt_disconnect()  # the broker closes; no will is published
                self.done = True
        elif ev == MG_EV_ERROR:
            self.failed = data
        elif ev == MG_EV_CLOSE and not self.done:
            self.failed = self.failed or "connection closed"


def main() -> int:
    client = Client()
    with Manager() as manager:
        conn = manager.mqtt_connect(URL, client, keepalive=KEEPALIVE, will_topic=TOPIC + "/status",
                                    will_message="client vanished", will_qos=1)
        manager.timer_add(KEEPALIVE * 1000 // 2, conn.mqtt_ping, repeat=True)
        deadline = time.monotonic() + 30
        while not client.done and not client.failed and time.monotonic() < deadline:
            manager.poll(100)
    if not client.done:
        print(f"failed: {client.failed or 'timed out'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
