"""Name resolution as an API (SPEC 1.5, 2.13; issue 12 item 2):
Connection.resolve(url) and resolve_cancel() on any connection, listeners
included.  MG_EV_RESOLVE comes with remote_addr set, MG_EV_ERROR with a clear
message; the loop never blocks meanwhile; a cancelled lookup fires nothing;
only a client not yet connected connects to the answer.

Nothing leaves the machine: "127.1" is a name to our URL parser (not a
dotted quad) that getaddrinfo answers itself, so it goes through the
resolver's worker threads; ".invalid" names fail without a query (RFC 6761).
Names in /etc/hosts are tried in a private mount namespace, where a hosts
file of ours replaces /etc/hosts for one subprocess (skipped where the
machine does not allow it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import have_ipv6, listen_free, poll_for, poll_until

from cymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_POLL,
    MG_EV_RESOLVE,
    MG_EV_WRITE,
)


class Rec:
    def __init__(self):
        self.events = []

    def __call__(self, conn, ev, data):
        if ev not in (MG_EV_POLL, MG_EV_WRITE):
            self.events.append((ev, data, conn.remote_addr if conn.id else None))

    def evs(self):
        return [e for e, _, _ in self.events]

    def errors(self):
        return [d for e, d, _ in self.events if e == MG_EV_ERROR]


def test_resolve_on_a_listener(make_manager):
    """The original's usage calls resolve() on a listener: it must work, set
    remote_addr, and leave the listener listening (no connect)."""
    mgr = make_manager()
    rec = Rec()
    lsn, port = listen_free(mgr, "tcp", rec)
    assert lsn.remote_addr == ("0.0.0.0", 0, False)
    lsn.resolve("tcp://127.1:8080")  # a name: answered by a worker thread
    assert poll_until(mgr, lambda: MG_EV_RESOLVE in rec.evs())
    assert lsn.remote_addr == ("127.0.0.1", 8080, False)
    assert lsn.is_listening and MG_EV_CONNECT not in rec.evs()
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        assert poll_until(mgr, lambda: MG_EV_ACCEPT in rec.evs())
    # A literal answers at once, inside the call.
    lsn.resolve("udp://127.0.0.7:53")
    assert rec.events[-1][0] == MG_EV_RESOLVE and lsn.remote_addr == ("127.0.0.7", 53, False)


def test_resolve_on_an_http_listener_with_a_bare_name(make_manager):
    mgr = make_manager()
    rec = Rec()
    lsn, _ = listen_free(mgr, "http", rec)
    lsn.resolve("127.1")  # no scheme, no port
    assert poll_until(mgr, lambda: MG_EV_RESOLVE in rec.evs())
    assert lsn.remote_addr == ("127.0.0.1", 0, False)


def test_resolve_on_a_connected_client_does_not_reconnect(make_manager):
    mgr = make_manager()
    rec = Rec()
    _, port = listen_free(mgr, "tcp")
    conn = mgr.connect(f"tcp://127.0.0.1:{port}", rec)
    assert poll_until(mgr, lambda: MG_EV_CONNECT in rec.evs())
    local = conn.local_addr
    conn.resolve("tcp://127.1:9")
    assert poll_until(mgr, lambda: rec.evs().count(MG_EV_RESOLVE) == 2)
    assert conn.remote_addr == ("127.0.0.1", 9, False)
    assert rec.evs().count(MG_EV_CONNECT) == 1 and conn.local_addr == local
    assert not conn.is_closing


def test_resolve_moves_a_udp_client(make_manager):
    """On a UDP connection the answer is where later sends go."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        b.settimeout(5)
        mgr = make_manager()
        rec = Rec()
        conn = mgr.connect(f"udp://127.0.0.1:{a.getsockname()[1]}", rec)
        conn.resolve(f"udp://127.1:{b.getsockname()[1]}")
        assert poll_until(mgr, lambda: rec.evs().count(MG_EV_RESOLVE) == 2)
        conn.send(b"to b")
        assert b.recv(100) == b"to b"


def test_unknown_name_fails_with_a_clear_message(make_manager):
    mgr = make_manager()
    rec = Rec()
    lsn, _ = listen_free(mgr, "tcp", rec)
    lsn.resolve("tcp://no-such-host.invalid:80")
    assert poll_until(mgr, lambda: rec.errors())
    assert rec.errors() == ["no-such-host.invalid DNS lookup failed"]
    assert MG_EV_RESOLVE not in rec.evs()
    assert poll_until(mgr, lambda: lsn.id == 0)  # an error closes, as every MG_EV_ERROR does


def test_no_host_is_an_error(make_manager):
    mgr = make_manager()
    rec = Rec()
    conn = mgr.connect("udp://127.0.0.1:9", rec)
    conn.resolve("udp://:53")
    assert rec.errors() == ["DNS lookup failed: no host in 'udp://:53'"]


def test_the_loop_never_blocks_on_a_lookup(make_manager):
    """A name only a DNS server could answer (".test" is never in the global
    DNS, RFC 6761 §6.2): however long the lookup takes, each poll returns on
    time and timers keep firing; the lookup ends in an error."""
    mgr = make_manager()
    rec = Rec()
    ticks = []
    mgr.timer_add(20, lambda: ticks.append(1), repeat=True)
    lsn, _ = listen_free(mgr, "tcp", rec)
    lsn.resolve("tcp://cm-nothing-here.test:80")
    worst = 0.0
    start = time.monotonic()
    deadline = start + 12  # the lookup's own deadline is 5 s
    while not rec.errors() and MG_EV_RESOLVE not in rec.evs() and time.monotonic() < deadline:
        t = time.monotonic()
        mgr.poll(10)
        worst = max(worst, time.monotonic() - t)
    assert worst < 0.5, worst
    errors = rec.errors()
    assert errors and ("DNS lookup failed" in errors[0] or errors == ["DNS timeout"]), errors
    if time.monotonic() - start > 0.2:  # a lookup that took its time: timers ran meanwhile
        assert len(ticks) >= 2


