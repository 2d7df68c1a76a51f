"""RFC 6455 conformance of our WebSocket server, from a raw socket, in the
spirit of the Autobahn testsuite's case families: 1 framing, 2 ping/pong,
3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close handling,
9 limits, 12-13 compression.  Each case also checks that the server goes on
serving other clients afterwards."""

from __future__ import annotations

import struct
import zlib

import pytest
from conftest import raw_connect, recv_until_eof
from ws_peers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWs,
    close_payload,
    echo_server,
    frame,
    still_serves,
)


@pytest.fixture(scope="module")
def server():
    with echo_server() as (port, rec):
        yield port, rec


def fails_with(
    port: int, data: bytes, code: int, before: list[tuple[int, bytes]] | None = None
) -> None:
    """Send `data`; expect the messages `before`, then a close frame with
    `code`, then the TCP connection closed; then a fresh client is served."""
    ws = RawWs(port)
    try:
        ws.send(data)
        for want in before or []:
            assert ws.recv_frame() == want
        ws.expect_close(code)
    finally:
        ws.close()
    still_serves(port)


# ---- 1: framing ------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 65535, 65536, 1 << 20])
@pytest.mark.parametrize("op", [OP_TEXT, OP_BINARY])
def test_1_echo_every_length_encoding(server, op, n):
    port, _ = server
    ws = RawWs(port)
    payload = (b"*" * n) if op == OP_TEXT else bytes(i & 0xFF for i in range(n))
    ws.send(frame(op, payload))
    assert ws.recv_message() == (0x80 | op, payload)
    ws.close()


def test_1_frames_split_byte_by_byte(server):
    port, _ = server
    ws = RawWs(port)
    data = frame(OP_TEXT, b"Hello, world") + frame(OP_BINARY, b"\x00\x01")
    for i in range(len(data)):
        ws.send(data[i : i + 1])
    assert ws.recv_message() == (0x81, b"Hello, world")
    assert ws.recv_message() == (0x82, b"\x00\x01")
    ws.close()


def test_1_many_frames_in_one_write(server):
    port, _ = server
    ws = RawWs(port)
    ws.send(b"".join(frame(OP_TEXT, str(i).encode()) for i in range(500)))
    for i in range(500):
        assert ws.recv_message() == (0x81, str(i).encode())
    ws.close()


def test_1_unmasked_client_frame_fails_1002(server):
    fails_with(server[0], frame(OP_TEXT, b"hi", mask=False), 1002)


def test_1_length_with_top_bit_fails_1002(server):
    data = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 63) + b"\x00" * 4
    fails_with(server[0], data, 1002)


# ---- 2: ping / pong --------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"ping!", b"\xff" * 125])
def test_2_ping_gets_pong_with_same_payload(server, payload):
    port, _ = server
    ws = RawWs(port)
    ws.send(frame(OP_PING, payload))
    assert ws.recv_frame() == (0x8A, payload)
    ws.close()


def test_2_ping_over_125_bytes_fails_1002(server):
    fails_with(server[0], frame(OP_PING, b"x" * 126), 1002)


def test_2_fragmented_ping_fails_1002(server):
    fails_with(server[0], frame(OP_PING, b"ab", fin=False), 1002)


def test_2_unsolicited_pong_is_ignored(server):
    port, _ = server
    ws = RawWs(port)
    ws.send(frame(OP_PONG, b"unasked") + frame(OP_TEXT, b"after"))
    assert ws.recv_frame() == (0x81, b"after")
    ws.close()


def test_2_ten_pings_ten_pongs_in_order(server):
    port, _ = server
    ws = RawWs(port)
    ws.send(b"".join(frame(OP_PING, b"p%d" % i) for i in range(10)))
    for i in range(10):
        assert ws.recv_frame() == (0x8A, b"p%d" % i)
    ws.close()


# ---- 3: reserved bits --------------------------------------------------------


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
@pytest.mark.parametrize("op", [OP_TEXT, OP_BINARY, OP_PING])
def test_3_rsv_bits_without_extension_fail_1002(server, rsv, op):
    fails_with(server[0], frame(op, b"x", rsv=rsv), 1002)


