"""Connection methods of the C binding: reply() header assembly and checks,
send() argument handling, buffers, raw reads (SPEC Decision 4), addresses."""

from __future__ import annotations

import gc
import re
import socket
import weakref

import pytest
from conftest import HOST, listen_free, poll_until, raw_connect, recv_until_eof

from cymongoose import MG_EV_ACCEPT, MG_EV_ERROR, MG_EV_HTTP_MSG, MG_EV_READ

NAME_ERR = r"^Header name contains illegal character \(CR, LF, or NUL\): "
VALUE_ERR = r"^Header value contains illegal character \(CR, LF, or NUL\): "


def exchange(mgr, port: int, request: bytes) -> bytes:
    """Send one raw request, poll until a complete response, return it."""
    s = raw_connect(port)
    s.setblocking(False)
    buf = b""

    def complete() -> bool:
        nonlocal buf
        try:
            buf += s.recv(1 << 16)
        except BlockingIOError:
            pass
        head, sep, body = buf.partition(b"\r\n\r\n")
        m = re.search(rb"\r\nContent-Length: *(\d+)", head)
        return bool(sep and m and len(body) >= int(m.group(1)))

    try:
        s.sendall(request)
        assert poll_until(mgr, complete), buf
    finally:
        s.close()
    return buf


def reply_server(make_manager, action):
    """A manager whose HTTP handler calls action(conn, hm); returns (mgr, port)."""
    m = make_manager(lambda c, ev, d: action(c, d) if ev == MG_EV_HTTP_MSG else None)
    _, port = listen_free(m)
    return m, port


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("headers", "head"),
    [
        (None, b"Content-Type: text/plain\r\n"),
        ({}, b"Content-Type: text/plain\r\n"),
        ({"X-A": "1", "X-B": 2}, b"Content-Type: text/plain\r\nX-A: 1\r\nX-B: 2\r\n"),
        ({"content-TYPE": "text/html", "X": "y"}, b"content-TYPE: text/html\r\nX: y\r\n"),
        ({3: 4.5}, b"Content-Type: text/plain\r\n3: 4.5\r\n"),
        ({"X-U": "é"}, "Content-Type: text/plain\r\nX-U: é\r\n".encode()),
    ],
)
def test_reply_header_block(make_manager, headers, head):
    m, port = reply_server(make_manager, lambda c, hm: c.reply(201, b"ok", headers))
    raw = exchange(m, port, GET)
    assert raw == b"HTTP/1.1 201 Created\r\n" + head + b"Content-Length: 2\r\n\r\nok"


@pytest.mark.parametrize("body", [b"a\0b", bytearray(b"a\0b"), memoryview(b"xa\0bx")[1:4], "a\0b"])
def test_reply_body_types_are_binary_exact(make_manager, body):
    m, port = reply_server(make_manager, lambda c, hm: c.reply(200, body))
    assert exchange(m, port, GET).endswith(b"Content-Length: 3\r\n\r\na\0b")


def test_reply_default_body_and_keywords(make_manager):
    m, port = reply_server(make_manager, lambda c, hm: c.reply(status_code=200, headers=None))
    assert exchange(m, port, GET).endswith(b"text/plain\r\nContent-Length: 0\r\n\r\n")


def test_reply_json_forces_content_type(make_manager):
    def action(conn, hm):
        conn.reply_json({"a": [1, None]}, headers={"X-A": "1", "CONTENT-type": "text/html"})

    m, port = reply_server(make_manager, action)
    raw = exchange(m, port, GET)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body == b'{"a": [1, null]}'
    assert head.split(b"\r\n")[1:3] == [b"Content-Type: application/json", b"X-A: 1"]
    assert b"text/html" not in head


def test_reply_json_status_and_unserialisable(make_manager):
    errors = []

    def action(conn, hm):
        try:
            conn.reply_json(object())
        except TypeError as exc:
            errors.append(exc)
        conn.reply_json([], 404)

    m, port = reply_server(make_manager, action)
    raw = exchange(m, port, GET)
    assert raw.startswith(b"HTTP/1.1 404 ") and raw.endswith(b"\r\n\r\n[]")
    assert len(errors) == 1


@pytest.mark.parametrize(
    ("headers", "pattern"),
    [
        ({"X\r\nEvil": "1"}, NAME_ERR + re.escape(repr("X\r\nEvil")) + "$"),
        ({"X\0": "1"}, NAME_ERR),
        ({"X": "a\nb"}, VALUE_ERR + re.escape(repr("a\nb")) + "$"),
        ({"X": "a\rb"}, VALUE_ERR),
        ({"X": "a\0b"}, VALUE_ERR),
        ({"Ok": "1", "Bad": "x\r\nSet-Cookie: a=1"}, VALUE_ERR),
    ],
)
def test_header_injection_raises_before_anything_is_sent(make_manager, headers, pattern):
    m = make_manager()
    listener = m.listen("http://127.0.0.1:0")
    # Validation comes first: on a live listener it is a ValueError...
    with pytest.raises(ValueError, match=pattern):
        listener.reply(200, "x", headers)
    with pytest.raises(ValueError, match=pattern):
        listener.reply_json({}, 200, headers)
    assert listener.send_len == 0
    # ...and also once the connection is closed.
    listener.close()
    m.poll(0)
    with pytest.raises(ValueError, match=pattern):
        listener.reply(200, "x", headers)
    with pytest.raises(RuntimeError, match="Connection has been closed"):
        listener.reply(200, "x", {"Fine": "1"})


