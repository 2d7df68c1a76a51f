"""Manager.stats(), listen(reuse_port=True), fileno()/timeout() (the loop driven by asyncio)."""

from __future__ import annotations

import http.client
import threading

import pytest

from cymongoose import MG_EV_HTTP_MSG, Manager


def test_stats_counts_requests_by_status_class():
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/raw":  # a raw response is classed by its status line
                conn.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                conn.http_end()
            else:
                conn.reply(200 if data.uri == "/ok" else 404, b"x")

    with Manager(handler) as m:
        port = m.listen("http://127.0.0.1:0").local_addr[1]
        result = []

        def client():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            for path in ("/ok", "/ok", "/nope", "/raw"):
                c.request("GET", path)
                result.append(c.getresponse().read())
            c.close()

        t = threading.Thread(target=client)
        t.start()
        for _ in range(1000):
            if not t.is_alive():
                break
            m.poll(10)
        t.join(10)
        s = m.stats()
    assert len(result) == 4
    assert s["http_requests"] == 4
    assert s["http_responses"] == {"1xx": 0, "2xx": 2, "3xx": 0, "4xx": 1, "5xx": 1, "other": 0}
    assert s["connections_accepted"] == 1
    assert s["bytes_in"] > 0 and s["bytes_out"] > 0
    assert s["errors"] == 0 and s["iterations"] > 0
    assert s["loop_lag_ms"] >= 0 and s["loop_lag_max_ms"] >= s["loop_lag_ms"]


def test_stats_wakeups_and_closed_manager():
    got = []
    m = Manager(lambda c, ev, d: got.append(d) if ev == 19 else None, enable_wakeup=True)
    conn = m.listen("tcp://127.0.0.1:0")
    m.wakeup(conn.id, b"a")
    m.wakeup(conn.id, b"b")
    m.poll(10)
    assert m.stats()["wakeups"] == 2
    assert m.stats()["connections_open"] == 1
    m.close()
    with pytest.raises(RuntimeError, match="freed"):
        m.stats()


def test_reuse_port_lets_two_listeners_share_a_port():
    with Manager() as m:
        a = m.listen("http://127.0.0.1:0", reuse_port=True)
        port = a.local_addr[1]
        b = m.listen(f"http://127.0.0.1:{port}", reuse_port=True)
        assert b.local_addr[1] == port
        with pytest.raises(RuntimeError, match="Failed to listen"):
            m.listen(f"http://127.0.0.1:{port}")


def test_fileno_and_timeout():
    with Manager() as m:
        assert m.fileno() >= 0
        assert m.timeout() == -1
        assert m.timeout(30) == 30
        m.timer_add(60_000, lambda: None)
        assert m.timeout() == 0  # a new timer: the next poll schedules it
        m.poll(0)
        assert 50_000 < m.timeout() <= 60_000
