"""IPv6 end to end (SPEC 1.5, Decision 11; issue 12 item 3): listeners on
[::1] and on [::] (dual-stack), clients to [::1], local_addr/remote_addr in
the original's format (8 groups of 4 lowercase hex digits, no "::"), UDP
over IPv6, and SNTP from chronyd on ::1.  Peers: curl -6, Python's
http.client and sockets.  Skipped only on a machine without ::1.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import time

import pytest
from conftest import have_ipv6, poll_until, serve
from ntp_peer import CHRONYD, chronyd

from cymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_HTTP_MSG,
    MG_EV_READ,
    MG_EV_SNTP_TIME,
)

pytestmark = pytest.mark.skipif(not have_ipv6(), reason="no ::1 on this machine")

LOOPBACK6 = "0000:0000:0000:0000:0000:0000:0000:0001"
ANY6 = "0000:0000:0000:0000:0000:0000:0000:0000"


def http_server(make_manager, url):
    peers = []

    def handler(conn, ev, data):
        if ev == MG_EV_ACCEPT:
            peers.append((conn.local_addr, conn.remote_addr))
        elif ev == MG_EV_HTTP_MSG:
            conn.reply(200, f"hello {conn.remote_addr[0]}")

    mgr = make_manager()
    lsn = mgr.listen(url, handler)
    return mgr, lsn, peers


def test_listen_on_loopback6(make_manager, curl):
    mgr, lsn, peers = http_server(make_manager, "http://[::1]:0")
    ip, port, is_ipv6 = lsn.local_addr
    assert (ip, is_ipv6) == (LOOPBACK6, True) and port > 0
    assert lsn.remote_addr == ("0.0.0.0", 0, False)  # a listener has no peer
    with serve(mgr):
        r = subprocess.run([curl, "-6", "-s", "-g", "--noproxy", "*", "--max-time", "10",
                            f"http://[::1]:{port}/"], capture_output=True, timeout=20)
        assert r.stdout == f"hello {LOOPBACK6}".encode(), r.stderr
        conn = http.client.HTTPConnection("::1", port, timeout=5)
        conn.request("GET", "/")
        assert conn.getresponse().read() == f"hello {LOOPBACK6}".encode()
        conn.close()
    (local, remote), _ = peers
    assert local == (LOOPBACK6, port, True)
    assert remote[0] == LOOPBACK6 and remote[2] is True and remote[1] > 0


def test_listen_on_any6_is_dual_stack(make_manager, curl):
    mgr, lsn, peers = http_server(make_manager, "http://[::]:0")
    ip, port, is_ipv6 = lsn.local_addr
    assert (ip, is_ipv6) == (ANY6, True)
    with serve(mgr):
        r6 = subprocess.run([curl, "-6", "-s", "-g", "--noproxy", "*", "--max-time", "10",
                             f"http://[::1]:{port}/"], capture_output=True, timeout=20)
        r4 = subprocess.run([curl, "-4", "-s", "--noproxy", "*", "--max-time", "10",
                             f"http://127.0.0.1:{port}/"], capture_output=True, timeout=20)
    assert r6.stdout == f"hello {LOOPBACK6}".encode()
    # An IPv4 peer of a dual-stack socket is an IPv4-mapped address.
    assert r4.stdout == b"hello 0000:0000:0000:0000:0000:ffff:7f00:0001"
    assert len(peers) == 2


def test_listen_on_a_fixed_port_of_any6(make_manager):
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    mgr, lsn, _ = http_server(make_manager, f"http://[::]:{port}")
    assert lsn.local_addr == (ANY6, port, True)
    with serve(mgr):
        for host in ("127.0.0.1", "::1"):
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/")
            assert conn.getresponse().status == 200
            conn.close()


def test_client_to_loopback6(make_manager):
    mgr, lsn, _ = http_server(make_manager, "http://[::1]:0")
    port = lsn.local_addr[1]
    got = {}

    def client(conn, ev, data):
        if ev == MG_EV_CONNECT:
            got["local"], got["remote"] = conn.local_addr, conn.remote_addr
            conn.send("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n")
        elif ev == MG_EV_HTTP_MSG:
            got["body"] = data.body_text
            conn.close()

    mgr.connect(f"http://[::1]:{port}", client)
    assert poll_until(mgr, lambda: "body" in got)
    assert got["body"] == f"hello {LOOPBACK6}"
    assert got["remote"] == (LOOPBACK6, port, True)
    assert got["local"][0] == LOOPBACK6 and got["local"][2] is True


def test_tcp_echo_over_ipv6(make_manager):
    def echo(conn, ev, data):
        if ev == MG_EV_READ:
            conn.send(conn.recv_data())

    mgr = make_manager()
    lsn = mgr.listen("tcp://[::1]:0", echo)
    with serve(mgr), socket.create_connection(("::1", lsn.local_addr[1]), timeout=5) as s:
        s.sendall(b"ping6")
        assert s.recv(100) == b"ping6"


def test_udp_over_ipv6(make_manager):
    seen = []

    def server(conn, ev, data):
        if ev == MG_EV_READ:
            seen.append(conn.remote_addr)
            conn.send(b"re:" + conn.recv_data())  # to the last sender

    mgr = make_manager()
    lsn = mgr.listen("udp://[::1]:0", server)
    port = lsn.local_addr[1]
    assert lsn.is_udp and lsn.local_addr == (LOOPBACK6, port, True)
    # A Python peer ...
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"one", ("::1", port))
        poll_until(mgr, lambda: seen)
        assert s.recv(100) == b"re:one"
        assert seen[0] == (LOOPBACK6, s.getsockname()[1], True)
    # ... and our own UDP client.
    answers = []

    def client(conn, ev, data):
        if ev == MG_EV_CONNECT:
            conn.send(b"two")
        elif ev == MG_EV_READ:
            answers.append(conn.recv_data())

    conn = mgr.connect(f"udp://[::1]:{port}", client)
    assert conn.remote_addr == (LOOPBACK6, port, True)
    assert poll_until(mgr, lambda: answers)
    assert answers == [b"re:two"]


@pytest.mark.skipif(CHRONYD is None, reason="chronyd not installed (scripts/bootstrap.sh)")
def test_sntp_over_ipv6(make_manager):
    with chronyd("::1") as port:
        mgr = make_manager()
        got = []

        def handler(conn, ev, data):
            if ev in (MG_EV_SNTP_TIME, MG_EV_CLOSE):
                got.append((ev, data))

        conn = mgr.sntp_connect(f"udp://[::1]:{port}", handler)
        assert conn.remote_addr == (LOOPBACK6, port, True)
        assert poll_until(mgr, lambda: any(ev == MG_EV_CLOSE for ev, _ in got), timeout=6)
    assert got[0][0] == MG_EV_SNTP_TIME and abs(got[0][1] - time.time() * 1000) < 1000


def test_bad_ipv6_literals_are_refused(make_manager):
    mgr = make_manager()
    for url in ("http://[::1:0", "http://[zz::1]:0", "http://[1.2.3.4]:0"):
        with pytest.raises(RuntimeError, match="Failed to listen"):
            mgr.listen(url)