def test_reply_headers_mutated_by_str_are_safe(make_manager):
    headers = {}

    class Sneaky:
        def __str__(self):
            headers.clear()  # drops the dict's references to keys and values
            return "X-Sneaky"

    headers[Sneaky()] = type("V", (), {"__str__": lambda self: "v"})()
    headers["X-After"] = "a"
    m, port = reply_server(make_manager, lambda c, hm: c.reply(200, "", headers))
    raw = exchange(m, port, GET)
    assert b"\r\nX-Sneaky: v\r\nX-After: a\r\n" in raw


def test_reply_argument_errors(make_manager):
    m = make_manager()
    listener = m.listen("http://127.0.0.1:0")
    with pytest.raises(TypeError):
        listener.reply(200, 12)
    with pytest.raises(TypeError):
        listener.reply(200, b"", [("X", "1")])
    with pytest.raises(TypeError):
        listener.reply("200")


def test_send_argument_types(make_manager):
    m = make_manager()
    conn = m.listen("tcp://127.0.0.1:0")
    conn.send("é")
    conn.send(b"b")
    conn.send(bytearray(b"c"))
    conn.send(memoryview(b"d"))
    assert conn.send_data() == "é".encode() + b"bcd"
    assert conn.send_data(2) == "é".encode() and conn.send_data(100) == conn.send_data(-1)
    with pytest.raises(TypeError):
        conn.send(5)
    with pytest.raises(TypeError):
        conn.send(None)


def test_send_after_close_is_dropped_then_raises_once_closed(make_manager):
    m = make_manager()
    conn = m.listen("tcp://127.0.0.1:0")
    conn.close()
    assert conn.is_closing
    conn.send(b"dropped")  # closing: unsent data is discarded anyway
    conn.close()  # idempotent
    m.poll(0)
    with pytest.raises(RuntimeError, match="^Connection has been closed$"):
        conn.send(b"x")
    with pytest.raises(RuntimeError, match="^Connection has been closed$"):
        conn.error("x")
    conn.close()
    conn.drain()  # no-ops once closed
    assert conn.recv_data() == b"" and conn.send_data(5) == b""


def test_raw_read_shows_only_new_bytes(make_manager):
    seen = []

    def handler(conn, ev, data):
        if ev == MG_EV_READ:
            seen.append(
                (conn.recv_len, conn.recv_data(), conn.recv_data(2), conn.recv_data(length=99))
            )

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    s = raw_connect(port)
    try:
        for chunk in (b"abc", b"defg"):
            n = len(seen)
            s.sendall(chunk)
            assert poll_until(m, lambda n=n: len(seen) > n)
    finally:
        s.close()
    assert seen == [(3, b"abc", b"ab", b"abc"), (4, b"defg", b"de", b"defg")]


def test_udp_listener_each_read_is_one_datagram(make_manager):
    got = []

    def handler(conn, ev, data):
        if ev == MG_EV_READ:
            got.append(conn.recv_data())
        elif ev == MG_EV_ERROR:
            got.append(("error", data))

    m = make_manager(handler)
    _, port = listen_free(m, "udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # 64 KiB is reserved per datagram under a 3 MiB cap: without
        # consuming, the listener would fail after ~48 datagrams.
        for i in range(120):
            s.sendto(b"%d" % i, (HOST, port))
            assert poll_until(m, lambda i=i: len(got) > i)
    assert got == [b"%d" % i for i in range(120)]


def test_no_handler_raw_data_is_still_consumed(make_manager):
    m = make_manager()
    _, port = listen_free(m, "tcp")
    s = raw_connect(port)
    try:
        s.sendall(b"x" * 5000)
        assert poll_until(m, lambda: len(m.connections) == 2 and m.connections[1].is_readable)
        m.poll(10)
        assert m.connections[1].recv_len == 0
    finally:
        s.close()


def test_error_on_accepted_connection_closes_it(make_manager):
    errors = []

    def handler(conn, ev, data):
        if ev == MG_EV_ACCEPT:
            conn.error("go away")
        elif ev == MG_EV_ERROR:
            errors.append(data)

    m = make_manager(handler)
    _, port = listen_free(m, "tcp")
    s = raw_connect(port)
    try:
        assert poll_until(m, lambda: errors and len(m.connections) == 1)
        data, eof = recv_until_eof(s, timeout=2)
    finally:
        s.close()
    assert errors == ["go away"] and eof and data == b""


def test_ipv6_address_format(make_manager, ipv6):
    m = make_manager()
    conn = m.listen("tcp://[::1]:0")
    ip, port, is6 = conn.local_addr
    assert ip == "0000:0000:0000:0000:0000:0000:0000:0001" and port > 0 and is6 is True
    assert conn.remote_addr == ("0.0.0.0", 0, False)


def test_userdata_and_handler_properties(make_manager):
    m = make_manager()
    conn = m.listen("tcp://127.0.0.1:0")
    assert conn.userdata is None and conn.handler is None
    token = object()
    conn.userdata = token
    assert conn.userdata is token
    del conn.userdata
    assert conn.userdata is None
    h = lambda c, e, d: None  # noqa: E731
    conn.set_handler(h)
    assert conn.handler is h
    conn.set_handler(None)
    assert conn.handler is None
    with pytest.raises(AttributeError):
        conn.id = 5


def test_connection_weakref_and_lifetime(make_manager):
    m = make_manager()
    conn = m.listen("tcp://127.0.0.1:0")
    ref = weakref.ref(conn)
    del conn
    gc.collect()
    assert ref() is not None  # the manager keeps live connections
    ref().close()
    m.poll(0)
    gc.collect()
    assert ref() is None  # and lets go after MG_EV_CLOSE
