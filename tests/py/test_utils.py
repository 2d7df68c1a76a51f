"""Module-level utilities (SPEC 1.10), checked against the standard library:
json, urllib.parse, hashlib, hmac, base64, binascii and email."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hashlib
import hmac
import inspect
import json
import math
import re
import time
import urllib.parse

import pytest

import cymongoose
from cymongoose import (
    base64_decode,
    base64_encode,
    crc32,
    hmac_sha256,
    http_parse_multipart,
    http_var,
    json_get,
    json_get_bool,
    json_get_long,
    json_get_num,
    json_get_str,
    match,
    md5,
    millis,
    random_bytes,
    random_str,
    sha1,
    sha256,
    url_encode,
    url_host,
    url_is_ssl,
    url_pass,
    url_port,
    url_uri,
    url_user,
)

FUNCTIONS = (
    "base64_decode base64_encode crc32 hmac_sha256 http_parse_multipart http_var json_get "
    "json_get_bool json_get_long json_get_num json_get_str match md5 millis random_bytes "
    "random_str sha1 sha256 url_encode url_host url_is_ssl url_pass url_port url_uri url_user"
).split()


def test_exported():
    for name in FUNCTIONS:
        assert name in cymongoose.__all__
        assert name in cymongoose._mongoose.__all__
        assert callable(getattr(cymongoose, name))


def test_signatures():
    assert str(inspect.signature(json_get_long)) == "(data, path, default=0)"
    assert str(inspect.signature(http_parse_multipart)) == "(body, offset=0)"
    assert str(inspect.signature(crc32)) == "(data, initial=0)"
    assert str(inspect.signature(url_port)) == "(url, /)"


# --------------------------------------------------------------------------
# JSON

DOC = json.dumps(
    {
        "name": "Alice",
        "age": 30,
        "pi": 3.14,
        "ok": True,
        "no": False,
        "nothing": None,
        "tags": ["a", "b"],
        "nested": {"x": [1, 2, {"y": "deep"}]},
        "esc": 'q"b\\s/\n\t\u00e9\u20ac\U0001f600',
    }
)
PATHS = {
    "$": lambda d: d,
    "$.name": lambda d: d["name"],
    "$.age": lambda d: d["age"],
    "$.pi": lambda d: d["pi"],
    "$.ok": lambda d: d["ok"],
    "$.nothing": lambda d: d["nothing"],
    "$.tags": lambda d: d["tags"],
    "$.tags[1]": lambda d: d["tags"][1],
    "$.nested.x[2].y": lambda d: d["nested"]["x"][2]["y"],
    "$.esc": lambda d: d["esc"],
}


@pytest.mark.parametrize("path", PATHS)
def test_json_get_matches_json_module(path):
    tok = json_get(DOC, path)
    assert isinstance(tok, str)
    assert json.loads(tok) == PATHS[path](json.loads(DOC))


def test_json_get_raw_tokens():
    doc = '{"name": "Alice", "age": 30, "a": [1, {"b": null}]}'
    assert json_get(doc, "$.name") == '"Alice"'  # quotes kept
    assert json_get(doc, "$.age") == "30"
    assert json_get(doc, "$.a") == '[1, {"b": null}]'
    assert json_get(doc, "$.a[1].b") == "null"
    assert json_get(doc, "$") == doc


@pytest.mark.parametrize("path", ["$.missing", "$.tags[2]", "$.tags[-1]", "$.name.x", "$[0]"])
def test_json_get_missing(path):
    assert json_get(DOC, path) is None


@pytest.mark.parametrize("doc", ["", "{", '{"a":1,}', "[1 2]", '{"a":1} x', "nul", "{'a':1}"])
def test_json_get_invalid_document(doc):
    assert json_get(doc, "$") is None
    assert json_get(doc, "$.a") is None


def test_json_get_bad_path_is_none():
    assert json_get('{"a":1}', "a") is None
    assert json_get('{"a":[1]}', "$.a[x]") is None


def test_json_get_accepts_bytes_like():
    raw = DOC.encode()
    for data in (raw, bytearray(raw), memoryview(raw)):
        assert json_get(data, "$.tags[0]") == '"a"'
        assert json_get_num(data, "$.age") == 30.0


def test_json_get_non_utf8_bytes_survive():
    assert json_get(b'{"a":"\xff"}', "$.a").encode("utf-8", "surrogateescape") == b'"\xff"'


def test_json_argument_errors():
    with pytest.raises(TypeError, match="data"):
        json_get(123, "$")
    with pytest.raises(TypeError, match="path"):
        json_get("{}", b"$")
    with pytest.raises(ValueError, match="path"):
        json_get('{"a":1}', "$.a\0")
    with pytest.raises(TypeError, match="default"):
        json_get_long("{}", "$", "7")
    with pytest.raises(TypeError):
        json_get("{}")


def test_json_get_num():
    assert json_get_num(DOC, "$.age") == 30.0
    assert type(json_get_num(DOC, "$.age")) is float
    assert json_get_num(DOC, "$.pi") == 3.14
    assert json_get_num("[-1.5e3]", "$[0]") == -1500.0
    assert json_get_num("[1e400]", "$[0]") == math.inf  # like json.loads
    assert json_get_num(DOC, "$.name") is None
    assert json_get_num(DOC, "$.ok") is None
    assert json_get_num(DOC, "$.missing") is None
    assert json_get_num(DOC, "$.missing", 1.5) == 1.5
    assert json_get_num(DOC, "$.name", default=-1) == -1


def test_json_get_bool():
    assert json_get_bool(DOC, "$.ok") is True
    assert json_get_bool(DOC, "$.no") is False
    assert json_get_bool(DOC, "$.age") is None
    assert json_get_bool('{"s":"true"}', "$.s") is None
    assert json_get_bool(DOC, "$.nothing", True) is True
    assert json_get_bool(DOC, "$.missing", default=False) is False


@pytest.mark.parametrize(
    "token, expected",
    [
        ("30", 30),
        ("-7", -7),
        ("0", 0),
        ("-0", 0),
        ("3.14", 3),
        ("3.99", 3),
        ("-2.9", -2),
        ("1e3", 1000),
        ("2.5E2", 250),
        ("-0.5", 0),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("-98765432109876543210", -98765432109876543210),
        ("1e20", int(1e20)),
    ],
)
def test_json_get_long(token, expected):
    doc = f'{{"v": {token}}}'
    assert json_get_long(doc, "$.v") == expected
    assert type(json_get_long(doc, "$.v")) is int
    assert json_get_long(doc, "$.v") == int(json.loads(doc)["v"])


def test_json_get_long_defaults():
    assert json_get_long(DOC, "$.missing") == 0
    assert json_get_long(DOC, "$.missing", 42) == 42
    assert json_get_long(DOC, "$.name", default=-1) == -1
    assert json_get_long(DOC, "$.ok", 5) == 5
    assert json_get_long("[1e400]", "$[0]", 9) == 9  # no int is infinite
    assert json_get_long("not json", "$", 3) == 3


def test_json_get_str():
    assert json_get_str(DOC, "$.name") == "Alice"
    assert json_get_str(DOC, "$.esc") == json.loads(DOC)["esc"]
    assert json_get_str(r'{"s":"\u00e9\u0041\ud83d\ude00\/"}', "$.s") == "\u00e9A\U0001f600/"
    assert json_get_str(r'{"s":"a\u0000b"}', "$.s") == "a\0b"
    assert json_get_str('{"s":""}', "$.s") == ""
    assert json_get_str(DOC, "$.age") is None
    assert json_get_str(DOC, "$.tags") is None
    assert json_get_str(DOC, "$.missing") is None
    assert json_get_str(r'{"s":"\ud83d"}', "$.s") is None  # lone surrogate


# --------------------------------------------------------------------------
# URLs

URL_CASES = [
    "",
    " ",
    "a",
    "~",
    "-._~",
    "hello world",
    "a+b=c&d/e?f#g",
    "100%",
    "\u00e9\u20ac\U0001f600",
    "".join(chr(i) for i in range(128)),
]


@pytest.mark.parametrize("s", URL_CASES)
def test_url_encode_matches_urllib(s):
    assert url_encode(s) == urllib.parse.quote(s, safe="-._~")


def test_url_encode_examples():
    assert url_encode("") == ""
    assert url_encode(" ") == "%20"
    assert url_encode("/") == "%2F"
    assert urllib.parse.unquote(url_encode("x y/\u00e9")) == "x y/\u00e9"
    with pytest.raises(TypeError, match="data"):
        url_encode(b"abc")


URLS = [
    # url, port, host, user, pass, uri, is_ssl
    ("http://example.com", 80, "example.com", "", "", "/", False),
    ("https://us:pw@example.com:8443/p?q=1", 8443, "example.com", "us", "pw", "/p?q=1", True),
    ("ws://h/x", 80, "h", "", "", "/x", False),
    ("wss://h", 443, "h", "", "", "/", True),
    ("mqtt://broker.local", 1883, "broker.local", "", "", "/", False),
    ("mqtts://u@b:1", 1, "b", "u", "", "/", True),
    ("tcp://1.2.3.4:99", 99, "1.2.3.4", "", "", "/", False),
    ("udp://10.0.0.1:53", 53, "10.0.0.1", "", "", "/", False),
    ("ssl://h:7", 7, "h", "", "", "/", True),
    ("tls://h:7", 7, "h", "", "", "/", True),
    ("tcps://h:7", 7, "h", "", "", "/", True),
    ("http://[::1]:8000/v6", 8000, "::1", "", "", "/v6", False),
    ("https://[2001:db8::1]/", 443, "2001:db8::1", "", "", "/", True),
    ("ftp://h", 0, "h", "", "", "/", False),
]


@pytest.mark.parametrize("url, port, host, user, pw, uri, ssl", URLS)
def test_url_parts(url, port, host, user, pw, uri, ssl):
    assert url_port(url) == port
    assert url_host(url) == host
    assert url_user(url) == user
    assert url_pass(url) == pw
    assert url_uri(url) == uri
    assert url_is_ssl(url) is ssl


@pytest.mark.parametrize("url", [u[0] for u in URLS])
def test_url_parts_match_urllib(url):
    parts = urllib.parse.urlsplit(url)
    assert url_host(url) == parts.hostname
    assert url_user(url) == (parts.username or "")
    assert url_pass(url) == (parts.password or "")
    if parts.port is not None:
        assert url_port(url) == parts.port
    tail = parts.path + ("?" + parts.query if parts.query else "")
    assert url_uri(url) == (tail or "/")


def test_url_argument_errors():
    for fn in (url_port, url_host, url_user, url_pass, url_uri, url_is_ssl):
        with pytest.raises(TypeError, match="url"):
            fn(b"http://x")
        with pytest.raises(ValueError, match="url"):
            fn("http://x\0y")


# --------------------------------------------------------------------------
# Glob match


@pytest.mark.parametrize(
    "s, pattern, expected",
    [
        ("/api/foo", "/api/*", (True, ["foo"])),
        ("/api/foo/bar", "/api/*", (False, [])),
        ("/api/foo/bar", "/api/#", (True, ["foo/bar"])),
        ("abc", "a?c", (True, ["b"])),
        ("abc", "abc", (True, [])),
        ("abd", "abc", (False, [])),
        ("", "", (True, [])),
        ("", "*", (True, [""])),
        ("", "#", (True, [""])),
        ("", "?", (False, [])),
        ("a/b/c", "*/#", (True, ["a", "b/c"])),
        ("aaa", "*a", (True, ["aa"])),
        ("a-b-c", "*-#", (True, ["a", "b-c"])),
        ("/\u00e9/x", "/*/?", (True, ["\u00e9", "x"])),
        ("user.get", "user.*", (True, ["get"])),
    ],
)
def test_match(s, pattern, expected):
    assert match(s, pattern) == expected


def test_match_types():
    ok, caps = match("x", "*")
    assert ok is True and caps == ["x"] and isinstance(caps, list)
    with pytest.raises(TypeError, match="pattern"):
        match("x", None)
    with pytest.raises(TypeError, match="s must"):
        match(b"x", "*")


# --------------------------------------------------------------------------
# Form variables and multipart


def test_http_var():
    assert http_var("a=1&b=2", "b") == "2"
    assert http_var("a=1&b=2", "a") == "1"
    assert http_var("foo=", "foo") == ""
    assert http_var("foo=&x=1", "foo") == ""
    assert http_var("A=1", "a") == "1"  # case-insensitive name
    assert http_var("a=%20x+y", "a") == "%20x+y"  # raw, not decoded
    assert http_var("ab=1&b=2", "b") == "2"
    assert http_var("a=1&a=2", "a") == "1"
    assert http_var("a=1", "b") is None
    assert http_var("", "a") is None
    assert http_var(b"k=v\xff", "k").encode("utf-8", "surrogateescape") == b"v\xff"
    assert http_var(bytearray(b"k=v"), "k") == "v"


def test_http_var_matches_parse_qsl():
    query = "name=bob&age=7&empty=&x=y"
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        assert http_var(query, key) == value


def test_http_var_argument_errors():
    with pytest.raises(TypeError, match="name"):
        http_var("a=1", b"a")
    with pytest.raises(TypeError, match="buf"):
        http_var(1, "a")


BOUNDARY = "XyZzy42"
BODY = (
    (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="field1"\r\n'
        "\r\n"
        "value one\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="upload"; filename="a.bin"\r\n'
        "Content-Type: application/octet-stream\r\n"
        "\r\n"
    ).encode()
    + b"\x00\x01binary\r\n\xff"
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)


def all_parts(body):
    parts, offset = [], 0
    for _ in range(100):
        offset, part = http_parse_multipart(body, offset)
        if part is None:
            assert offset == 0
            return parts
        assert offset > 0
        parts.append(part)
    raise AssertionError("no end")


def test_multipart_parts():
    parts = all_parts(BODY)
    assert parts == [
        {"name": "field1", "filename": "", "body": b"value one"},
        {"name": "upload", "filename": "a.bin", "body": b"\x00\x01binary\r\n\xff"},
    ]


def test_multipart_matches_email_parser():
    head = f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n".encode()
    msg = email.message_from_bytes(head + BODY, policy=email.policy.HTTP)
    expected = [
        {
            "name": p.get_param("name", header="content-disposition"),
            "filename": p.get_filename() or "",
            "body": p.get_payload(decode=True),
        }
        for p in msg.iter_parts()
    ]
    assert all_parts(BODY) == expected


def test_multipart_str_and_edges():
    text = BODY.replace(b"\x00\x01binary\r\n\xff", b"text").decode()
    assert [p["body"] for p in all_parts(text)] == [b"value one", b"text"]
    assert http_parse_multipart(b"") == (0, None)
    assert http_parse_multipart(b"not multipart at all") == (0, None)
    assert http_parse_multipart(BODY, len(BODY) + 10) == (0, None)
    assert http_parse_multipart(BODY[:60]) == (0, None)  # cut short: no part yet
    assert http_parse_multipart(body=BODY, offset=0)[1]["name"] == "field1"
    with pytest.raises(ValueError, match="offset"):
        http_parse_multipart(BODY, -1)
    with pytest.raises(TypeError, match="offset"):
        http_parse_multipart(BODY, "0")
    with pytest.raises(TypeError, match="body"):
        http_parse_multipart(None)


# --------------------------------------------------------------------------
# Digests

DATA = [b"", b"abc", b"The quick brown fox jumps over the lazy dog", bytes(range(256)) * 40]


@pytest.mark.parametrize("data", DATA)
def test_digests_match_hashlib(data):
    assert md5(data) == hashlib.md5(data).digest()
    assert sha1(data) == hashlib.sha1(data).digest()
    assert sha256(data) == hashlib.sha256(data).digest()
    assert len(md5(data)) == 16 and len(sha1(data)) == 20 and len(sha256(data)) == 32


def test_digests_accept_str_and_buffers():
    assert sha256("h\u00e9llo") == hashlib.sha256("h\u00e9llo".encode()).digest()
    assert md5(bytearray(b"abc")) == hashlib.md5(b"abc").digest()
    assert sha1(memoryview(b"xabcx")[1:4]) == hashlib.sha1(b"abc").digest()
    for fn in (md5, sha1, sha256):
        with pytest.raises(TypeError, match="data"):
            fn(42)


@pytest.mark.parametrize("key", [b"", b"key", b"k" * 64, b"k" * 200, "cl\u00e9"])
@pytest.mark.parametrize("data", [b"", b"message", "t\u00e9xt", b"x" * 5000])
def test_hmac_sha256_matches_hmac(key, data):
    kb = key.encode() if isinstance(key, str) else key
    db = data.encode() if isinstance(data, str) else data
    assert hmac_sha256(key, data) == hmac.new(kb, db, hashlib.sha256).digest()


def test_hmac_sha256_rfc4231_case_2():
    mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert mac.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert hmac_sha256(key=b"Jefe", data="what do ya want for nothing?") == mac
    with pytest.raises(TypeError, match="key"):
        hmac_sha256(None, b"x")
    with pytest.raises(TypeError, match="data"):
        hmac_sha256(b"k", None)


# --------------------------------------------------------------------------
# Base64


@pytest.mark.parametrize("n", range(12))
def test_base64_encode_matches_stdlib(n):
    data = bytes((i * 37 + 11) & 255 for i in range(n))
    assert base64_encode(data) == base64.b64encode(data).decode()
    assert base64_decode(base64_encode(data)) == data


def test_base64_encode_str_and_types():
    assert base64_encode("h\u00e9") == base64.b64encode("h\u00e9".encode()).decode()
    assert base64_encode(b"") == ""
    assert base64_encode(bytearray(b"\xff\xfe")) == "//4="
    with pytest.raises(TypeError, match="data"):
        base64_encode(1)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", b""),
        ("QUJD", b"ABC"),
        ("QQ==", b"A"),
        ("QUI=", b"AB"),
        ("QUJDRA==", b"ABCD"),
        ("QUJDR", b"ABC"),  # trailing partial quartet ignored
        ("QUJDRA", b"ABC"),
        ("QUJDREU", b"ABC"),
        ("QQ", b""),
        ("Q", b""),
        ("QUJD=", b"ABC"),
        ("QU!D", b""),  # invalid -> b""
        ("QUJD QUJD", b""),
        ("QQ==QUJD", b""),  # padding in the middle
        ("Q===", b""),
        ("\u00e9\u00e9\u00e9\u00e9", b""),  # not ASCII
        ("//4=", b"\xff\xfe"),
    ],
)
def test_base64_decode(text, expected):
    assert base64_decode(text) == expected


def test_base64_decode_matches_stdlib_on_valid_input():
    for n in range(40):
        enc = base64.b64encode(bytes(range(n))).decode()
        assert base64_decode(enc) == base64.b64decode(enc, validate=True)


def test_base64_decode_str_only():
    with pytest.raises(TypeError, match="data must be str"):
        base64_decode(b"QUJD")
    with pytest.raises(TypeError, match="data must be str"):
        base64_decode(None)


# --------------------------------------------------------------------------
# Time and randomness


def test_millis():
    a = millis()
    assert isinstance(a, int) and a > 0
    time.sleep(0.05)
    b = millis()
    assert 40 <= b - a < 5000


def test_random_bytes():
    assert random_bytes(0) == b""
    a, b = random_bytes(32), random_bytes(32)
    assert isinstance(a, bytes) and len(a) == 32 and a != b
    assert len(random_bytes(100_000)) == 100_000
    assert len(set(random_bytes(4096))) > 200  # all byte values are possible


def test_random_str():
    assert random_str(0) == ""
    s = random_str(5000)
    assert re.fullmatch(r"[0-9a-zA-Z]{5000}", s)
    assert len(set(s)) == 62
    assert random_str(16) != random_str(16)


@pytest.mark.parametrize("fn", [random_bytes, random_str])
def test_random_argument_errors(fn):
    with pytest.raises(ValueError, match="length"):
        fn(-1)
    with pytest.raises(TypeError, match="length"):
        fn(1.5)
    with pytest.raises(TypeError, match="length"):
        fn("3")
    with pytest.raises(OverflowError):
        fn(1 << 70)


# --------------------------------------------------------------------------
# CRC-32


@pytest.mark.parametrize("data", DATA + [b"123456789"])
def test_crc32_matches_binascii(data):
    assert crc32(data) == binascii.crc32(data)


def test_crc32_check_value_and_chaining():
    assert crc32(b"123456789") == 0xCBF43926  # the CRC-32/ISO-HDLC check value
    a, b = b"hello, ", b"world"
    assert crc32(b, crc32(a)) == binascii.crc32(a + b)
    assert crc32(b, initial=binascii.crc32(a)) == binascii.crc32(a + b)
    for initial in (0, 1, 0xFFFFFFFF, -1, -12345, (1 << 40) + 5):
        assert crc32(b"data", initial) == binascii.crc32(b"data", initial)
    assert crc32("\u00e9") == binascii.crc32("\u00e9".encode())


def test_crc32_argument_errors():
    with pytest.raises(TypeError, match="initial"):
        crc32(b"x", "0")
    with pytest.raises(TypeError, match="initial"):
        crc32(b"x", 1.0)
    with pytest.raises(TypeError, match="data"):
        crc32(None)
