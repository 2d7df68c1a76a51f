"""A tiny MQTT broker on cymongoose: Manager.mqtt_broker(), a log of the traffic,
a password check, one private topic tree, its state kept across restarts, and a
WebSocket listener for browsers.

    python examples/mqtt_broker.py                 # mqtt://127.0.0.1:1883, ws://127.0.0.1:8080/mqtt
    PORT=0 WS_PORT=0 python examples/mqtt_broker.py  # any free ports (printed)
    PERSIST=broker.db python examples/mqtt_broker.py

Try it (Debian: apt-get install mosquitto-clients):
    mosquitto_sub -p 1883 -t 'sensors/#' -v &
    mosquitto_pub -p 1883 -t sensors/kitchen -m 21.5 -r
    mosquitto_pub -p 1883 -u admin -P admin -t admin/reboot -m now   # only admin may
    mosquitto_sub -p 1883 -t '$SYS/broker/stats' -C 1                # counters, every 5 s

From a web page, MQTT.js speaks to the ws:// listener (same broker, same topics):
    <script src="https://unpkg.com/mqtt/dist/mqtt.min.js"></script>
    <script>
      const client = mqtt.connect("ws://127.0.0.1:8080/mqtt");
      client.on("connect", () => client.subscribe("sensors/#"));
      client.on("message", (topic, payload) => console.log(topic, payload.toString()));
    </script>
(paho-mqtt: mqtt.Client(..., transport="websockets") and ws_set_options(path="/mqtt").)

The broker is C; Python runs only the hooks and the handler: auth() once per
CONNECT, acl() once per PUBLISH and per SUBSCRIBE filter, the handler once per
message (MG_EV_MQTT_MSG, an MqttMessage valid during the call).
"""

import json
import os

from cymongoose import MG_EV_CLOSE, MG_EV_MQTT_MSG, MG_EV_OPEN, Manager

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "1883"))
WS_PORT = int(os.environ.get("WS_PORT", "8080"))
PERSIST = os.environ.get("PERSIST") or None
USERS = {"admin": "admin"}  # username -> password; anyone else connects anonymously


def auth(client_id, username, password):
    """Anonymous clients are welcome; a client that names a user needs its password."""
    return username is None or USERS.get(username) == password


def acl(client_id, username, topic, is_publish):
    """admin/... is for the admin user only (publish and subscribe)."""
    return not topic.startswith("admin/") or username == "admin"


def handler(conn, ev, data):
    if ev == MG_EV_MQTT_MSG:
        who = conn.remote_addr[0]
        print(f"{who} -> {data.topic} (QoS {data.qos}): {data.data[:60]!r}", flush=True)
    elif ev == MG_EV_OPEN and not conn.is_listening:
        print(f"client connected from {conn.remote_addr[0]}:{conn.remote_addr[1]}", flush=True)
    elif ev == MG_EV_CLOSE and not conn.is_listening:
        print(f"client {conn.remote_addr[0]}:{conn.remote_addr[1]} gone", flush=True)


def main() -> None:
    manager = Manager()
    listener = manager.mqtt_broker(f"mqtt://{HOST}:{PORT}", handler=handler, persist=PERSIST,
                                   auth=auth, acl=acl)
    host, port = listener.local_addr[0], listener.local_addr[1]
    # The same broker for browsers: MQTT inside WebSocket (subprotocol "mqtt") on /mqtt,
    # the path MQTT.js and paho use by default.  Later listeners take the first call's
    # options (persist, auth, acl); the handler is per listener.
    ws = manager.mqtt_broker(f"ws://{HOST}:{WS_PORT}/mqtt", handler=handler)
    ws_port = ws.local_addr[1]

    def publish_stats():  # the broker publishes its own counters, retained
        stats = json.dumps(listener.mqtt_broker_stats())
        listener.mqtt_broker_publish("$SYS/broker/stats", stats, qos=0, retain=True)

    manager.timer_add(5000, publish_stats, repeat=True, run_now=True)
    print(f"MQTT broker on mqtt://{host}:{port} and ws://{host}:{ws_port}/mqtt  (Ctrl-C to stop)",
          flush=True)
    manager.run()  # until SIGINT/SIGTERM; closing saves the persistence file
    print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
