"""A real NTP server for the SNTP tests: Debian's chronyd on loopback.

``chronyd -x`` never touches the system clock; ``local stratum 8`` makes it
serve its own (the system's) time without any upstream source, ``cmdport 0``
opens no control socket, and every file it writes lives in a temporary
directory.  The server is stopped (SIGTERM, then SIGKILL) when the context
ends, so no test leaves it behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

CHRONYD = shutil.which("chronyd") or next(
    (p for p in ("/usr/sbin/chronyd", "/sbin/chronyd") if os.path.exists(p)), None)


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port the OS says is free now (chronyd must be told a number)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ask(host: str, port: int, timeout: float = 0.2) -> bool:
    """One plain SNTP request from Python's socket module: does it answer?"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(b"\x23" + bytes(39) + b"\x01" * 8, (host, port))
        try:
            return len(s.recv(512)) >= 48
        except OSError:
            return False


@contextlib.contextmanager
def chronyd(host: str = "127.0.0.1") -> Iterator[int]:
    """Run chronyd as an NTP server on ``host``; yields its UDP port."""
    if CHRONYD is None:
        raise RuntimeError("chronyd not found (apt-get install chrony; scripts/bootstrap.sh does)")
    with tempfile.TemporaryDirectory(prefix="cm-chronyd-") as tmp:
        port = free_udp_port(host)
        conf = os.path.join(tmp, "chrony.conf")
        with open(conf, "w") as f:
            f.write(f"port {port}\nbindaddress {host}\nlocal stratum 8\nallow {host}\n"
                    f"cmdport 0\npidfile {tmp}/chronyd.pid\ndriftfile {tmp}/drift\n")
        log = open(os.path.join(tmp, "log"), "w+")
        # -U: a user other than root may run it (it needs no privilege with -x).
        flags = ["-x", "-d"] + (["-U"] if os.geteuid() != 0 else [])
        proc = subprocess.Popen([CHRONYD, *flags, "-f", conf], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 10
            while not ask(host, port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"chronyd did not start: {log.read()}")
            yield port
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            log.close()
