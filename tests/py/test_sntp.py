"""SNTP (SPEC 1.4, 1.5, 2.13; issue 12 item 1): Manager.sntp_connect and
Connection.sntp_request against a real NTP server (chronyd on loopback, which
never touches the clock), and against Python UDP sockets that answer badly
or not at all.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from conftest import have_ipv6, poll_until
from ntp_peer import CHRONYD, chronyd

import cymongoose
from cymongoose import (
    MG_EV_CLOSE,
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_OPEN,
    MG_EV_POLL,
    MG_EV_READ,
    MG_EV_RESOLVE,
    MG_EV_SNTP_TIME,
    MG_EV_WRITE,
    Manager,
)

needs_chronyd = pytest.mark.skipif(CHRONYD is None,
                                   reason="chronyd not installed (scripts/bootstrap.sh)")


@pytest.fixture(scope="module")
def ntp_port():
    if CHRONYD is None:
        pytest.skip("chronyd not installed (scripts/bootstrap.sh)")
    with chronyd() as port:
        yield port


class Recorder:
    """A handler that keeps the events (but POLL/WRITE) and their data."""

    def __init__(self):
        self.events: list[tuple[int, object]] = []

    def __call__(self, conn, ev, data):
        if ev not in (MG_EV_POLL, MG_EV_WRITE):
            self.events.append((ev, data))

    def evs(self):
        return [ev for ev, _ in self.events]

    def data(self, ev):
        return [d for e, d in self.events if e == ev]

    @property
    def closed(self):
        return MG_EV_CLOSE in self.evs()


def run_until_closed(mgr, rec, timeout=6.0):
    assert poll_until(mgr, lambda: rec.closed, timeout=timeout), rec.events


@needs_chronyd
@pytest.mark.parametrize("scheme", ["udp", "sntp"])
def test_time_from_chronyd(make_manager, ntp_port, scheme):
    mgr = make_manager()
    rec = Recorder()
    conn = mgr.sntp_connect(f"{scheme}://127.0.0.1:{ntp_port}", rec)
    assert conn.id > 0 and conn.is_udp and conn.is_client
    run_until_closed(mgr, rec)
    times = rec.data(MG_EV_SNTP_TIME)
    assert len(times) == 1 and type(times[0]) is int
    # Within a second of the system's clock (chronyd serves the system time).
    assert abs(times[0] - time.time() * 1000) < 1000
    evs = rec.evs()
    # OPEN, RESOLVE and CONNECT happen inside sntp_connect() and reach its handler.
    assert evs[:3] == [MG_EV_OPEN, MG_EV_RESOLVE, MG_EV_CONNECT]
    assert evs.index(MG_EV_SNTP_TIME) < evs.index(MG_EV_CLOSE)
    assert MG_EV_ERROR not in evs
    assert conn.id == 0  # closed after the first answer


@needs_chronyd
def test_time_by_name_and_default_handler(ntp_port):
    rec = Recorder()
    with Manager(rec) as mgr:  # the default handler gets it all
        conn = mgr.sntp_connect(f"sntp://localhost:{ntp_port}")
        assert conn.id > 0
        run_until_closed(mgr, rec)
    assert len(rec.data(MG_EV_SNTP_TIME)) == 1


@needs_chronyd
def test_sntp_request_again_before_the_answer(make_manager, ntp_port):
    """A second request replaces the first: only the answer to the last counts."""
    mgr = make_manager()
    rec = Recorder()

    def handler(conn, ev, data):
        rec(conn, ev, data)
        if ev == MG_EV_CONNECT:
            conn.sntp_request()

    mgr.sntp_connect(f"udp://127.0.0.1:{ntp_port}", handler)
    run_until_closed(mgr, rec)
    assert len(rec.data(MG_EV_SNTP_TIME)) == 1


def test_sntp_connect_returns_at_once_offline(make_manager):
    """SPEC 2.13: sntp_connect with a name returns at once with an id, even offline."""
    mgr = make_manager()
    rec = Recorder()
    start = time.monotonic()
    conn = mgr.sntp_connect("sntp://time.invalid", rec)
    assert conn.id > 0 and time.monotonic() - start < 0.5
    conn.sntp_request()  # still resolving: ignored (an error log), no exception
    run_until_closed(mgr, rec)
    assert "DNS lookup failed" in rec.data(MG_EV_ERROR)[0]
    assert not rec.data(MG_EV_SNTP_TIME)


def test_sntp_connect_errors(make_manager):
    mgr = make_manager()
    with pytest.raises(RuntimeError, match="Failed to connect to SNTP server ''"):
        mgr.sntp_connect("")
    with pytest.raises(TypeError):
        mgr.sntp_connect(b"udp://127.0.0.1:123")
    mgr.close()
    with pytest.raises(RuntimeError, match="freed"):
        mgr.sntp_connect("udp://127.0.0.1:123")


class FakeServer:
    """A UDP socket that answers each request as `reply(request)` says (None: silence)."""

    def __init__(self, reply):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.requests: list[bytes] = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        deadline = time.monotonic() + 15
        while not self.stop and time.monotonic() < deadline:
            try:
                req, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            self.requests.append(req)
            for pkt in self.reply(req) or ():
                self.sock.sendto(pkt, peer)

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def ntp_now() -> int:
    t = time.time()
    return (int(t) + 2208988800) << 32 | int((t % 1) * (1 << 32))


def packet(origin: bytes, li=0, mode=4, stratum=2, refid=b"TEST", xmit=None) -> bytes:
    ts = ntp_now() if xmit is None else xmit
    return struct.pack(">BBbbII4s8s8sQQ", li << 6 | 4 << 3 | mode, stratum, 6, -20, 0, 0, refid,
                       bytes(8), origin, ts, ts)


@pytest.fixture
def fake():
    servers = []

    def make(reply):
        servers.append(FakeServer(reply))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_request_is_sntp_v4_client(make_manager, fake):
    srv = fake(lambda req: [packet(req[40:48])])
    mgr = make_manager()
    rec = Recorder()
    mgr.sntp_connect(f"udp://127.0.0.1:{srv.port}", rec)
    run_until_closed(mgr, rec)
    req = srv.requests[0]
    assert len(req) == 48 and req[0] == 0x23  # LI 0, version 4, mode 3 (client)
    assert req[1:40] == bytes(39) and req[40:48] != bytes(8)  # transmit time set
    assert len(rec.data(MG_EV_SNTP_TIME)) == 1


@pytest.mark.parametrize("bad",
                         ["bad_origin", "unsynchronised", "zero_xmit", "client_mode", "short"])
def test_invalid_replies_are_dropped(make_manager, fake, bad):
    """Each invalid reply is ignored; the valid one after it is taken."""

    def reply(req):
        origin = req[40:48]
        wrong = {
            "bad_origin": packet(bytes(8)),
            "unsynchronised": packet(origin, li=3),
            "zero_xmit": packet(origin, xmit=0),
            "client_mode": packet(origin, mode=3),
            "short": packet(origin)[:47],
        }[bad]
        return [wrong, packet(origin)]

    srv = fake(reply)
    mgr = make_manager()
    rec = Recorder()
    mgr.sntp_connect(f"udp://127.0.0.1:{srv.port}", rec)
    run_until_closed(mgr, rec)
    assert len(rec.data(MG_EV_SNTP_TIME)) == 1
    assert MG_EV_ERROR not in rec.evs()
    assert rec.evs().count(MG_EV_READ) == 2  # both datagrams were seen


def test_kiss_of_death_is_an_error(make_manager, fake):
    srv = fake(lambda req: [packet(req[40:48], li=3, stratum=0, refid=b"RATE")])
    mgr = make_manager()
    rec = Recorder()
    mgr.sntp_connect(f"udp://127.0.0.1:{srv.port}", rec)
    run_until_closed(mgr, rec)
    assert rec.data(MG_EV_ERROR) == ["SNTP kiss-o'-death RATE"]
    assert not rec.data(MG_EV_SNTP_TIME)


def test_after_2036(make_manager, fake):
    """NTP era arithmetic (RFC 5905 §6): a timestamp is read in the era closest
    to the system's clock, so second 10 on the wire is 2036-02-07 06:28:26 (era
    1) today, not 1900-01-01 00:00:10 (era 0): servers keep working past 2036."""
    era1_start_ms = 2085978496000
    srv = fake(lambda req: [packet(req[40:48], xmit=(10 << 32))])
    mgr = make_manager()
    rec = Recorder()
    mgr.sntp_connect(f"udp://127.0.0.1:{srv.port}", rec)
    run_until_closed(mgr, rec)
    (t,) = rec.data(MG_EV_SNTP_TIME)
    assert abs(t - (era1_start_ms + 10_000)) < 5_000


def test_silence_closes_after_3_seconds(make_manager, fake):
    srv = fake(lambda req: None)
    mgr = make_manager()
    rec = Recorder()
    start = time.monotonic()
    mgr.sntp_connect(f"udp://127.0.0.1:{srv.port}", rec)
    run_until_closed(mgr, rec, timeout=10)
    took = time.monotonic() - start
    assert 2.5 < took < 8, took
    assert MG_EV_ERROR not in rec.evs() and not rec.data(MG_EV_SNTP_TIME)  # silent
    assert len(srv.requests) == 1


def test_sntp_request_on_a_closed_connection(make_manager, fake):
    srv = fake(lambda req: [packet(req[40:48])])
    mgr = make_manager()
    rec = Recorder()
    conn = mgr.sntp_connect(f"udp://127.0.0.1:{srv.port}", rec)
    run_until_closed(mgr, rec)
    with pytest.raises(RuntimeError, match="closed"):
        conn.sntp_request()


def test_sntp_request_on_a_udp_connection(make_manager, fake):
    """sntp_request on any connection sends one request packet (SPEC 1.5)."""
    srv = fake(lambda req: None)
    mgr = make_manager()
    conn = mgr.connect(f"udp://127.0.0.1:{srv.port}")
    conn.sntp_request()
    assert poll_until(mgr, lambda: srv.requests, timeout=3)
    assert len(srv.requests[0]) == 48 and srv.requests[0][0] == 0x23


def test_names_in_all():
    assert "Manager" in cymongoose.__all__ and hasattr(Manager, "sntp_connect")
    assert hasattr(cymongoose.Connection, "sntp_request")


@pytest.mark.parametrize(("url", "addr"), [
    ("udp://127.0.0.1", ("127.0.0.1", 123, False)),
    ("sntp://127.0.0.1", ("127.0.0.1", 123, False)),
    ("SNTP://127.0.0.1:1234", ("127.0.0.1", 1234, False)),
    pytest.param("sntp://[::1]", ("0000:0000:0000:0000:0000:0000:0000:0001", 123, True),
                 marks=pytest.mark.skipif(not have_ipv6(), reason="no ::1")),
])
def test_port_123_by_default(make_manager, url, addr):
    """sntp:// is UDP (README "Where we differ"), port 123 unless given."""
    mgr = make_manager()
    conn = mgr.sntp_connect(url)
    assert conn.is_udp and conn.remote_addr == addr


def test_tcp_url_is_a_tcp_connection(make_manager):
    """Another scheme is a plain TCP connect, as in the original."""
    mgr = make_manager()
    conn = mgr.sntp_connect("tcp://127.0.0.1:9")
    assert conn.id > 0 and not conn.is_udp
