"""Malformed requests (issue 3 item 2 and its "Done when"): a table of bad inputs,
each sent on its own connection to a server running in a subprocess, while a
well-formed request on another connection is answered correctly.  Each bad input
gets a 400-class answer (400/408/411/413/414/431/501) followed by a close, or a clean
close; never a hang (every read has a deadline) and never a crash (the server
process is alive after every case and exits with status 0 at the end)."""

from __future__ import annotations

import os
import time

import pytest
from conftest import HttpReader, raw_connect, recv_until_eof
from http_peers import spawn_server

pytestmark = pytest.mark.timeout(60)

LIMITS = {"head_timeout_ms": 1000, "idle_timeout_ms": 2500, "max_head": 8192,
          "max_headers": 50, "max_uri": 2048, "max_body": 65536}

CLOSE = None  # a clean close without an answer is acceptable
BAD = {400}
TE = {400, 501}
P = b"POST / HTTP/1.1\r\nHost: x\r\n"
CH = P + b"Transfer-Encoding: chunked\r\n\r\n"

# name: (bytes sent, acceptable statuses; CLOSE in the set allows a bare close)
CASES: dict[str, tuple[bytes, set[int | None]]] = {
    # request line
    "no_version": (b"GET /\r\n\r\n", BAD),
    "http09": (b"GET /\r\n", BAD),
    "bad_protocol_name": (b"GET / HTTX/1.1\r\nHost: x\r\n\r\n", BAD),
    "lowercase_protocol": (b"GET / http/1.1\r\nHost: x\r\n\r\n", BAD),
    "version_one_digit": (b"GET / HTTP/1\r\nHost: x\r\n\r\n", BAD),
    "version_http3": (b"GET / HTTP/3\r\nHost: x\r\n\r\n", BAD),
    "version_trailing_junk": (b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n", BAD),
    "extra_token": (b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n", BAD),
    "double_space": (b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", BAD),
    "space_in_uri": (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", BAD),
    "empty_method": (b" / HTTP/1.1\r\nHost: x\r\n\r\n", BAD),
    "empty_uri": (b"GET  HTTP/1.1\r\nHost: x\r\n\r\n", BAD),
    "nul_in_uri": (b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", BAD),
    "ctl_in_uri": (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", BAD),
    "del_in_uri": (b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", BAD),
    "ctl_in_method": (b"GE\x01T / HTTP/1.1\r\nHost: x\r\n\r\n", BAD),
    "cr_line_end": (b"GET / HTTP/1.1\rHost: x\r\n\r\n", BAD),
    "tls_client_hello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) +
                         b"\r\n\r\n", BAD),
    "binary_garbage": (bytes(range(256)), BAD),
    # header fields
    "nul_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", BAD),
    "nul_in_name": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A\x00: b\r\n\r\n", BAD),
    "ctl_in_name": (b"GET / HTTP/1.1\r\nHost: x\r\nX\x01: a\r\n\r\n", BAD),
    "high_byte_in_name": (b"GET / HTTP/1.1\r\nHost: x\r\nX\xff: a\r\n\r\n", BAD),
    "bare_cr_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", BAD),
    "del_in_value": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n", BAD),
    "space_before_colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", BAD),
    "space_in_name": (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n", BAD),
    "no_colon": (b"GET / HTTP/1.1\r\nHost: x\r\nHost x\r\n\r\n", BAD),
    "duplicate_host": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", BAD),
    "post_body_without_length": (P + b"\r\nhello=world", {411}),
    "put_without_length": (b"PUT /f HTTP/1.1\r\nHost: x\r\n\r\n", {411}),
    "empty_name": (b"GET / HTTP/1.1\r\nHost: x\r\n: x\r\n\r\n", BAD),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", BAD),
    "leading_whitespace_field": (b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", BAD),
    "whitespace_only_line": (b"GET / HTTP/1.1\r\nHost: x\r\n   \r\n\r\n", BAD),
    # Content-Length
    "duplicate_content_length": (P + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nab", BAD),
    "conflicting_content_length": (P + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", BAD),
    "content_length_list": (P + b"Content-Length: 1, 1\r\n\r\na", BAD),
    "content_length_negative": (P + b"Content-Length: -1\r\n\r\n", BAD),
    "content_length_alpha": (P + b"Content-Length: abc\r\n\r\n", BAD),
    "content_length_plus": (P + b"Content-Length: +1\r\n\r\na", BAD),
    "content_length_hex": (P + b"Content-Length: 0x1\r\n\r\na", BAD),
    "content_length_two_numbers": (P + b"Content-Length: 1 1\r\n\r\na", BAD),
    "content_length_empty": (P + b"Content-Length: \r\n\r\n", BAD),
    "content_length_2_pow_64": (P + b"Content-Length: 18446744073709551616\r\n\r\n", BAD),
    "content_length_huge": (P + b"Content-Length: 99999999999999999999999\r\n\r\n", BAD),
    # Transfer-Encoding
    "te_and_content_length": (P + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"1\r\na\r\n0\r\n\r\n", BAD),
    "te_gzip": (P + b"Transfer-Encoding: gzip\r\n\r\n", TE),
    "te_identity": (P + b"Transfer-Encoding: identity\r\n\r\n", TE),
    "te_chunked_not_last": (P + b"Transfer-Encoding: chunked, gzip\r\n\r\n", TE),
    "te_duplicate": (P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n", TE),
    "te_empty": (P + b"Transfer-Encoding: \r\n\r\n", TE),
    # chunked bodies
    "chunk_size_not_hex": (CH + b"zz\r\nab\r\n0\r\n\r\n", BAD),
    "chunk_size_negative": (CH + b"-1\r\nab\r\n", BAD),
    "chunk_size_overflow": (CH + b"ffffffffffffffffffff\r\nab\r\n", BAD),
    "chunk_size_leading_space": (CH + b" 1\r\na\r\n0\r\n\r\n", BAD),
    "chunk_size_empty": (CH + b"\r\na\r\n0\r\n\r\n", BAD),
    "chunk_data_longer_than_size": (CH + b"2\r\nabcd\r\n0\r\n\r\n", BAD),
    "chunk_data_without_crlf": (CH + b"1\r\naX0\r\n\r\n", BAD),
    "chunk_ext_nul": (CH + b"1;\x00\r\na\r\n0\r\n\r\n", BAD),
    "chunk_trailer_nul": (CH + b"1\r\na\r\n0\r\nX: \x00\r\n\r\n", BAD),
    "chunk_oversized": (CH + b"100000\r\nab", {413}),
    "chunks_add_up_too_large": (CH + b"8000\r\n" + b"a" * 0x8000 + b"\r\n8001\r\n", {413}),
    # limits
    "head_too_large": (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 10000 + b"\r\n\r\n", {431}),
    "too_many_headers": (b"GET / HTTP/1.1\r\n" + b"".join(b"X%d: a\r\n" % i for i in range(60)) +
                         b"\r\n", {431}),
    "uri_too_long": (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", {414}),
    "method_too_long": (b"A" * 9000 + b" / HTTP/1.1\r\nHost: x\r\n\r\n", {400, 414, 431}),
    "content_length_too_large": (P + b"Content-Length: 70000\r\n\r\n", {413}),
    "expect_with_too_large_body": (P + b"Expect: 100-continue\r\nContent-Length: 999999\r\n\r\n",
                                   {413}),
    # never completed
    "head_never_ends": (b"GET / HTTP/1.1\r\nHost: x\r\n", {408, CLOSE}),
    "only_empty_lines": (b"\r\n\r\n\r\n\r\n", {400, 408, CLOSE}),
    "body_never_ends": (P + b"Content-Length: 10\r\n\r\nab", {408, CLOSE}),
    "chunked_body_never_ends": (CH + b"5\r\nab", {408, CLOSE}),
}


@pytest.fixture(scope="module")
def server():
    with spawn_server(max_seconds=300, **LIMITS) as srv:
        yield srv


def read_outcome(sock, timeout: float) -> tuple[int | None, bytes]:
    """(status of the answer or None, raw bytes); asserts the server closed in time."""
    data, eof = recv_until_eof(sock, timeout=timeout)
    assert eof, f"no close within {timeout}s; got {data[:120]!r}"
    if not data:
        return None, data
    assert data.startswith(b"HTTP/1.1 "), data[:120]
    return int(data.split(b" ", 2)[1]), data


def test_table_has_at_least_forty_cases():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_bad_request_alone_on_its_connection(server, name):
    payload, allowed = CASES[name]
    body = os.urandom(64)
    good_req = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    good = raw_connect(server.port)
    bad = raw_connect(server.port)
    try:
        good.sendall(good_req[:20])  # a request in progress on the other connection
        t0 = time.monotonic()
        try:
            bad.sendall(payload)
        except OSError:
            pass  # refused and closed while the rest was still going out
        good.sendall(good_req[20:])
        resp = HttpReader(good).read_response(5)
        assert resp is not None, "the well-formed request was not answered"
        assert resp.startswith(b"HTTP/1.1 200 ") and resp.endswith(body)
        good.sendall(good_req)  # and it stays usable
        resp = HttpReader(good).read_response(5)
        assert resp is not None and resp.endswith(body)
        status, data = read_outcome(bad, timeout=6)
        assert status in allowed, f"{name}: got {status}: {data[:200]!r}"
        if status is not None:
            assert b"Connection: close" in data.partition(b"\r\n\r\n")[0]
        assert time.monotonic() - t0 < 6
    finally:
        good.close()
        bad.close()
    assert server.alive()
    # A new connection after the bad one went away is served.
    s = raw_connect(server.port)
    try:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert HttpReader(s).read_response(5).endswith(b"hello world\n")
    finally:
        s.close()


def test_all_bad_inputs_at_once_then_server_still_serves(server):
    socks = []
    try:
        for payload, _ in CASES.values():
            s = raw_connect(server.port)
            try:
                s.sendall(payload)
            except OSError:
                pass
            socks.append(s)
        for s, (name, (_, allowed)) in zip(socks, CASES.items(), strict=True):
            status, data = read_outcome(s, timeout=8)
            assert status in allowed, f"{name}: got {status}: {data[:200]!r}"
    finally:
        for s in socks:
            s.close()
    s = raw_connect(server.port)
    try:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert HttpReader(s).read_response().endswith(b"hello world\n")
    finally:
        s.close()
    assert server.alive()
