"""HTTP/1.1 server: reply() wire format and header validation (SPEC 2.5.5, 1.5),
reply_json, pipelining and keep-alive (2.5.3, Decision 5), deferred replies,
HttpMessage views (1.6, 2.5.7), real clients (urllib, http.client, curl)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import subprocess
import threading
import time

import pytest
from conftest import (
    HttpReader,
    Recorder,
    http_get,
    listen_free,
    raw_connect,
    recv_until_eof,
    serve,
    split_response,
    wait_until,
)

from cymongoose import (
    MG_EV_ACCEPT,
    MG_EV_CLOSE,
    MG_EV_HTTP_MSG,
    MG_EV_WAKEUP,
    HttpMessage,
)

pytestmark = pytest.mark.timeout(60)

_CL_LINE = re.compile(rb"Content-Length: +(\d+) *\r\n")


def normalize(raw: bytes) -> bytes:
    """Content-Length may be space-padded (SPEC 2.5.5); everything else is exact."""
    return _CL_LINE.sub(rb"Content-Length: \1\r\n", raw, count=1)


def request(port: int, raw_request: bytes, n: int = 1, timeout: float = 5.0):
    """Send raw bytes, read ``n`` complete responses; returns (responses, leftover)."""
    s = raw_connect(port)
    try:
        s.sendall(raw_request)
        reader = HttpReader(s)
        out = [reader.read_response(timeout) for _ in range(n)]
        return out, reader.buf
    finally:
        s.close()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


# --------------------------------------------------------------------------
# reply() wire format


BIN = b"\x00\x01bin\x00\xff\r\n" * 1000
REPLY_CASES = {
    "/plain": ((200, "hello"),
               b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
    "/none": ((404, "nf", None),
              b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 2\r\n\r\nnf"),
    "/prepend": ((200, "x", {"X-A": "1", "X-B": "2"}),
                 b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nX-B: 2\r\n"
                 b"Content-Length: 1\r\n\r\nx"),
    "/own-ct": ((201, b"j", {"X-A": "1", "content-type": "application/x-test"}),
                b"HTTP/1.1 201 Created\r\nX-A: 1\r\ncontent-type: application/x-test\r\n"
                b"Content-Length: 1\r\n\r\nj"),
    "/empty-dict": ((200, "e", {}),
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: 1\r\n\r\ne"),
    "/no-body": ((500,),
                 b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: 0\r\n\r\n"),
    "/unknown-code": ((299, "u"),
                      b"HTTP/1.1 299 \r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nu"),
    "/moved": ((301, "", {"Location": "/elsewhere"}),
               b"HTTP/1.1 301 Moved Permanently\r\nContent-Type: text/plain\r\n"
               b"Location: /elsewhere\r\nContent-Length: 0\r\n\r\n"),
    "/bad": ((400, "b"),
             b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\nb"),
    "/unavail": ((503, "u"),
                 b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: 1\r\n\r\nu"),
    "/binary": ((200, BIN, {"Content-Type": "application/octet-stream"}),
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % len(BIN) + BIN),
    "/unicode": ((200, "héllo wörld"),
                 b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
                 + "héllo wörld".encode()),
    "/nonstr": ((200, "n", {"X-Num": 42}),
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Num: 42\r\n"
                b"Content-Length: 1\r\n\r\nn"),
    "/bytearray": ((200, bytearray(b"ba\x00")),
                   b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"
                   b"ba\x00"),
    "/memoryview": ((200, memoryview(b"mv\x00v")),
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n"
                    b"mv\x00v"),
}


@pytest.fixture
def reply_server(make_manager):
    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(*REPLY_CASES[hm.uri][0])

    m = make_manager(handler)
    _, port = listen_free(m)
    with serve(m):
        yield port


@pytest.mark.parametrize("path", sorted(REPLY_CASES))
def test_reply_exact_wire_bytes(reply_server, path):
    (raw,), leftover = request(reply_server, get(path))
    assert raw is not None, "no complete response"
    assert normalize(raw) == REPLY_CASES[path][1]
    assert leftover == b""


# --------------------------------------------------------------------------
# Header validation


BAD_HEADERS = [
    ({"X-Bad\r": "v"}, "name"), ({"X-Bad\nInjected": "v"}, "name"), ({"X-B\x00ad": "v"}, "name"),
    ({"X-Ok": "v\r"}, "value"), ({"X-Ok": "a\r\nSet-Cookie: evil=1"}, "value"),
    ({"X-Ok": "nul\x00"}, "value"),
]


def _check_header_error(exc: BaseException, kind: str) -> None:
    assert type(exc) is ValueError, repr(exc)
    assert re.match(rf"Header {kind} contains illegal character \(CR, LF, or NUL\): ",
                    str(exc)), str(exc)
    assert re.search(f"Header {kind}.*illegal character", str(exc))


def test_header_injection_rejected_and_nothing_sent(make_manager):
    results = []

    def handler(conn, ev, hm):
        if ev != MG_EV_HTTP_MSG:
            return
        for headers, kind in BAD_HEADERS:
            for call in (lambda h=headers: conn.reply(200, "bad", h),
                         lambda h=headers: conn.reply_json({"bad": 1}, 200, h)):
                try:
                    call()
                except BaseException as exc:  # noqa: BLE001 - inspected below
                    results.append((exc, kind))
                else:
                    results.append((None, kind))
        results.append(("send_len", conn.send_len))
        conn.reply(200, "good")

    m = make_manager(handler)
    _, port = listen_free(m)
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(get("/inject"))
            reader = HttpReader(s)
            raw = reader.read_response()
            s.settimeout(0.3)
            with pytest.raises(TimeoutError):
                s.recv(100)
        finally:
            s.close()
    assert raw is not None
    assert normalize(raw) == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              b"Content-Length: 4\r\n\r\ngood")
    assert reader.buf == b""
    assert results[-1] == ("send_len", 0)
    assert len(results) == 2 * len(BAD_HEADERS) + 1
    for exc, kind in results[:-1]:
        assert exc is not None, f"bad header {kind} accepted"
        _check_header_error(exc, kind)


def test_header_validation_on_listener_and_closed_connection(make_manager):
    m = make_manager()
    lst, _ = listen_free(m)
    with pytest.raises(ValueError) as info:
        lst.reply(200, "", {"X": "a\nb"})
    _check_header_error(info.value, "value")
    m.close()
    # Validation happens before the closed check.
    with pytest.raises(ValueError) as info:
        lst.reply(200, "", {"X\r": "v"})
    _check_header_error(info.value, "name")
    with pytest.raises(RuntimeError, match="closed"):
        lst.reply(200, "", {"X": "v"})


# --------------------------------------------------------------------------
# reply_json


def test_reply_json(make_manager):
    payloads = {"/obj": {"a": 1, "b": [1, 2, "x"], "c": None, "u": "ü"}, "/list": [1, 2, 3]}

    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            if hm.uri == "/obj":
                conn.reply_json(payloads["/obj"])
            else:
                conn.reply_json(payloads["/list"], 201, {"X-Extra": "yes"})

    m = make_manager(handler)
    _, port = listen_free(m)
    with serve(m):
        (raw1,), _ = request(port, get("/obj"))
        (raw2,), _ = request(port, get("/list"))
    status, headers, body = split_response(raw1)
    assert status == b"HTTP/1.1 200 OK"
    cts = [v for k, v in headers if k.lower() == b"content-type"]
    assert cts == [b"application/json"]
    assert body == json.dumps(payloads["/obj"]).encode()
    assert json.loads(body) == payloads["/obj"]
    status, headers, body = split_response(raw2)
    assert status == b"HTTP/1.1 201 Created"
    assert [v for k, v in headers if k.lower() == b"content-type"] == [b"application/json"]
    assert (b"X-Extra", b"yes") in headers
    assert body == json.dumps(payloads["/list"]).encode()


# --------------------------------------------------------------------------
# Pipelining / keep-alive / Connection: close


def test_pipelined_requests_answered_in_order(make_manager):
    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "resp" + hm.uri)

    m = make_manager(handler)
    _, port = listen_free(m)
    with serve(m):
        raws, leftover = request(port, get("/1") + get("/2") + get("/3"), n=3)
    assert [split_response(r)[2] if r else None for r in raws] == [b"resp/1", b"resp/2", b"resp/3"]
    assert leftover == b""


def test_pipelined_requests_with_bodies(make_manager):
    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, f"{hm.method} {hm.uri} ".encode() + hm.body_bytes)

    m = make_manager(handler)
    _, port = listen_free(m)
    batch = (b"POST /p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab\x00cd"
             + get("/g2")
             + b"PUT /p3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz")
    with serve(m):
        raws, leftover = request(port, batch, n=3)
    assert [split_response(r)[2] if r else None for r in raws] == [
        b"POST /p1 ab\x00cd", b"GET /g2 ", b"PUT /p3 xyz"]
    assert leftover == b""


def test_pipelined_requests_with_deferred_replies_stay_in_order(make_manager):
    log = []
    holder = {}

    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            uri = hm.uri
            log.append(("msg", uri))

            def answer():
                log.append(("reply", uri))
                conn.reply(200, "late" + uri)

            holder["m"].timer_add(30, answer)

    m = make_manager(handler)
    holder["m"] = m
    _, port = listen_free(m)
    with serve(m):
        raws, _ = request(port, get("/a") + get("/b") + get("/c"), n=3)
    assert [split_response(r)[2] if r else None for r in raws] == [b"late/a", b"late/b", b"late/c"]
    assert log == [("msg", "/a"), ("reply", "/a"), ("msg", "/b"), ("reply", "/b"),
                   ("msg", "/c"), ("reply", "/c")]


def test_keep_alive_http_client_reuses_connection(make_manager):
    def on_msg(conn, ev, hm):
        conn.reply(200, f"{hm.method} {hm.uri} {len(hm.body_bytes)}")

    rec = Recorder(on={MG_EV_HTTP_MSG: on_msg})
    m = make_manager(rec)
    _, port = listen_free(m)
    with serve(m):
        hc = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for i in range(5):
                if i % 2:
                    hc.request("POST", f"/k{i}", body=b"z" * (1000 * i))
                else:
                    hc.request("GET", f"/k{i}")
                resp = hc.getresponse()
                body = resp.read()
                assert resp.status == 200
                want = f"{'POST' if i % 2 else 'GET'} /k{i} {1000 * i if i % 2 else 0}"
                assert body == want.encode()
        finally:
            hc.close()
        assert wait_until(lambda: rec.count(MG_EV_CLOSE) == 1)
    assert len(rec.conns(MG_EV_ACCEPT)) == 1
    assert rec.count(MG_EV_HTTP_MSG) == 5


def test_connection_close_header_drains_after_sync_reply(make_manager):
    rec = Recorder(on={MG_EV_HTTP_MSG: lambda c, e, hm: c.reply(200, "bye")})
    m = make_manager(rec)
    _, port = listen_free(m)
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(get("/", "Connection: close\r\n"))
            raw, eof = recv_until_eof(s)
        finally:
            s.close()
        assert wait_until(lambda: rec.count(MG_EV_CLOSE) == 1)
    assert eof, "server did not close after Connection: close"
    assert split_response(raw)[2] == b"bye"


def test_without_connection_close_the_connection_stays_open(make_manager):
    m = make_manager(lambda c, e, hm: c.reply(200, "stay") if e == MG_EV_HTTP_MSG else None)
    _, port = listen_free(m)
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(get("/"))
            reader = HttpReader(s)
            assert split_response(reader.read_response())[2] == b"stay"
            s.settimeout(0.3)
            with pytest.raises(TimeoutError):
                s.recv(1)
            s.sendall(get("/again"))
            assert split_response(reader.read_response())[2] == b"stay"
        finally:
            s.close()


# --------------------------------------------------------------------------
# Deferred replies


def test_deferred_reply_from_wakeup_keeps_connection_usable(make_manager):
    holder = {}

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            cid, uri = conn.id, data.uri

            def work():
                time.sleep(0.02)
                holder["m"].wakeup(cid, b"deferred:" + uri.encode())

            threading.Thread(target=work).start()
        elif ev == MG_EV_WAKEUP:
            conn.reply(200, data)

    m = make_manager(handler, enable_wakeup=True)
    holder["m"] = m
    _, port = listen_free(m)
    with serve(m):
        hc = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for i in range(3):
                hc.request("GET", f"/w{i}")
                resp = hc.getresponse()
                assert (resp.status, resp.read()) == (200, f"deferred:/w{i}".encode())
        finally:
            hc.close()
        status, _, body = http_get(f"http://127.0.0.1:{port}/urllib")
        assert (status, body) == (200, b"deferred:/urllib")


def test_deferred_reply_from_timer(make_manager):
    holder = {}

    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            uri = hm.uri
            holder["m"].timer_add(20, lambda: conn.reply(200, "timer" + uri))

    m = make_manager(handler)
    holder["m"] = m
    _, port = listen_free(m)
    with serve(m):
        hc = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for i in range(2):
                hc.request("GET", f"/t{i}")
                resp = hc.getresponse()
                assert (resp.status, resp.read()) == (200, f"timer/t{i}".encode())
        finally:
            hc.close()


# --------------------------------------------------------------------------
# HttpMessage views


def _capture_server(make_manager, capture, reply=b"ok"):
    kept = []

    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            kept.append(hm)
            capture(hm)
            conn.reply(200, reply)

    m = make_manager(handler)
    _, port = listen_free(m)
    return m, port, kept


def test_http_message_fields(make_manager):
    got = {}

    def capture(hm):
        got.update(
            type_ok=type(hm) is HttpMessage, method=hm.method, uri=hm.uri, query=hm.query,
            proto=hm.proto, headers=hm.headers(), h1=hm.header("x-custom"),
            h2=hm.header("X-CUSTOM"), h3=hm.header("missing"), h4=hm.header("missing", "dflt"),
            qa=hm.query_var("a"), qb=hm.query_var("b"), qc=hm.query_var("c"),
            qempty=hm.query_var("empty"), qnope=hm.query_var("nope"), status=hm.status(),
            hv1=hm.header_var("Content-Type", "charset"), hv2=hm.header_var("Content-Type", "x"),
            hv3=hm.header_var("Missing", "charset"), body=hm.body_bytes, text=hm.body_text,
            truth=bool(hm))

    m, port, _ = _capture_server(make_manager, capture)
    req = (b"POST /path/x?a=1&b=hello+world&c=%41%42&empty= HTTP/1.1\r\n"
           b"Host: example\r\nX-Custom: Val\r\n"
           b"Content-Type: text/html; charset=utf-8\r\nContent-Length: 4\r\n\r\nbody")
    with serve(m):
        (raw,), _ = request(port, req)
    assert raw is not None
    assert got["type_ok"]
    assert (got["method"], got["uri"], got["query"], got["proto"]) == (
        "POST", "/path/x", "a=1&b=hello+world&c=%41%42&empty=", "HTTP/1.1")
    assert got["headers"] == [("Host", "example"), ("X-Custom", "Val"),
                              ("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", "4")]
    assert (got["h1"], got["h2"], got["h3"], got["h4"]) == ("Val", "Val", None, "dflt")
    assert (got["qa"], got["qb"], got["qc"]) == ("1", "hello world", "AB")
    assert got["qempty"] is None and got["qnope"] is None
    assert got["status"] == 0
    assert (got["hv1"], got["hv2"], got["hv3"]) == ("utf-8", None, None)
    assert got["body"] == b"body" and type(got["body"]) is bytes
    assert got["text"] == "body"
    assert got["truth"] is True


def test_http_message_get_without_query_or_body(make_manager):
    got = {}

    def capture(hm):
        got.update(uri=hm.uri, query=hm.query, body=hm.body_bytes, text=hm.body_text,
                   qv=hm.query_var("a"))

    m, port, _ = _capture_server(make_manager, capture)
    with serve(m):
        (raw,), _ = request(port, get("/plain/path"))
    assert raw is not None
    assert got == {"uri": "/plain/path", "query": "", "body": b"", "text": "", "qv": None}


def test_query_var_2048_limit(make_manager):
    got = {}

    def capture(hm):
        for name in ("ok2000", "ok2047", "enc", "big", "huge", "bad"):
            try:
                got[name] = hm.query_var(name)
            except BaseException as exc:  # noqa: BLE001 - inspected below
                got[name] = exc

    m, port, _ = _capture_server(make_manager, capture)
    query = "&".join([
        "ok2000=" + "a" * 2000, "ok2047=" + "b" * 2047, "enc=" + "%41" * 1000,
        "big=" + "c" * 2048, "huge=" + "d" * 3000, "bad=%zz"])
    with serve(m):
        (raw,), _ = request(port, get("/q?" + query))
    assert raw is not None
    assert got["ok2000"] == "a" * 2000
    assert got["ok2047"] == "b" * 2047
    assert got["enc"] == "A" * 1000
    for name in ("big", "huge"):
        assert type(got[name]) is ValueError, got[name]
        assert str(got[name]) == (
            f"Query parameter '{name}' value exceeds 2048-byte buffer limit")
    assert type(got["bad"]) is ValueError


def test_headers_limited_to_30_in_wire_order(make_manager):
    got = {}

    def capture(hm):
        got["headers"] = hm.headers()
        got["h0"] = hm.header("X-H0")
        got["h35"] = hm.header("X-H35")

    m, port, _ = _capture_server(make_manager, capture)
    extra = "".join(f"X-H{i}: v{i}\r\n" for i in range(40))
    with serve(m):
        (raw,), _ = request(port, get("/many", extra))
    assert raw is not None and split_response(raw)[2] == b"ok"
    hdrs = got["headers"]
    assert len(hdrs) == 30
    assert hdrs == [("Host", "x")] + [(f"X-H{i}", f"v{i}") for i in range(29)]
    assert got["h0"] == "v0" and got["h35"] is None


def test_non_utf8_bytes_decoded_with_surrogateescape(make_manager):
    got = {}

    def capture(hm):
        got.update(uri=hm.uri, hdr=hm.header("X-Bin"), body=hm.body_text)

    m, port, _ = _capture_server(make_manager, capture)
    req = (b"POST /caf\xe9 HTTP/1.1\r\nHost: x\r\nX-Bin: \xe9t\xe9\r\n"
           b"Content-Length: 2\r\n\r\n\xff\xfe")
    with serve(m):
        (raw,), _ = request(port, req)
    assert raw is not None
    assert got == {"uri": "/caf\udce9", "hdr": "\udce9t\udce9", "body": "\udcff\udcfe"}


def test_view_invalid_after_handler(make_manager):
    m, port, kept = _capture_server(make_manager, lambda hm: None)
    with serve(m):
        (raw,), _ = request(port, b"POST /v?a=1 HTTP/1.1\r\nHost: x\r\nContent-Type: a; b=c\r\n"
                                  b"Content-Length: 3\r\n\r\nabc")
    assert raw is not None
    assert len(kept) == 1
    _assert_empty_view(kept[0])


def test_empty_view_constructible():
    _assert_empty_view(HttpMessage.__new__(HttpMessage))


def _assert_empty_view(hm):
    assert hm.method == "" and hm.uri == "" and hm.query == "" and hm.proto == ""
    assert hm.body_bytes == b"" and hm.body_text == ""
    assert hm.headers() == []
    assert hm.header("Host") is None
    assert hm.header("Host", "dflt") == "dflt"
    assert hm.query_var("a") is None
    assert hm.status() is None
    assert hm.header_var("Content-Type", "b") is None
    assert bool(hm) is False


@pytest.mark.parametrize("line,method,uri", [
    (b"XYZZY /x HTTP/1.1", "XYZZY", "/x"),
    (b"CONNECT example.com:443 HTTP/1.1", "CONNECT", "example.com:443"),
    (b"DELETE /items/7 HTTP/1.0", "DELETE", "/items/7"),
])
def test_any_method_token_accepted(make_manager, line, method, uri):
    got = {}
    m, port, _ = _capture_server(make_manager,
                                 lambda hm: got.update(method=hm.method, uri=hm.uri))
    with serve(m):
        (raw,), _ = request(port, line + b"\r\nHost: x\r\n\r\n")
    assert raw is not None and split_response(raw)[0].startswith(b"HTTP/1.1 200")
    assert got == {"method": method, "uri": uri}


def test_body_split_across_segments(make_manager):
    got = []
    m, port, _ = _capture_server(make_manager, lambda hm: got.append(hm.body_bytes))
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
            time.sleep(0.1)
            assert got == []
            s.sendall(b"56789")
            raw = HttpReader(s).read_response()
        finally:
            s.close()
    assert raw is not None
    assert got == [b"0123456789"]


def test_large_post_body_via_urllib(make_manager):
    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, hashlib.sha256(hm.body_bytes).hexdigest())

    m = make_manager(handler)
    _, port = listen_free(m)
    payload = os.urandom(1 << 20)
    with serve(m):
        status, _, body = http_get(f"http://127.0.0.1:{port}/up", data=payload, timeout=20)
    assert status == 200
    assert body.decode() == hashlib.sha256(payload).hexdigest()


@pytest.mark.parametrize("bad", [
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nz",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nzz",
    b"GET / HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n",
    b"GET /\r\nHost: x\r\n\r\n",
], ids=["control-char", "duplicate-content-length-same", "duplicate-content-length-differ",
        "duplicate-cookie", "no-version"])
def test_parse_error_answers_400_closes_and_server_survives(make_manager, bad):
    # Ours answers 400 and closes (RFC 9112 section 3: a server SHOULD respond 400 to an
    # invalid request line; the original cymongoose sent nothing, see the README).
    m = make_manager(lambda c, e, hm: c.reply(200, "fine") if e == MG_EV_HTTP_MSG else None)
    _, port = listen_free(m)
    with serve(m):
        s = raw_connect(port)
        try:
            s.sendall(bad)
            data, eof = recv_until_eof(s)
        finally:
            s.close()
        assert eof, "connection not closed after a parse error"
        assert data.startswith(b"HTTP/1.1 400 "), f"parse error answered with {data[:40]!r}"
        assert b"\r\nConnection: close\r\n" in data
        assert http_get(f"http://127.0.0.1:{port}/")[2] == b"fine"


def test_large_header_and_many_headers(make_manager):
    got = []
    m, port, _ = _capture_server(make_manager, lambda hm: got.append(
        (len(hm.header("X-Big") or ""), len(hm.headers()))))
    big = "b" * 16_000  # SPEC Decision 14: a header line may have 16 KiB
    many = "".join(f"X-M{i}: {i}\r\n" for i in range(500))
    with serve(m):
        (r1,), _ = request(port, get("/big", f"X-Big: {big}\r\n"))
        (r2,), _ = request(port, get("/many", many))
        (r3,), _ = request(port, get("/bigger", f"X-Big: {big * 7}\r\n"))
    assert r1 is not None and split_response(r1)[2] == b"ok"
    assert r2 is not None and split_response(r2)[2] == b"ok"
    assert r3 is not None and r3.startswith(b"HTTP/1.1 431 ")
    assert got == [(16_000, 2), (0, 30)]


# --------------------------------------------------------------------------
# curl


def _curl(curl, *args, data=None, timeout=20):
    cmd = [curl, "-s", "-S", "--noproxy", "*", "--max-time", "10", *args]
    return subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)


def test_curl_get_headers(make_manager, curl):
    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "curl ok " + hm.query_var("x"), {"X-Test": "yes"})

    m = make_manager(handler)
    _, port = listen_free(m)
    with serve(m):
        proc = _curl(curl, "-i", f"http://127.0.0.1:{port}/c?x=42")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nX-Test: yes\r\n" in out
    assert out.endswith(b"\r\n\r\ncurl ok 42")


def test_curl_binary_post_roundtrip_and_keep_alive(make_manager, curl):
    def on_msg(conn, ev, hm):
        conn.reply(200, hm.body_bytes, {"Content-Type": "application/octet-stream"})

    rec = Recorder(on={MG_EV_HTTP_MSG: on_msg})
    m = make_manager(rec)
    _, port = listen_free(m)
    payload = bytes(range(256)) * 512
    url = f"http://127.0.0.1:{port}/echo"
    with serve(m):
        proc = _curl(curl, "--data-binary", "@-", "-H", "Content-Type: application/octet-stream",
                     url, data=payload)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == payload
        # Two URLs in one curl invocation reuse one keep-alive connection.
        before = len(rec.conns(MG_EV_ACCEPT))
        proc = _curl(curl, url, url)
        assert proc.returncode == 0, proc.stderr
        assert wait_until(lambda: rec.count(MG_EV_HTTP_MSG) == 3)
        assert len(rec.conns(MG_EV_ACCEPT)) - before == 1
