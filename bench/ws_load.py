#!/usr/bin/env python3
"""bench/ws_load.py: the WebSocket load generator of bench/ws_bench.py (stdlib only).

    python ws_load.py PORT CONNS WARMUP SECONDS WINDOW

Opens CONNS WebSocket connections (a plain handshake, no extension), checks
one echo on each, then keeps WINDOW masked 1 KiB text messages in flight per
connection: each echo that comes back (counted by its exact size, 1028
bytes) sends the next.  After WARMUP seconds it prints "go" and then, after
SECONDS more, one JSON line {"messages": N, "seconds": S, "errors": E}.
Runs in its own process, so its CPU is not the server's.
"""

import base64
import json
import os
import selectors
import socket
import sys
import time

PAYLOAD = b"0123456789abcdef" * 64  # 1 KiB of text
KEY = os.urandom(4)
FRAME = bytes([0x81, 0x80 | 126, 4, 0]) + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(PAYLOAD))
ECHO = bytes([0x81, 126, 4, 0]) + PAYLOAD  # what the server sends back: unmasked
ECHO_LEN = len(ECHO)


def handshake(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("handshake: connection closed")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"handshake refused: {head[:80]!r}")
    s.sendall(FRAME)  # one checked echo
    while len(rest) < ECHO_LEN:
        rest += s.recv(65536)
    if rest[:ECHO_LEN] != ECHO:
        raise SystemExit(f"bad echo: {rest[:40]!r}")
    s.setblocking(False)
    return s


def main() -> None:
    port, conns, warmup, seconds, window = (
        int(sys.argv[1]),
        int(sys.argv[2]),
        float(sys.argv[3]),
        float(sys.argv[4]),
        int(sys.argv[5]),
    )
    socks = [handshake(port) for _ in range(conns)]
    sel = selectors.DefaultSelector()
    pending = {}  # fd -> bytes of echoes received, not yet a whole message
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        pending[s.fileno()] = 0
        s.sendall(FRAME * window)
    count = errors = 0
    start = time.monotonic()
    go = start + warmup
    end = go + seconds
    measuring = False
    base = 0
    while True:
        now = time.monotonic()
        if not measuring and now >= go:
            measuring, base = True, count
            print("go", flush=True)
            go_at = now
        if now >= end:
            break
        for key, _ in sel.select(0.5):
            s = key.fileobj
            try:
                data = s.recv(1 << 18)
            except BlockingIOError:
                continue
            if not data:
                errors += 1
                sel.unregister(s)
                continue
            got = pending[s.fileno()] + len(data)
            n, pending[s.fileno()] = divmod(got, ECHO_LEN)
            if n:
                count += n
                try:
                    s.sendall(FRAME * n)
                except OSError:
                    errors += 1
    elapsed = time.monotonic() - go_at
    print(json.dumps({"messages": count - base, "seconds": elapsed, "errors": errors}), flush=True)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
