"""Helpers shared by the MQTT tests: a mosquitto broker of our own on a free
loopback port, and a recorder of MQTT events.

The broker gets a generated configuration (one listener on 127.0.0.1, no
persistence, nothing written outside its temporary directory) and is stopped
(SIGTERM, then SIGKILL) when the ``with`` block ends.  Everything is bounded.
With ``tls=`` (a CA file, a certificate chain file and its key file, e.g. from
tls_certs.py) the listener speaks MQTT over TLS only (mqtts://).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cymongoose import MG_EV_CLOSE, MG_EV_ERROR, MG_EV_MQTT_CMD, MG_EV_MQTT_MSG, MG_EV_MQTT_OPEN

HOST = "127.0.0.1"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
        return True
    return False


def _tls_lines(tmp: str, tls: tuple[Path, Path, Path] | None) -> str:
    """The listener's TLS options; the files copied next to the configuration,
    readable by the user mosquitto drops to when started as root."""
    if tls is None:
        return ""
    lines = ""
    for option, src in zip(("cafile", "certfile", "keyfile"), tls, strict=True):
        dst = Path(tmp) / f"{option}.pem"
        shutil.copyfile(src, dst)
        dst.chmod(0o644)
        lines += f"{option} {dst}\n"
    Path(tmp).chmod(0o755)
    return lines


@contextlib.contextmanager
def mosquitto(extra: str = "allow_anonymous true\n", timeout: float = 10.0,
              tls: tuple[Path, Path, Path] | None = None) -> Iterator[int]:
    """Run mosquitto on a free loopback port; yields the port.  `tls`: (cafile,
    certfile, keyfile) paths make it a TLS listener."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (scripts/bootstrap.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="cm-mosquitto-") as tmp:
        tls_lines = _tls_lines(tmp, tls)
        for _attempt in range(3):  # another process may take the port first
            port = _free_port()
            conf = Path(tmp) / "mosquitto.conf"
            conf.write_text(f"listener {port} {HOST}\n{tls_lines}persistence false\n"
                            f"log_dest none\n{extra}")
            proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and not _accepts(port) and time.monotonic() < deadline:
                time.sleep(0.02)
            if proc.poll() is None and _accepts(port):
                break
            proc.kill()
            proc.wait(5)
        else:
            raise RuntimeError("mosquitto did not start")
        try:
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class MqttLog:
    """A handler that records what the MQTT events carry, copied (views are
    only valid during the call): ("open", ack), ("msg", topic, data, qos,
    props), ("cmd", cmd, id, ack), ("error", text), ("close",)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def __call__(self, conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_MQTT_OPEN:
            self.events.append(("open", data))
        elif ev == MG_EV_MQTT_MSG:
            self.events.append(("msg", data.topic, data.data, data.qos, data.properties()))
        elif ev == MG_EV_MQTT_CMD:
            self.events.append(("cmd", data.cmd, data.id, data.ack))
        elif ev == MG_EV_ERROR:
            self.events.append(("error", data))
        elif ev == MG_EV_CLOSE:
            self.events.append(("close",))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == kind]

    def cmds(self, cmd: int | None = None) -> list[tuple[Any, ...]]:
        return [e for e in self.of("cmd") if cmd is None or e[1] == cmd]

    def msgs(self) -> list[tuple[Any, ...]]:
        return self.of("msg")

    def opened(self) -> bool:
        return bool(self.of("open"))
