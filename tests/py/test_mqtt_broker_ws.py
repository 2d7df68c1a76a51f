"""Our MQTT broker over WebSocket and TLS with real peers: paho-mqtt's
``transport="websockets"`` on ws:// and wss:// (an ssl context trusting the test CA),
mosquitto_pub / mosquitto_sub with ``--cafile`` on mqtts://, a message from TCP to a
WebSocket subscriber and back, one session store behind mqtt:// and ws://, what HTTP
and WebSocket clients that do not speak MQTT get, and the command line serving
mqtt://, ws:// and mqtts:// side by side.  The C side (frames, handshake answers,
text frames, plaintext on a TLS port) is tests/c/test_mqtt_broker_ws.c."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time

import paho.mqtt.client as mqtt
import pytest
import tls_certs
from mqtt_brokers import HOST, OurBroker, PahoClient, free_port, wait_port

from cymongoose import TlsOpts

pytestmark = pytest.mark.timeout(60)

needs_clients = pytest.mark.skipif(shutil.which("mosquitto_pub") is None,
                                   reason="mosquitto-clients not installed")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tls_certs.Certs:
    return tls_certs.make(tmp_path_factory.getbasetemp() / "tls-certs")


@pytest.fixture
def broker():
    b = OurBroker()
    yield b
    b.close()


def server_tls(certs: tls_certs.Certs) -> TlsOpts:
    return TlsOpts(cert=certs.leaf.cert, key=certs.leaf.key)


def trusting(certs: tls_certs.Certs) -> ssl.SSLContext:
    """A client context that trusts the test CA only (and checks the host name)."""
    return ssl.create_default_context(cafile=str(certs.root.cert_path))


@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_paho_websockets_qos_0_1_2(broker, version):
    port = broker.listen(f"ws://{HOST}:0")
    c = PahoClient(port, f"web-{version}", version=version, transport="websockets")
    assert c.connect() == (0, False)
    assert c.subscribe("w/#", 2) == [2]
    big = bytes(range(256)) * 1200  # 300 KB: many TCP segments, one WebSocket message
    for qos, payload in ((0, b"zero"), (1, b"one"), (2, b"two"), (1, big)):
        c.publish(f"w/{qos}", payload, qos)
    got = c.received(4)
    assert [(t, p, q) for t, p, q, _ in got] == [
        ("w/0", b"zero", 0), ("w/1", b"one", 1), ("w/2", b"two", 2), ("w/1", big, 1)]
    st = broker.stats()
    assert st["clients"] == 1 and st["messages_in"] == 4 and st["messages_out"] == 4
    c.disconnect()


def test_paho_websockets_over_tls(broker, certs):
    port = broker.listen(f"wss://{HOST}:0/mqtt", tls=server_tls(certs))
    c = PahoClient(port, "secure-web", transport="websockets", ssl_context=trusting(certs))
    assert c.connect() == (0, False)
    c.subscribe("s/t", 1)
    c.publish("s/t", b"over wss", 1)
    assert c.received(1)[0][:2] == ("s/t", b"over wss")
    c.disconnect()
    # The certificate is what TLS checks: a client that does not trust its CA fails.
    stranger = PahoClient(port, "stranger", transport="websockets",
                          ssl_context=ssl.create_default_context())
    with pytest.raises(ssl.SSLCertVerificationError):
        stranger.connect()


@needs_clients
def test_mosquitto_clients_over_mqtts(broker, certs):
    port = broker.listen(f"mqtts://{HOST}:0", tls=server_tls(certs))
    tls = ["--cafile", str(certs.root.cert_path)]
    sub = subprocess.Popen(["mosquitto_sub", "-h", HOST, "-p", str(port), *tls, "-t", "m/#",
                            "-q", "1", "-C", "2", "-v", "-W", "20"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 15
    while broker.stats()["subscriptions"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in (1, 2):
        subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), *tls, "-t", f"m/{i}", "-m",
                        f"tls {i}", "-q", "1"], check=True, timeout=20)
    out, err = sub.communicate(timeout=20)
    assert sub.returncode == 0, err
    assert out == "m/1 tls 1\nm/2 tls 2\n"
    # Plaintext MQTT on the TLS port is not served.
    r = subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(port), "-t", "m/x", "-m", "clear"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert broker.stats()["messages_in"] == 2


def test_tcp_to_websocket_and_back(broker):
    wport = broker.listen(f"ws://{HOST}:0")
    tcp = PahoClient(broker.port, "tcp-side")
    web = PahoClient(wport, "web-side", transport="websockets")
    assert tcp.connect()[0] == 0 and web.connect()[0] == 0
    assert web.subscribe("to/web", 1) == [1]
    assert tcp.subscribe("to/tcp", 1) == [1]
    tcp.publish("to/web", b"from TCP", 1)
    assert web.received(1)[0][:3] == ("to/web", b"from TCP", 1)
    web.publish("to/tcp", b"from WebSocket", 1)
    assert tcp.received(1)[0][:3] == ("to/tcp", b"from WebSocket", 1)
    assert not tcp.quiet(0.2) and not web.quiet(0.2)  # each message once, to its subscriber
    tcp.disconnect()
    web.disconnect()


def test_one_session_store_behind_mqtt_and_ws(broker):
    wport = broker.listen(f"ws://{HOST}:0")
    a = PahoClient(broker.port, "roamer", clean=False)
    assert a.connect() == (0, False)
    a.subscribe("roam/#", 1)
    a.disconnect()
    pub = PahoClient(broker.port, "pub")
    pub.connect()
    for i in range(3):
        pub.publish(f"roam/{i}", f"queued {i}".encode(), 1)
    pub.disconnect()
    # The same client id over WebSocket finds its session and what was queued.
    b = PahoClient(wport, "roamer", clean=False, transport="websockets")
    assert b.connect() == (0, True)
    assert [m[1] for m in b.received(3)] == [b"queued 0", b"queued 1", b"queued 2"]
    st = broker.stats()
    assert st["sessions"] == 1 and st["subscriptions"] == 1
    # And a takeover across transports closes the WebSocket one.
    c = PahoClient(broker.port, "roamer", clean=False)
    assert c.connect() == (0, True)
    assert b.disconnected.wait(10)
    b.c.loop_stop()
    c.disconnect()


def test_what_other_http_and_websocket_clients_get(broker):
    websockets_sync = pytest.importorskip("websockets.sync.client")
    from websockets.exceptions import InvalidStatus

    port = broker.listen(f"ws://{HOST}:0/mqtt")
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    conn.request("GET", "/mqtt")
    r = conn.getresponse()
    assert r.status == 426 and r.getheader("Upgrade") == "websocket"
    assert b"Sec-WebSocket-Protocol: mqtt" in r.read()
    conn.close()
    with pytest.raises(InvalidStatus) as e:
        websockets_sync.connect(f"ws://{HOST}:{port}/mqtt", open_timeout=10)
    assert e.value.response.status_code == 400  # no "mqtt" subprotocol offered
    with pytest.raises(InvalidStatus) as e:
        websockets_sync.connect(f"ws://{HOST}:{port}/elsewhere", subprotocols=["mqtt"],
                                open_timeout=10)
    assert e.value.response.status_code == 404
    # Offering mqtt, any WebSocket client speaks MQTT in binary messages.
    with websockets_sync.connect(f"ws://{HOST}:{port}/mqtt", subprotocols=["mqtt"],
                                 open_timeout=10) as ws:
        assert ws.subprotocol == "mqtt"
        ws.send(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01w")
        assert ws.recv(timeout=10) == b"\x20\x02\x00\x00"
        ws.send(b"\xc0\x00")  # PINGREQ
        assert ws.recv(timeout=10) == b"\xd0\x00"
    assert broker.stats()["connects"] == 1


def _cli_env() -> dict[str, str]:
    """The environment of a `python -m cymongoose` child.  Under scripts/asan-pytest.sh
    the extension needs the ASan runtime preloaded, which that script keeps from children
    (curl would hang): this child is ours, so it gets it back."""
    env = dict(os.environ)
    with open("/proc/self/maps") as f:
        asan = next((ln.split()[-1] for ln in f if "/libasan.so" in ln), None)
    if asan is not None:
        env["LD_PRELOAD"] = asan
    return env


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cymongoose", "mqtt-broker", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_cli_env())


def _cli_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cymongoose", "mqtt-broker", *args],
                          capture_output=True, text=True, timeout=30, env=_cli_env())


def test_cli_serves_mqtt_ws_and_mqtts_side_by_side(certs):
    ports = [free_port() for _ in range(3)]
    proc = _cli("--listen", f"mqtt://{HOST}:{ports[0]}", "--listen", f"ws://{HOST}:{ports[1]}",
                "--listen", f"mqtts://{HOST}:{ports[2]}", "--tls-cert", str(certs.leaf.cert_path),
                "--tls-key", str(certs.leaf.key_path))
    clients = []
    try:
        for p in ports:
            wait_port(p)
        tcp = PahoClient(ports[0], "cli-tcp")
        web = PahoClient(ports[1], "cli-web", transport="websockets")
        sec = PahoClient(ports[2], "cli-tls", ssl_context=trusting(certs))
        clients = [tcp, web, sec]
        for c in clients:
            assert c.connect()[0] == 0
        for c in clients:
            assert c.subscribe("cli/#", 1) == [1]
        for i, c in enumerate(clients):
            c.publish(f"cli/{i}", f"via {i}".encode(), 1)
        for c in clients:  # every client gets every message, whichever listener it came in by
            got = sorted(m[1] for m in c.received(3))
            assert got == [b"via 0", b"via 1", b"via 2"]
        for c in clients:
            c.disconnect()
        clients = []
    finally:
        for c in clients:
            c.c.loop_stop()
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err
    for p, scheme in zip(ports, ("mqtt", "ws", "mqtts"), strict=True):
        assert f"MQTT broker listening on {scheme}://{HOST}:{p}" in err


def test_cli_tls_options_must_match_the_listeners(certs):
    r = _cli_run("--listen", f"wss://{HOST}:0")
    assert r.returncode == 2 and "--tls-cert" in r.stderr
    r = _cli_run("--listen", f"mqtt://{HOST}:0", "--tls-cert", str(certs.leaf.cert_path),
                 "--tls-key", str(certs.leaf.key_path))
    assert r.returncode == 2 and "mqtts:// or wss://" in r.stderr


def test_mqtt_broker_arguments(broker, certs):
    with pytest.raises(ValueError, match="mqtts:// or wss://"):
        broker.call(lambda: broker.mgr.mqtt_broker(f"ws://{HOST}:0", tls=server_tls(certs)))
    with pytest.raises(TypeError, match="TlsOpts"):
        broker.call(lambda: broker.mgr.mqtt_broker(f"wss://{HOST}:0", tls=b"pem"))
    with pytest.raises(ValueError, match="serves mqtt://"):
        broker.call(lambda: broker.mgr.mqtt_broker(f"http://{HOST}:0"))
    # A later listener may leave the first call's options out, not change them.
    broker.listen(f"ws://{HOST}:0")
    with pytest.raises(ValueError, match="running already"):
        broker.call(lambda: broker.mgr.mqtt_broker(f"ws://{HOST}:0", max_queued=5))