def test_3_rsv_after_a_good_message_fails_1002(server):
    data = frame(OP_TEXT, b"ok") + frame(OP_TEXT, b"bad", rsv=0x20) + frame(OP_PING, b"never")
    fails_with(server[0], data, 1002, before=[(0x81, b"ok")])


# ---- 4: opcodes ------------------------------------------------------------------


@pytest.mark.parametrize("op", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_4_reserved_opcode_fails_1002(server, op):
    fails_with(server[0], frame(op, b"reserved"), 1002)


def test_4_reserved_opcode_after_a_message(server):
    fails_with(
        server[0],
        frame(OP_TEXT, b"ok") + frame(5, b"") + frame(OP_TEXT, b"never"),
        1002,
        before=[(0x81, b"ok")],
    )


# ---- 5: fragmentation ------------------------------------------------------------


def test_5_fragments_reassembled_first_opcode_reported(server):
    port, rec = server
    ws = RawWs(port)
    ws.send(
        frame(OP_BINARY, b"ab", fin=False)
        + frame(OP_CONT, b"cd", fin=False)
        + frame(OP_CONT, b"ef")
    )
    assert ws.recv_message() == (0x82, b"abcdef")
    ws.close()


def test_5_ping_between_fragments(server):
    port, _ = server
    ws = RawWs(port)
    ws.send(frame(OP_TEXT, b"frag", fin=False) + frame(OP_PING, b"mid") + frame(OP_CONT, b"ment"))
    assert ws.recv_frame() == (0x8A, b"mid")  # answered before the message ends
    assert ws.recv_frame() == (0x81, b"fragment")
    ws.close()


def test_5_many_empty_fragments(server):
    port, _ = server
    ws = RawWs(port)
    parts = (
        [frame(OP_TEXT, b"", fin=False)]
        + [frame(OP_CONT, b"", fin=False)] * 100
        + [frame(OP_CONT, b"")]
    )
    ws.send(b"".join(parts))
    assert ws.recv_message() == (0x81, b"")
    ws.close()


def test_5_one_byte_fragments_of_a_large_message(server):
    port, _ = server
    ws = RawWs(port)
    body = bytes(range(256)) * 4
    parts = [
        frame(OP_BINARY if i == 0 else OP_CONT, body[i : i + 1], fin=i == len(body) - 1)
        for i in range(len(body))
    ]
    ws.send(b"".join(parts))
    assert ws.recv_message() == (0x82, body)
    ws.close()


def test_5_continuation_with_nothing_to_continue_fails_1002(server):
    fails_with(server[0], frame(OP_CONT, b"orphan"), 1002)


def test_5_new_message_inside_fragmented_one_fails_1002(server):
    fails_with(server[0], frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), 1002)


def test_5_fragmented_close_fails_1002(server):
    fails_with(server[0], frame(OP_CLOSE, close_payload(1000), fin=False), 1002)


# ---- 6: UTF-8 ----------------------------------------------------------------------


GOOD_UTF8 = [
    "κόσμε",
    "\u0080",
    "\u07ff",
    "\u0800",
    "\uffff",
    "\U00010000",
    "\U0010ffff",
    "\ufeff",
    "",
]
BAD_UTF8 = [
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\xce\xba\xe1",
    b"\xf8\x88\x80\x80\x80",
    b"a\xc3",
]


@pytest.mark.parametrize("text", GOOD_UTF8)
def test_6_valid_utf8_round_trips(server, text):
    port, _ = server
    ws = RawWs(port)
    ws.send(frame(OP_TEXT, text.encode()))
    assert ws.recv_message() == (0x81, text.encode())
    ws.close()


def test_6_character_split_across_fragments(server):
    port, _ = server
    ws = RawWs(port)
    data = "κόσμε".encode()
    parts = [
        frame(OP_TEXT if i == 0 else OP_CONT, data[i : i + 1], fin=i == len(data) - 1)
        for i in range(len(data))
    ]
    ws.send(b"".join(parts))
    assert ws.recv_message() == (0x81, data)
    ws.close()


