"""MQTT client publish rate: ONE script for ours and the original cymongoose.

    python mqtt_pub_bench.py BROKER_PORT COUNT QOS WINDOW MAX_SECONDS

Connects to an MQTT broker (mosquitto) on 127.0.0.1:BROKER_PORT and
publishes COUNT messages of 100 bytes to one topic nobody subscribes to, as
fast as the loop lets it, then measures until the broker has taken them all:

  QoS 0  publish in batches of WINDOW, polling between batches; then one
         PINGREQ: its PINGRESP comes after the broker read every PUBLISH
         before it (one TCP stream, processed in order).
  QoS 1  keep WINDOW messages in flight: publish the next one on each
         PUBACK (MG_EV_MQTT_CMD with cmd 4); done at the COUNT-th PUBACK.

The client process's CPU time is reported too (user + system).  Prints one
JSON line; "ok" is false if the run timed out or the connection failed.
"""

import json
import os
import sys
import time

from cymongoose import MG_EV_ERROR, MG_EV_MQTT_CMD, MG_EV_MQTT_OPEN, Manager

PAYLOAD = b"x" * 100
TOPIC = "bench/pub"
PUBACK, PINGRESP = 4, 13


class State:
    opened = False
    failed = ""
    acked = 0
    pongs = 0


def main() -> None:
    port, count, qos, window = (int(a) for a in sys.argv[1:5])
    max_seconds = float(sys.argv[5])
    st = State()

    def handler(conn, ev, data):
        if ev == MG_EV_MQTT_CMD:
            if data.cmd == PUBACK:
                st.acked += 1
            elif data.cmd == PINGRESP:
                st.pongs += 1
        elif ev == MG_EV_MQTT_OPEN:
            st.opened = data == 0
        elif ev == MG_EV_ERROR:
            st.failed = str(data)

    mgr = Manager()
    conn = mgr.mqtt_connect(f"mqtt://127.0.0.1:{port}", handler, client_id=f"bench-{os.getpid()}",
                            clean_session=True, keepalive=60)
    deadline = time.monotonic() + 10
    while not st.opened and not st.failed and time.monotonic() < deadline:
        mgr.poll(10)
    t0, c0 = time.perf_counter(), os.times()
    end = time.monotonic() + max_seconds
    sent = 0
    if qos == 0:
        while sent < count and not st.failed and time.monotonic() < end:
            for _ in range(min(window, count - sent)):
                conn.mqtt_pub(TOPIC, PAYLOAD, qos=0)
            sent += min(window, count - sent)
            mgr.poll(0)
        conn.mqtt_ping()
        while st.pongs == 0 and not st.failed and time.monotonic() < end:
            mgr.poll(1)
        done = st.pongs > 0
    else:
        while st.acked < count and not st.failed and time.monotonic() < end:
            while sent < count and sent - st.acked < window:
                conn.mqtt_pub(TOPIC, PAYLOAD, qos=qos)
                sent += 1
            mgr.poll(1)
        done = st.acked >= count
    secs = time.perf_counter() - t0
    c1 = os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    mgr.close()
    print(json.dumps({"ok": bool(done and st.opened and not st.failed), "count": count, "qos": qos,
                      "seconds": secs, "per_second": count / secs if secs > 0 else 0.0,
                      "cpu_us_per_msg": cpu * 1e6 / count, "error": st.failed}), flush=True)


if __name__ == "__main__":
    main()