def test_cancel_fires_nothing(make_manager):
    mgr = make_manager()
    rec = Rec()
    lsn, _ = listen_free(mgr, "tcp", rec)
    lsn.resolve("tcp://127.1:1")
    lsn.resolve_cancel()
    lsn.resolve("tcp://gone.invalid:1")
    lsn.resolve_cancel()
    poll_for(mgr, 0.4)
    assert MG_EV_RESOLVE not in rec.evs() and not rec.errors()
    assert not lsn.is_closing
    lsn.resolve_cancel()  # nothing pending: harmless


def test_a_second_resolve_replaces_the_first(make_manager):
    mgr = make_manager()
    rec = Rec()
    lsn, _ = listen_free(mgr, "tcp", rec)
    lsn.resolve("tcp://first.invalid:1")
    lsn.resolve("tcp://127.1:2")
    poll_for(mgr, 0.4)
    assert rec.evs().count(MG_EV_RESOLVE) == 1 and not rec.errors()
    assert lsn.remote_addr == ("127.0.0.1", 2, False)


def test_resolve_errors(make_manager):
    mgr = make_manager()
    lsn = mgr.listen("tcp://127.0.0.1:0")
    with pytest.raises(TypeError):
        lsn.resolve(b"127.1")
    lsn.close()
    poll_for(mgr, 0.05)
    with pytest.raises(RuntimeError, match="closed"):
        lsn.resolve("127.1")
    with pytest.raises(RuntimeError, match="closed"):
        lsn.resolve_cancel()


def test_resolve_many_at_once(make_manager):
    """Lookups on many connections run side by side and each gets its own answer."""
    mgr = make_manager()
    recs = []
    for i in range(20):
        rec = Rec()
        recs.append(rec)
        conn = mgr.connect(f"udp://127.0.0.1:{1000 + i}", rec)
        conn.resolve(f"udp://127.1:{2000 + i}")
    assert poll_until(mgr, lambda: all(MG_EV_RESOLVE in r.evs()[2:] for r in recs))
    for i, rec in enumerate(recs):
        assert rec.events[-1][2] == ("127.0.0.1", 2000 + i, False)


# --------------------------------------------------------------------------
# Names from /etc/hosts, IPv6 ones included, in a private mount namespace

HOSTS = """\
127.0.0.1 localhost
::1 cm-v6only.test
127.0.0.1 cm-v4only.test
"""

CHILD = textwrap.dedent("""
    import sys
    from cymongoose import MG_EV_CONNECT, MG_EV_ERROR, MG_EV_HTTP_MSG, MG_EV_RESOLVE, Manager

    out = {}

    def server(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "via " + conn.local_addr[0])

    def client(conn, ev, data):
        if ev == MG_EV_RESOLVE:
            out["addr"] = conn.remote_addr
        elif ev == MG_EV_CONNECT:
            conn.send("GET / HTTP/1.1\\r\\nHost: cm-v6only.test\\r\\n\\r\\n")
        elif ev == MG_EV_HTTP_MSG:
            out["body"] = data.body_text
            conn.close()
        elif ev == MG_EV_ERROR:
            out["error"] = data

    with Manager() as mgr:
        lsn = mgr.listen("http://[::1]:0", server)
        port = lsn.local_addr[1]
        mgr.connect(f"http://cm-v6only.test:{port}", client)
        for _ in range(500):
            if "body" in out or "error" in out:
                break
            mgr.poll(10)
        names = {}
        def on_name(conn, ev, data):
            if ev in (MG_EV_RESOLVE, MG_EV_ERROR):
                names[len(names)] = (conn.remote_addr if ev == MG_EV_RESOLVE else data)
        lsn.set_handler(on_name)
        lsn.resolve("cm-v4only.test")
        for _ in range(500):
            if names:
                break
            mgr.poll(10)
    print(repr((out, names)))
""")


def _namespace_prefix(hosts_path: str) -> list[str] | None:
    unshare = shutil.which("unshare")
    if unshare is None or not have_ipv6():
        return None
    probe = subprocess.run([unshare, "-m", "sh", "-c", f"mount --bind {hosts_path} /etc/hosts && "
                            "getent hosts cm-v6only.test"], capture_output=True, timeout=20)
    if probe.returncode != 0:
        return None
    return [unshare, "-m", "sh", "-c", f'mount --bind {hosts_path} /etc/hosts && exec "$@"', "sh"]


def test_names_from_etc_hosts_ipv6_only(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    if "ASAN_OPTIONS" in os.environ:  # scripts/asan-pytest.sh: a child could not load the module
        pytest.skip("runs a child interpreter, which the sanitizer build cannot")
    prefix = _namespace_prefix(str(hosts))
    if prefix is None:
        pytest.skip("no private mount namespace here (unshare -m) or no ::1")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([*prefix, sys.executable, "-c", CHILD], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    out, names = eval(r.stdout.strip().splitlines()[-1])  # noqa: S307 - our own repr()
    v6 = "0000:0000:0000:0000:0000:0000:0000:0001"
    assert out.get("addr", (None,))[0] == v6 and out["addr"][2] is True, out
    assert out.get("body") == f"via {v6}", out
    assert names == {0: ("127.0.0.1", 0, False)}