@pytest.mark.parametrize("bad", BAD_UTF8)
def test_6_invalid_utf8_fails_1007(server, bad):
    fails_with(server[0], frame(OP_TEXT, b"ok " + bad), 1007)


def test_6_invalid_utf8_fails_fast_inside_a_fragmented_message(server):
    # The message never ends; the bad byte alone must fail it (6.4.x).
    fails_with(server[0], frame(OP_TEXT, b"good \xed\xa0\x80", fin=False), 1007)


def test_6_invalid_utf8_in_a_later_fragment(server):
    fails_with(server[0], frame(OP_TEXT, b"abc", fin=False) + frame(OP_CONT, b"\xff"), 1007)


def test_6_character_cut_at_the_end_fails_1007(server):
    fails_with(server[0], frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"\xe2\x82"), 1007)


def test_6_binary_is_not_checked(server):
    port, _ = server
    ws = RawWs(port)
    ws.send(frame(OP_BINARY, b"\xff\xfe\xed\xa0\x80"))
    assert ws.recv_message() == (0x82, b"\xff\xfe\xed\xa0\x80")
    ws.close()


# ---- 7: close handling -----------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        1000,
        1001,
        1002,
        1003,
        1007,
        1008,
        1009,
        1010,
        1011,
        1012,
        1013,
        1014,
        3000,
        3999,
        4000,
        4999,
    ],
)
def test_7_valid_close_echoed_then_tcp_closed(server, code):
    port, _ = server
    ws = RawWs(port)
    ws.send(frame(OP_CLOSE, close_payload(code, b"bye")))
    ws.expect_close(code)
    ws.close()


def test_7_empty_close_answered_empty(server):
    port, _ = server
    ws = RawWs(port)
    ws.send(frame(OP_CLOSE))
    ws.expect_close(None)
    ws.close()


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_7_invalid_close_code_fails_1002(server, code):
    fails_with(server[0], frame(OP_CLOSE, close_payload(code)), 1002)


def test_7_one_byte_close_payload_fails_1002(server):
    fails_with(server[0], frame(OP_CLOSE, b"\x03"), 1002)


def test_7_close_reason_not_utf8_fails_1007(server):
    fails_with(server[0], frame(OP_CLOSE, close_payload(1000, b"\xff\xfe")), 1007)


def test_7_nothing_after_close_is_delivered(server):
    port, _ = server
    ws = RawWs(port)
    ws.send(
        frame(OP_CLOSE, close_payload(1000)) + frame(OP_TEXT, b"late") + frame(OP_PING, b"late")
    )
    ws.expect_close(1000)  # no echo of "late", no pong
    ws.close()


def test_7_close_after_a_message_in_the_same_write(server):
    port, _ = server
    ws = RawWs(port)
    ws.send(frame(OP_TEXT, b"last words") + frame(OP_CLOSE, close_payload(1001)))
    assert ws.recv_frame() == (0x81, b"last words")
    ws.expect_close(1001)
    ws.close()


def test_7_close_between_fragments_is_honoured(server):
    port, _ = server
    ws = RawWs(port)
    ws.send(frame(OP_TEXT, b"half", fin=False) + frame(OP_CLOSE, close_payload(1000)))
    ws.expect_close(1000)
    ws.close()


# ---- 9: limits ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_server():
    with echo_server(ws_max_message=64 << 10) as (port, rec):
        yield port, rec


def test_9_message_at_the_limit_passes(small_server):
    port, _ = small_server
    ws = RawWs(port)
    ws.send(frame(OP_BINARY, b"x" * (64 << 10)))
    assert ws.recv_message() == (0x82, b"x" * (64 << 10))
    ws.close()


def test_9_frame_header_over_the_limit_fails_1009_before_any_payload(small_server):
    # Only the header is sent: the announced length alone fails it.
    data = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"\x00" * 4
    fails_with(small_server[0], data, 1009)


def test_9_fragments_adding_up_over_the_limit_fail_1009(small_server):
    data = frame(OP_BINARY, b"a" * (40 << 10), fin=False) + frame(OP_CONT, b"b" * (40 << 10))
    fails_with(small_server[0], data, 1009)


