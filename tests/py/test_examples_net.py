"""examples/sntp_client.py and examples/dns_client.py run as a user would run
them (a subprocess, the installed package), offline: against chronyd on
loopback and against names the machine answers itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from ntp_peer import CHRONYD, chronyd

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "examples")


def run(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(CHRONYD is None, reason="chronyd not installed (scripts/bootstrap.sh)")
def test_sntp_client_against_chronyd():
    with chronyd() as port:
        r = run("sntp_client.py", f"udp://127.0.0.1:{port}")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"udp://127\.0\.0\.1:\d+: (\S+) \(local clock ([+-]\d+) ms\)\n", r.stdout)
    assert m, r.stdout
    assert abs(int(m.group(2))) < 1000
    assert m.group(1).startswith(time.strftime("%Y-", time.gmtime()))


def test_sntp_client_without_a_server():
    r = run("sntp_client.py", "udp://127.0.0.1:9")  # the discard port: nobody answers
    assert r.returncode == 1 and "no time" in r.stderr


def test_dns_client():
    r = run("dns_client.py", "localhost", "127.1", "[::1]", "no-such-name.invalid")
    assert r.returncode == 1  # one name failed
    assert r.stdout.splitlines() == [
        "localhost: 127.0.0.1 (IPv4)",
        "127.1: 127.0.0.1 (IPv4)",
        "[::1]: 0000:0000:0000:0000:0000:0000:0000:0001 (IPv6)",
        "no-such-name.invalid: error: no-such-name.invalid DNS lookup failed",
    ]
    r = run("dns_client.py", "localhost")
    assert r.returncode == 0 and r.stdout == "localhost: 127.0.0.1 (IPv4)\n"
