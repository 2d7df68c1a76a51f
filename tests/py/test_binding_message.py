"""HttpMessage, the view over a parsed message (SPEC 1.6): getters, query
and header variables, client-side responses, invalidation."""

from __future__ import annotations

import gc
import re

import pytest
from conftest import listen_free, poll_until, raw_connect

from cymongoose import MG_EV_CONNECT, MG_EV_HTTP_HDRS, MG_EV_HTTP_MSG, HttpMessage

QV_ERR = r"^Query parameter '{}' value exceeds 2048-byte buffer limit$"


def capture(make_manager, request: bytes, probe):
    """Serve one raw request; call probe(hm) inside MG_EV_HTTP_MSG; return
    (probe result, the view object)."""
    out = {}

    def handler(conn, ev, hm):
        if ev == MG_EV_HTTP_MSG:
            try:
                out["result"] = probe(hm)
            except Exception as exc:  # noqa: BLE001 - handed to the test
                out["result"] = exc
            out["view"] = hm
            conn.reply(200, "")

    m = make_manager(handler)
    _, port = listen_free(m)
    s = raw_connect(port)
    try:
        s.sendall(request)
        assert poll_until(m, lambda: "view" in out)
    finally:
        s.close()
    return out["result"], out["view"]


def query(make_manager, qs: str, probe):
    req = b"GET /p?" + qs.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    return capture(make_manager, req, probe)[0]


def test_empty_view():
    v = HttpMessage.__new__(HttpMessage)
    assert not v
    assert (v.method, v.uri, v.query, v.proto, v.body_bytes, v.body_text) == (
        "",
        "",
        "",
        "",
        b"",
        "",
    )
    assert v.header("Host") is None and v.header("Host", "d") == "d"
    assert v.headers() == [] and v.query_var("a") is None
    assert v.status() is None and v.header_var("a", "b") is None


def test_request_fields_and_headers(make_manager):
    request = (
        b"POST /a%20b/c?x=1&y=%41 HTTP/1.1\r\nHost: h\r\nX-Multi: one\r\n"
        b"x-multi: two\r\nContent-Length: 5\r\n\r\nhe\xffl\x00"
    )

    def probe(hm):
        return (
            hm.method,
            hm.uri,
            hm.query,
            hm.proto,
            hm.body_bytes,
            hm.body_text,
            hm.header("X-MULTI"),
            hm.header(name="missing", default="d"),
            hm.headers(),
            hm.status(),
            bool(hm),
        )

    result, view = capture(make_manager, request, probe)
    assert result == (
        "POST",
        "/a%20b/c",
        "x=1&y=%41",
        "HTTP/1.1",
        b"he\xffl\x00",
        "he\udcffl\x00",
        "one",
        "d",
        [("Host", "h"), ("X-Multi", "one"), ("x-multi", "two"), ("Content-Length", "5")],
        0,
        True,
    )
    # Invalidated once the handler returned: defaults, never stale memory.
    gc.collect()
    assert not view and view.method == "" and view.headers() == [] and view.status() is None


def test_header_text_is_surrogateescaped(make_manager):
    result, _ = capture(
        make_manager, b"GET / HTTP/1.1\r\nHost: x\r\nX-Bin: caf\xe9\r\n\r\n",
        lambda hm: hm.header("x-bin")
    )
    assert result == "caf\udce9" and result.encode("utf-8", "surrogateescape") == b"caf\xe9"


@pytest.mark.parametrize(
    ("qs", "name", "want"),
    [
        ("a=1&b=2", "b", "2"),
        ("a=hello+world%21", "a", "hello world!"),
        ("A=upper", "a", "upper"),
        ("a=&b=2", "a", None),
        ("b=2", "a", None),
        ("ab=1", "a", None),
        ("a=%C3%A9", "a", "é"),
        ("a=%FF", "a", "\udcff"),
        ("a=x%00y", "a", "x\x00y"),
    ],
)
def test_query_var(make_manager, qs, name, want):
    assert query(make_manager, qs, lambda hm: hm.query_var(name)) == want


def test_query_var_length_limit(make_manager):
    assert query(make_manager, "v=" + "x" * 2047, lambda hm: len(hm.query_var("v"))) == 2047
    assert query(make_manager, "v=" + "%41" * 2000, lambda hm: len(hm.query_var("v"))) == 2000
    err = query(make_manager, "v=" + "x" * 2048, lambda hm: hm.query_var("v"))
    assert isinstance(err, ValueError) and re.match(QV_ERR.format("v"), str(err))


@pytest.mark.parametrize("bad", ["%", "%4", "%zz", "ok%g1"])
def test_query_var_bad_escape(make_manager, bad):
    err = query(make_manager, "q=" + bad, lambda hm: hm.query_var("q"))
    assert isinstance(err, ValueError) and re.match(QV_ERR.format("q"), str(err))


def test_query_var_requires_str(make_manager):
    err = query(make_manager, "a=1", lambda hm: hm.query_var(b"a"))
    assert isinstance(err, TypeError)


@pytest.mark.parametrize(
    ("value", "var", "want"),
    [
        ("text/html; charset=utf-8", "charset", "utf-8"),
        ('text/html; Charset="a b"', "charset", "a b"),
        ('Digest username="u", realm="r, s", nonce=n1', "realm", "r, s"),
        ('Digest username="u", realm="r", nonce=n1', "nonce", "n1"),
        ("text/html", "charset", None),
        ("a; xcharset=1", "charset", None),
    ],
)
def test_header_var(make_manager, value, var, want):
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-H: " + value.encode() + b"\r\n\r\n"
    result, _ = capture(
        make_manager, request, lambda hm: (hm.header_var("x-h", var), hm.header_var("nope", var))
    )
    assert result == (want, None)


def test_header_var_keywords(make_manager):
    request = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Type: a/b; charset=x\r\n\r\n"
    result, _ = capture(
        make_manager,
        request,
        lambda hm: hm.header_var(header_name="content-type", var_name="charset"),
    )
    assert result == "x"


def test_client_side_response_view(make_manager):
    server = make_manager(
        lambda c, ev, hm: c.reply(404, "gone", {"X-R": "1"}) if ev == MG_EV_HTTP_MSG else None
    )
    _, port = listen_free(server)
    got = {}

    def client(conn, ev, hm):
        if ev == MG_EV_CONNECT:
            conn.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
        elif ev == MG_EV_HTTP_HDRS:
            got.setdefault("hdrs", hm.status())
        elif ev == MG_EV_HTTP_MSG:
            got["msg"] = (hm.method, hm.uri, hm.proto, hm.status(), hm.body_bytes, hm.header("x-r"))

    m = make_manager()
    m.connect(f"http://127.0.0.1:{port}", client)
    for _ in range(400):
        if "msg" in got:
            break
        server.poll(1)
        m.poll(1)
    assert got["msg"] == ("HTTP/1.1", "404", "Not Found", 404, b"gone", "1")
    assert got.get("hdrs", 404) == 404