def test_9_default_limit_announced_1gib_allocates_nothing(server):
    data = bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 30) + b"\x00" * 4
    fails_with(server[0], data, 1009)


def test_9_large_message_in_many_writes(server):
    port, _ = server
    ws = RawWs(port)
    body = bytes(i * 7 & 0xFF for i in range(5 << 20))
    data = frame(OP_BINARY, body)
    for i in range(0, len(data), 100_000):
        ws.send(data[i : i + 100_000])
    got = ws.recv_message(timeout=30)
    assert got is not None and got[0] == 0x82 and got[1] == body
    ws.close()


def test_9_client_dropping_mid_frame(server):
    port, rec = server
    ws = RawWs(port)
    ws.send(frame(OP_BINARY, b"z" * 100_000)[:50_000])
    ws.close()  # gone in the middle of the payload
    still_serves(port)


# ---- 12-13: compression --------------------------------------------------------------


def deflate_message(data: bytes, comp=None) -> bytes:
    comp = comp or zlib.compressobj(wbits=-15)
    out = comp.compress(data) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


PMD = "Sec-WebSocket-Extensions: permessage-deflate\r\n"


@pytest.mark.parametrize("n", [0, 16, 1000, 65536, 1 << 20])
def test_12_compressed_messages_round_trip(server, n):
    port, _ = server
    ws = RawWs(port, headers=PMD)
    assert b"permessage-deflate" in ws.head
    body = b"compress me! " * (n // 13) + b"x" * (n % 13)
    ws.send(frame(OP_TEXT, deflate_message(body), rsv=0x40))
    assert ws.recv_message() == (0x81, body)
    ws.close()


def test_12_context_takeover_across_messages(server):
    port, _ = server
    ws = RawWs(port, headers=PMD)
    comp = zlib.compressobj(wbits=-15)
    for i in range(20):
        body = b"the same words again and again %d" % i
        ws.send(frame(OP_TEXT, deflate_message(body, comp), rsv=0x40))
        assert ws.recv_message() == (0x81, body)
    ws.close()


def test_12_compressed_message_in_fragments(server):
    port, _ = server
    ws = RawWs(port, headers=PMD)
    body = b"fragmented and compressed " * 100
    z = deflate_message(body)
    ws.send(
        frame(OP_BINARY, z[:10], rsv=0x40, fin=False)
        + frame(OP_CONT, z[10:20], fin=False)
        + frame(OP_CONT, z[20:])
    )
    assert ws.recv_message() == (0x82, body)
    ws.close()


def test_12_uncompressed_message_on_a_deflate_connection(server):
    port, _ = server
    ws = RawWs(port, headers=PMD)
    ws.send(frame(OP_TEXT, b"plain"))
    assert ws.recv_message() == (0x81, b"plain")
    ws.close()


def test_12_rsv1_on_a_continuation_fails_1002(server):
    port, _ = server
    ws = RawWs(port, headers=PMD)
    ws.send(frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"b", rsv=0x40))
    ws.expect_close(1002)
    ws.close()


def test_12_server_compresses_large_messages(server):
    port, _ = server
    ws = RawWs(port, headers=PMD)
    body = b"a" * 10_000
    ws.send(frame(OP_BINARY, deflate_message(body), rsv=0x40))
    f = ws.recv_frame()
    assert f is not None and f[0] == 0xC2 and len(f[1]) < 200  # RSV1 set, compressed
    ws.close()


