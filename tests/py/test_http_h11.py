"""h11 as a strict HTTP/1.1 conformance peer (issue 3 item 7 and "Done when"):

* h11 as a client parses every kind of response our server sends -- reply, reply_json,
  chunked, SSE, static files, 304, 206, 416, 404, 301, HEAD, 204, 100-continue and
  the refusals 400/408/413/414/431 -- and follows the keep-alive cycles (a byte
  too many or too few in any response breaks the next cycle);
* an h11 server produces responses framed by Content-Length, by chunks (with
  trailers), by close, plus 204, 304 and HEAD answers, and our client parses each.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
import time

import h11
import pytest
from conftest import listen_free, poll_until, serve
from http_peers import connect, h11_read, h11_send, header

from cymongoose import MG_EV_CLOSE, MG_EV_CONNECT, MG_EV_HTTP_MSG

pytestmark = pytest.mark.timeout(60)

SSE_DATA = "line one\nline two"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    (root / "static" / "dir").mkdir(parents=True)
    (root / "static" / "page.html").write_bytes(b"<p>page</p>\n")
    (root / "static" / "data.bin").write_bytes(os.urandom(200_000))  # streamed from disk
    (root / "static" / "listing").mkdir()
    (root / "static" / "listing" / "a&b.txt").write_bytes(b"x")
    (root / "static" / "dir" / "index.html").write_bytes(b"<p>index</p>\n")
    return root


def handler_for(root):
    def handler(conn, ev, data):
        if ev != MG_EV_HTTP_MSG:
            return
        uri = data.uri
        if uri.startswith("/static/"):
            conn.serve_dir(data, str(root), extra_headers="X-Static: 1\r\n")
        elif uri == "/text":
            conn.reply(200, "plain text")
        elif uri == "/binary":
            conn.reply(200, bytes(range(256)) * 4, {"Content-Type": "application/octet-stream"})
        elif uri == "/json":
            conn.reply_json({"a": [1, 2], "s": "é"}, 201, {"X-J": "1"})
        elif uri == "/empty":
            conn.reply(204)
        elif uri == "/created":
            conn.reply(201, "")
        elif uri == "/echo":
            conn.reply(200, data.body_bytes, {"X-Sha": hashlib.sha256(data.body_bytes).hexdigest()})
        elif uri == "/chunked":
            conn.send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n")
            for i in range(200):
                conn.http_chunk(f"chunk {i};")
            conn.http_chunk(b"")
        elif uri == "/sse":
            conn.send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n")
            conn.http_sse("one", SSE_DATA)
            conn.http_sse("two", "x")
            conn.http_chunk(b"")
        elif uri == "/raw":
            conn.send("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
            if data.method != "HEAD":  # raw bytes are the application's: no body for HEAD
                conn.send("raw")
            conn.http_end()
        else:
            conn.reply(404, "not here\n")

    return handler


@pytest.fixture
def server(make_manager, site):
    mgr = make_manager()
    _, port = listen_free(mgr, handler=handler_for(site), max_body=10_000, max_uri=256,
                          max_headers=20, head_timeout_ms=500)
    with serve(mgr):
        yield port


# --------------------------------------------------------------------------
# h11 client -> our server


def test_every_response_kind_on_one_keep_alive_connection(server, site):
    data_bin = (site / "static" / "data.bin").read_bytes()
    with connect(server) as sock:
        conn = h11.Connection(h11.CLIENT)

        def cycle(method, target, headers=None, body=b""):
            h11_send(sock, conn, method, target, headers, body)
            _, resp, data = h11_read(sock, conn)
            assert conn.our_state is h11.DONE and conn.their_state is h11.DONE
            conn.start_next_cycle()
            return resp, data

        r, b = cycle("GET", "/text")
        assert (r.status_code, b) == (200, b"plain text")
        assert r.reason == b"OK" and r.http_version == b"1.1"
        r, b = cycle("GET", "/binary")
        assert b == bytes(range(256)) * 4
        r, b = cycle("GET", "/json")
        assert r.status_code == 201 and json.loads(b) == {"a": [1, 2], "s": "é"}
        assert header(r, "content-type") == "application/json" and header(r, "x-j") == "1"
        r, b = cycle("GET", "/empty")
        assert (r.status_code, b) == (204, b"") and header(r, "content-length") is None
        r, b = cycle("GET", "/created")
        assert (r.status_code, b) == (201, b"")
        r, b = cycle("POST", "/echo", body=b"\x00posted\r\n")
        assert b == b"\x00posted\r\n"
        r, b = cycle("POST", "/echo", [("Transfer-Encoding", "chunked")], b"chunked body")
        assert b == b"chunked body"  # h11 sent it chunked; we de-chunked it
        r, b = cycle("GET", "/chunked")
        assert header(r, "transfer-encoding") == "chunked"
        assert b == "".join(f"chunk {i};" for i in range(200)).encode()
        r, b = cycle("GET", "/sse")
        assert b == b"event: one\ndata: line one\ndata: line two\n\nevent: two\ndata: x\n\n"
        r, b = cycle("GET", "/raw")
        assert b == b"raw"
        r, b = cycle("GET", "/static/page.html")
        assert (r.status_code, b) == (200, b"<p>page</p>\n")
        etag = header(r, "etag")
        assert header(r, "x-static") == "1"
        r, b = cycle("GET", "/static/page.html", [("If-None-Match", etag)])
        assert (r.status_code, b) == (304, b"")
        r, b = cycle("GET", "/static/data.bin", [("Range", "bytes=100-199")])
        assert (r.status_code, b) == (206, data_bin[100:200])
        assert header(r, "content-range") == f"bytes 100-199/{len(data_bin)}"
        r, b = cycle("GET", "/static/data.bin", [("Range", "bytes=999999-")])
        assert r.status_code == 416 and header(r, "content-range") == f"bytes */{len(data_bin)}"
        r, b = cycle("GET", "/static/data.bin")
        assert (r.status_code, b) == (200, data_bin)
        r, b = cycle("GET", "/static/nothing.txt")
        assert (r.status_code, b) == (404, b"Not found\n")
        r, b = cycle("GET", "/static/dir")
        assert r.status_code == 301 and header(r, "location") == "/static/dir/"
        r, b = cycle("GET", "/static/dir/")
        assert b == b"<p>index</p>\n"
        r, b = cycle("GET", "/static/listing/")
        assert r.status_code == 200 and b"a&amp;b.txt" in b
        r, b = cycle("GET", "/static/%2e%2e/x")
        assert r.status_code == 400
        r, b = cycle("GET", "/nope")
        assert (r.status_code, b) == (404, b"not here\n")
        for target in ("/text", "/json", "/chunked", "/sse", "/raw", "/static/page.html",
                       "/static/data.bin", "/static/dir/", "/static/listing/", "/nope"):
            r, b = cycle("HEAD", target)
            assert b == b"", target  # h11 would choke on a body here
            if target in ("/text", "/static/page.html"):
                assert int(header(r, "content-length")) > 0
        r, b = cycle("GET", "/text")  # still in step after all that
        assert b == b"plain text"


def test_expect_100_continue(server):
    with connect(server) as sock:
        conn = h11.Connection(h11.CLIENT)
        body = b"y" * 5000
        sock.sendall(conn.send(h11.Request(method="POST", target="/echo", headers=[
            ("Host", "x"), ("Expect", "100-continue"), ("Content-Length", str(len(body)))])))
        # The interim answer arrives before any body byte is sent.
        event = h11.NEED_DATA
        deadline = time.monotonic() + 5
        while event is h11.NEED_DATA and time.monotonic() < deadline:
            sock.settimeout(deadline - time.monotonic())
            conn.receive_data(sock.recv(4096))
            event = conn.next_event()
        assert isinstance(event, h11.InformationalResponse) and event.status_code == 100
        sock.sendall(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        _, resp, data = h11_read(sock, conn)
        assert resp.status_code == 200 and data == body


@pytest.mark.parametrize("case, want", [
    ("too_large_body", 413),
    ("too_long_uri", 414),
    ("too_many_headers", 431),
    ("chunked_body_too_large", 413),
])
def test_refusals_parse_with_h11(server, case, want):
    with connect(server) as sock:
        conn = h11.Connection(h11.CLIENT)
        if case == "too_large_body":
            sock.sendall(conn.send(h11.Request(method="POST", target="/echo", headers=[
                ("Host", "x"), ("Content-Length", "10001")])))
        elif case == "too_long_uri":
            h11_send(sock, conn, "GET", "/" + "u" * 300)
        elif case == "too_many_headers":
            h11_send(sock, conn, "GET", "/text", [(f"X-{i}", "v") for i in range(25)])
        else:
            sock.sendall(conn.send(h11.Request(method="POST", target="/echo", headers=[
                ("Host", "x"), ("Transfer-Encoding", "chunked")])))
            for _ in range(3):
                sock.sendall(conn.send(h11.Data(data=b"z" * 4000)))
        _, resp, data = h11_read(sock, conn)
        assert resp.status_code == want
        assert header(resp, "connection") == "close"
        assert conn.their_state is h11.MUST_CLOSE or conn.their_state is h11.DONE


@pytest.mark.parametrize("raw, want", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", 408),  # never ends: the head deadline
])
def test_bad_input_answers_parse_with_h11(server, raw, want):
    with connect(server) as sock:
        conn = h11.Connection(h11.CLIENT)
        # h11 will not write a malformed request: let it believe it sent a GET,
        # send the bad bytes instead, and hold the answer to h11's rules.
        conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        sock.sendall(raw)
        _, resp, data = h11_read(sock, conn)
        assert resp.status_code == want and header(resp, "connection") == "close"
        assert data == (b"Bad Request\n" if want == 400 else b"Request Timeout\n")
        # And then the server closes.
        sock.settimeout(3)
        assert sock.recv(100) == b""


# --------------------------------------------------------------------------
# our client -> h11 server

BIG = os.urandom(300_000)


def h11_respond(conn: h11.Connection, req: h11.Request) -> list[bytes]:
    """What the h11 server writes for one request."""
    target = req.target.decode()
    out = []
    if req.method == b"HEAD":  # the head a GET would have; h11 refuses a body here
        length = {"/cl": "11"}.get(target)
        headers = [("Content-Length", length)] if length else []
        out.append(conn.send(h11.Response(status_code=200, headers=headers)))
        out.append(conn.send(h11.EndOfMessage()))
        return out
    if target == "/cl":
        out.append(conn.send(h11.Response(status_code=200, headers=[
            ("Content-Length", "11"), ("Content-Type", "text/plain")])))
        out.append(conn.send(h11.Data(data=b"hello world")))
    elif target == "/chunked":
        out.append(conn.send(h11.Response(status_code=200, headers=[("X-Framing", "chunks")])))
        for i in range(50):
            out.append(conn.send(h11.Data(data=b"piece%02d," % i)))
        out.append(conn.send(h11.EndOfMessage(headers=[("X-Trailer", "yes")])))
        return out
    elif target == "/big":
        out.append(conn.send(h11.Response(status_code=200, headers=[
            ("Content-Length", str(len(BIG)))])))
        for i in range(0, len(BIG), 7777):
            out.append(conn.send(h11.Data(data=BIG[i:i + 7777])))
    elif target == "/close":  # answered to an HTTP/1.0 request: delimited by close
        out.append(conn.send(h11.Response(status_code=200, headers=[])))
        out.append(conn.send(h11.Data(data=b"until the end")))
    elif target == "/204":
        out.append(conn.send(h11.Response(status_code=204, headers=[])))
    elif target == "/304":
        out.append(conn.send(h11.Response(status_code=304, headers=[("ETag", '"v1"')])))
    elif target == "/404":
        out.append(conn.send(h11.Response(status_code=404, headers=[("Content-Length", "4")])))
        out.append(conn.send(h11.Data(data=b"gone")))
    else:
        raise AssertionError(f"unexpected target {target}")
    out.append(conn.send(h11.EndOfMessage()))
    return out


@contextlib.contextmanager
def h11_server():
    """A threaded h11 server on 127.0.0.1 (one connection at a time, keep-alive
    cycles, closes when h11 says so).  Yields (port, list of requests seen)."""
    lsn = socket.socket()
    lsn.bind(("127.0.0.1", 0))
    lsn.listen(4)
    lsn.settimeout(0.2)
    stop = threading.Event()
    seen: list[tuple[bytes, bytes, bytes]] = []
    errors: list[BaseException] = []

    def serve_conn(sock):
        conn = h11.Connection(h11.SERVER)
        sock.settimeout(0.1)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    if stop.is_set():
                        return  # the client kept its connection open: fine
                    continue
                conn.receive_data(data)
                if not data and conn.their_state is not h11.DONE:
                    return
                continue
            if isinstance(event, h11.ConnectionClosed):
                return
            if isinstance(event, h11.Request):
                seen.append((event.method, event.target, event.http_version))
                request = event
            if isinstance(event, h11.EndOfMessage):
                sock.settimeout(10)
                for piece in h11_respond(conn, request):
                    sock.sendall(piece)
                sock.settimeout(0.1)
                if conn.our_state is h11.MUST_CLOSE:
                    sock.shutdown(socket.SHUT_WR)
                    return
                conn.start_next_cycle()

    def run():
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                sock, _ = lsn.accept()
            except (TimeoutError, OSError):
                continue
            with sock:
                try:
                    serve_conn(sock)
                except Exception as exc:  # noqa: BLE001 - reported by the test
                    errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield lsn.getsockname()[1], seen
    finally:
        stop.set()
        t.join(10)
        lsn.close()
    if errors:
        raise errors[0]


class Sequence:
    """A client handler that sends each request after the previous response."""

    def __init__(self, requests):
        self.requests = list(requests)
        self.msgs: list[dict] = []
        self.events: list[int] = []

    def __call__(self, conn, ev, data):
        self.events.append(ev)
        if ev == MG_EV_CONNECT or (ev == MG_EV_HTTP_MSG and self.requests):
            if ev == MG_EV_HTTP_MSG:
                self.record(data)
            if self.requests:
                conn.send(self.requests.pop(0))
        elif ev == MG_EV_HTTP_MSG:
            self.record(data)

    def record(self, data):
        self.msgs.append({"status": data.status(),
                          "headers": {k.lower(): v for k, v in data.headers()},
                          "body": data.body_bytes, "proto": data.proto})


def req(target, method="GET", version="1.1"):
    return f"{method} {target} HTTP/{version}\r\nHost: localhost\r\n\r\n".encode()


def test_our_client_parses_h11_responses(make_manager):
    mgr = make_manager()
    with h11_server() as (port, seen):
        client = Sequence([req("/cl"), req("/chunked"), req("/204"), req("/304"),
                           req("/cl", "HEAD"), req("/big"), req("/404"), req("/cl", "HEAD"),
                           req("/chunked", "HEAD"), req("/cl")])
        mgr.connect(f"http://localhost:{port}", client)
        poll_until(mgr, lambda: len(client.msgs) == 10, timeout=10)
    bodies = [m["body"] for m in client.msgs]
    assert [m["status"] for m in client.msgs] == [200, 200, 204, 304, 200, 200, 404, 200, 200, 200]
    assert bodies[0] == b"hello world"
    assert bodies[1] == b"".join(b"piece%02d," % i for i in range(50))
    assert client.msgs[1]["headers"]["transfer-encoding"] == "chunked"
    assert bodies[2:5] == [b"", b"", b""]  # 204, 304, and HEAD despite Content-Length: 11
    assert client.msgs[4]["headers"]["content-length"] == "11"
    assert bodies[5] == BIG and bodies[6] == b"gone"
    assert bodies[7:9] == [b"", b""] and bodies[9] == b"hello world"
    assert len(seen) == 10  # all on one connection (h11 saw every request)
    assert client.events.count(MG_EV_CONNECT) == 1


def test_our_client_parses_close_delimited_h11_response(make_manager):
    mgr = make_manager()
    with h11_server() as (port, seen):
        client = Sequence([req("/close", version="1.0")])
        mgr.connect(f"http://127.0.0.1:{port}", client)
        poll_until(mgr, lambda: MG_EV_CLOSE in client.events, timeout=10)
    assert [m["body"] for m in client.msgs] == [b"until the end"]
    assert "content-length" not in client.msgs[0]["headers"]
    assert "transfer-encoding" not in client.msgs[0]["headers"]
    assert seen == [(b"GET", b"/close", b"1.0")]
