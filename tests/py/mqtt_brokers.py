"""Brokers and clients for the MQTT broker tests.

``OurBroker`` runs ``Manager.mqtt_broker`` on a loop thread of its own;
``Mosquitto`` starts Debian's mosquitto 2.0 on a free loopback port with the
configuration the interoperability tests need (anonymous clients, an ACL
refusing ``test/nosubscribe``).  ``PahoClient`` wraps paho-mqtt with queues;
``raw_connect`` is a bare socket client for what paho will not do (close
without DISCONNECT, go silent past the keep-alive).

Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cymongoose import MG_EV_MQTT_MSG, Manager

HOST = "127.0.0.1"
NOSUBSCRIBE = "test/nosubscribe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def deny_nosubscribe(client_id: str, username: str | None, topic: str, is_publish: bool) -> bool:
    """The ACL of the interoperability tests: one topic may not be subscribed to."""
    return is_publish or topic != NOSUBSCRIBE


class OurBroker:
    """``Manager.mqtt_broker`` polled by a thread; ``call(fn)`` runs fn on it."""

    name = "cymongoose"

    def __init__(self, error_handler: Callable[[BaseException], None] | None = None,
                 **opts: Any) -> None:
        self.mgr = Manager(error_handler=error_handler)
        self.published: list[tuple[str, bytes, int]] = []
        self.opened = self.closed = 0
        opts.setdefault("acl", deny_nosubscribe)
        self.listener = self.mgr.mqtt_broker(f"mqtt://{HOST}:0", handler=self._handler, **opts)
        self.port = self.listener.local_addr[1]
        self._calls: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="broker", daemon=True)
        self._thread.start()

    def listen(self, url: str, **opts: Any) -> int:
        """Another listener of the same broker (ws://, mqtts:// ...); returns its port."""
        conn = self.call(lambda: self.mgr.mqtt_broker(url, handler=self._handler, **opts))
        return conn.local_addr[1]

    def _handler(self, conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_MQTT_MSG:
            self.published.append((data.topic, data.data, data.qos))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.mgr.poll(10)
            while True:
                try:
                    fn, box = self._calls.get_nowait()
                except queue.Empty:
                    break
                try:
                    box.put((True, fn()))
                except Exception as e:  # handed back to the caller
                    box.put((False, e))

    def call(self, fn: Callable[[], Any]) -> Any:
        box: queue.Queue = queue.Queue()
        self._calls.put((fn, box))
        ok, value = box.get(timeout=10)
        if not ok:
            raise value
        return value

    def stats(self) -> dict[str, int]:
        return self.call(self.listener.mqtt_broker_stats)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.mgr.close()


class Mosquitto:
    """mosquitto 2.0 on a free loopback port, with its default behaviour
    except for what the tests need: anonymous clients and the ACL."""

    name = "mosquitto"

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        acl = workdir / "acl"
        acl.write_text(f"topic readwrite #\ntopic deny {NOSUBSCRIBE}\n")
        self.port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} {HOST}\nallow_anonymous true\n"
                        f"acl_file {acl}\npersistence false\nuser root\n")
        self.log = open(workdir / "mosquitto.log", "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            wait_port(self.port)
        except TimeoutError:
            self.close()
            raise

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


class PahoClient:
    """A paho-mqtt client whose messages land in a queue."""

    def __init__(self, port: int, client_id: str = "", clean: bool = True,
                 version: int = mqtt.MQTTv311, keepalive: int = 60, transport: str = "tcp",
                 ws_path: str = "/mqtt", ssl_context: Any = None) -> None:
        kw: dict[str, Any] = {"client_id": client_id, "protocol": version,
                              "transport": transport}
        if version != mqtt.MQTTv5:
            kw["clean_session"] = clean
        self.clean = clean
        self.version = version
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, **kw)
        if transport == "websockets":
            self.c.ws_set_options(path=ws_path)
        if ssl_context is not None:
            self.c.tls_set_context(ssl_context)
        self.port = port
        self.keepalive = keepalive
        self.messages: queue.Queue = queue.Queue()
        self.suback: queue.Queue = queue.Queue()
        self.connack: queue.Queue = queue.Queue()
        self.disconnected = threading.Event()
        self.c.on_message = lambda c, u, m: self.messages.put(
            (m.topic, m.payload, m.qos, m.retain))
        self.c.on_subscribe = lambda c, u, mid, codes, props: self.suback.put(
            [int(x.value) for x in codes])
        self.c.on_connect = lambda c, u, flags, rc, props: self.connack.put(
            (int(rc.value), flags.session_present))
        self.c.on_disconnect = lambda c, u, flags, rc, props: self.disconnected.set()

    def connect(self, **kw: Any) -> tuple[int, bool]:
        self.disconnected.clear()
        if self.version == mqtt.MQTTv5:
            kw.setdefault("clean_start", self.clean)
        self.c.connect(HOST, self.port, self.keepalive, **kw)
        self.c.loop_start()
        return self.connack.get(timeout=10)

    def subscribe(self, topic: Any, qos: int = 0) -> list[int]:
        self.c.subscribe(topic, qos)
        return self.suback.get(timeout=10)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> None:
        info = self.c.publish(topic, payload, qos, retain)
        if qos > 0:
            info.wait_for_publish(10)
            assert info.is_published()

    def received(self, count: int, timeout: float = 10.0) -> list[tuple[str, bytes, int, bool]]:
        out = []
        end = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < end:
            with contextlib.suppress(queue.Empty):
                out.append(self.messages.get(timeout=max(0.01, end - time.monotonic())))
        return out

    def quiet(self, seconds: float = 0.5) -> list[tuple[str, bytes, int, bool]]:
        """Whatever arrives within `seconds` (to show that nothing does)."""
        time.sleep(seconds)
        out = []
        while not self.messages.empty():
            out.append(self.messages.get_nowait())
        return out

    def disconnect(self) -> None:
        self.c.disconnect()
        self.disconnected.wait(10)
        self.c.loop_stop()

    def stop(self) -> None:
        """Stop the network loop without DISCONNECT (the socket stays open)."""
        self.c.loop_stop()


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def _length(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n % 128, n // 128
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def raw_connect(port: int, client_id: str, keepalive: int = 60,
                will: tuple[str, bytes, int, bool] | None = None,
                clean: bool = True) -> socket.socket:
    """A bare MQTT 3.1.1 client: CONNECT sent, CONNACK 0 checked."""
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will is not None:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + struct.pack(">H", len(msg)) + msg
    body = _str("MQTT") + bytes([4, flags]) + struct.pack(">H", keepalive) + payload
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(b"\x10" + _length(len(body)) + body)
    ack = s.recv(4)
    assert ack[:2] == b"\x20\x02" and ack[3] == 0, ack
    return s


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """True once the broker closed `s` (EOF or reset) within `timeout`."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True