def test_13_no_context_takeover_and_window_bits_are_honoured(server):
    port, _ = server
    ws = RawWs(
        port,
        headers="Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
        "client_no_context_takeover; server_max_window_bits=10; client_max_window_bits\r\n",
    )
    ext = [
        line
        for line in ws.head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-extensions")
    ]
    assert len(ext) == 1
    assert b"server_no_context_takeover" in ext[0] and b"server_max_window_bits=10" in ext[0]
    for _ in range(3):  # each message inflates on its own: the server reset its window
        body = b"repeated repeated repeated " * 50
        ws.send(frame(OP_TEXT, deflate_message(body), rsv=0x40))
        f = ws.recv_frame()
        assert f is not None and f[0] == 0xC1
        assert zlib.decompressobj(-10).decompress(f[1] + b"\x00\x00\xff\xff") == body
    ws.close()


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover=1",
        "x-webkit-deflate-frame",
    ],
)
def test_13_bad_offers_are_declined(server, offer):
    port, _ = server
    ws = RawWs(port, headers=f"Sec-WebSocket-Extensions: {offer}\r\n")
    assert b"Sec-WebSocket-Extensions" not in ws.head
    ws.send(frame(OP_TEXT, b"x", rsv=0x40))  # RSV1 now means nothing: 1002
    ws.expect_close(1002)
    ws.close()


def test_13_second_offer_taken_when_first_is_bad(server):
    port, _ = server
    ws = RawWs(
        port,
        headers="Sec-WebSocket-Extensions: permessage-deflate; bogus, "
        "permessage-deflate; client_max_window_bits\r\n",
    )
    assert b"permessage-deflate" in ws.head
    ws.close()


def test_13_decompression_bomb_fails_1009(small_server):
    port, _ = small_server
    ws = RawWs(port, headers=PMD)
    bomb = deflate_message(b"\x00" * (8 << 20))  # ~8 KiB that inflate to 8 MiB
    assert len(bomb) < 16 << 10
    ws.send(frame(OP_BINARY, bomb, rsv=0x40))
    ws.expect_close(1009)
    ws.close()
    still_serves(port)


def test_13_corrupt_compressed_data_fails(server):
    port, _ = server
    ws = RawWs(port, headers=PMD)
    ws.send(frame(OP_BINARY, b"\xff\xff\xff\xff garbage", rsv=0x40))
    ws.expect_close(1007)
    ws.close()


def test_13_deflate_off_per_listener():
    with echo_server(ws_deflate=False) as (port, _):
        ws = RawWs(port, headers=PMD)
        assert b"Sec-WebSocket-Extensions" not in ws.head
        ws.send(frame(OP_TEXT, b"plain"))
        assert ws.recv_message() == (0x81, b"plain")
        ws.close()


# ---- handshake (RFC 6455 4.2.1, 4.4) ---------------------------------------------------


def handshake(port: int, request: bytes) -> bytes:
    s = raw_connect(port)
    s.sendall(request)
    data, eof = recv_until_eof(s)
    s.close()
    assert eof, "the refused connection must close"
    return data


REQ = (
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
)


def test_handshake_missing_key_gets_426(server):
    req = (
        REQ.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")
        + "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    data = handshake(server[0], req.encode())
    assert data.startswith(b"HTTP/1.1 426 ")
    assert b"WS upgrade expected" in data
    still_serves(server[0])


def test_handshake_plain_get_gets_426(server):
    data = handshake(server[0], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 426 ")


@pytest.mark.parametrize("version", ["8", "14", "", None])
def test_handshake_other_version_gets_426_naming_13(server, version):
    req = REQ + (f"Sec-WebSocket-Version: {version}\r\n" if version is not None else "") + "\r\n"
    data = handshake(server[0], req.encode())
    assert data.startswith(b"HTTP/1.1 426 ")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in data
    still_serves(server[0])


@pytest.mark.parametrize(
    "change",
    [
        ("GET /ws", "POST /ws"),
        ("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
        ("Connection: Upgrade", "Connection: keep-alive"),
    ],
)
def test_handshake_malformed_gets_400(server, change):
    req = REQ.replace(*change) + "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"
    data = handshake(server[0], req.encode())
    assert data.startswith(b"HTTP/1.1 400 "), data


def test_handshake_sample_accept_of_the_rfc(server):
    # RFC 6455 1.3: this key gives s3pPLMBiTxaQ9kYGzzhZRbK+xOo=.
    s = raw_connect(server[0])
    s.sendall((REQ + "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = s.recv(4096)
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in data
    assert b"\r\nUpgrade: websocket\r\n" in data and b"\r\nConnection: Upgrade\r\n" in data
    s.close()
