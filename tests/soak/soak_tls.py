"""Bounded soak of TLS handshakes on a cymongoose HTTPS server (issue 9).

The server (``soak_tls.py serve``) is a cymongoose Manager in its own process with
an https:// listener whose options every accepted connection inherits (an EC
P-256 certificate made with the ``openssl`` command).  The driver runs, at full
scale, 10,000 handshakes from several client processes (Python's ssl, verifying
the certificate and host name), each followed by one request and a close:

* most are full handshakes; every fourth resumes a session (tickets);
* every 50th client leaves in the middle of its handshake, and every 50th sends
  plaintext HTTP to the TLS port (both must only close that connection).

A warm-up of 1/5 of the count runs first; then the server's VmRSS and open
descriptors are measured at rest (every connection closed, gc.collect() and
malloc_trim(0) done), the main phase runs, and they are measured again.  The
soak fails if RSS grew by 5 % or more, if a descriptor was left over, if any
answer was wrong, or if anything ran past its deadline.

    soak_tls.py [--quick] [--scale F] [--clients N] [--max-seconds S]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
FULL = 10_000
WARMUP_FRACTION = 0.2
MAX_RSS_GROWTH = 0.05


def make_cert(d: str) -> tuple[str, str, str]:
    """(ca, cert, key) paths: an EC CA and a localhost leaf it signed."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-subj", "/CN=Soak CA", "-days", "2", "-out", "ca.pem")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
        "leaf.key", "-subj", "/CN=localhost", "-out", "leaf.csr")
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "leaf.ext", "-out", "leaf.pem")
    return tuple(os.path.join(d, n) for n in ("ca.pem", "leaf.pem", "leaf.key"))  # type: ignore


# ==========================================================================
# The server process


def serve_main(cert: str, key: str, max_seconds: float) -> int:
    import ctypes
    import gc
    import json

    from cymongoose import MG_EV_ERROR, MG_EV_HTTP_MSG, MG_EV_TLS_HS, Manager, TlsOpts

    stats = {"requests": 0, "handshakes": 0, "errors": 0}
    state = {"quit": False}

    def handler(conn, ev, data) -> None:
        if ev == MG_EV_TLS_HS:
            stats["handshakes"] += 1
        elif ev == MG_EV_ERROR:
            stats["errors"] += 1
        elif ev == MG_EV_HTTP_MSG:
            stats["requests"] += 1
            if data.uri == "/stats":
                gc.collect()
                try:
                    ctypes.CDLL(None).malloc_trim(0)
                except (OSError, AttributeError):
                    pass
                conn.reply(200, json.dumps(dict(stats, live=len(mgr.connections) - 1)))
            elif data.uri == "/quit":
                state["quit"] = True
                conn.reply(200, "bye")
            else:
                conn.reply(200, data.uri)

    mgr = Manager(handler)
    lsn = mgr.listen(f"https://{HOST}:0")
    with open(cert, "rb") as c, open(key, "rb") as k:
        lsn.tls_init(TlsOpts(cert=c.read(), key=k.read()))
    print(lsn.local_addr[1], flush=True)
    deadline = time.monotonic() + max_seconds
    while not state["quit"] and time.monotonic() < deadline:
        mgr.poll(100)
    for _ in range(20):
        mgr.poll(10)
    mgr.close()
    return 0 if state["quit"] else 3


# ==========================================================================
# The driver


def get(ctx: ssl.SSLContext, port: int, path: str, session=None) -> tuple[bytes, object, bool]:
    with socket.create_connection((HOST, port), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        for _ in range(1000):
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks), s.session, s.session_reused


def client_task(args: tuple[int, str, int, int, float]) -> tuple[int, int, str]:
    """`count` handshakes; returns (ok, resumed, first error)."""
    port, ca, first, count, deadline = args
    ctx = ssl.create_default_context(cafile=ca)
    ok = resumed = 0
    session = None
    for i in range(first, first + count):
        if time.monotonic() > deadline:
            return ok, resumed, "deadline"
        try:
            if i % 50 == 7:  # leaves mid-handshake
                with socket.create_connection((HOST, port), timeout=30) as s:
                    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
                ok += 1
                continue
            if i % 50 == 13:  # plaintext to the TLS port: closed, never answered
                with socket.create_connection((HOST, port), timeout=30) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    try:
                        answer = s.recv(4096)
                    except ConnectionResetError:  # closed with our bytes unread: RST
                        answer = b""
                    if b"200 OK" in answer:
                        return ok, resumed, "plaintext was answered"
                ok += 1
                continue
            body, sess, reused = get(ctx, port, f"/r/{i}", session if i % 4 == 0 else None)
            if not body.endswith(f"/r/{i}".encode()):
                return ok, resumed, f"bad answer {body[-60:]!r}"
            session = sess
            resumed += reused
            ok += 1
        except (OSError, ssl.SSLError) as exc:
            return ok, resumed, f"request {i}: {exc!r}"
    return ok, resumed, ""


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def phase(pool, port: int, ca: str, n: int, clients: int, deadline: float,
          base: int) -> tuple[int, int]:
    per = max(1, n // clients)
    tasks = [(port, ca, base + k * per, per, deadline) for k in range(clients)]
    ok = resumed = 0
    for got, res, err in pool.imap_unordered(client_task, tasks):
        if err:
            raise SystemExit(f"soak-tls: FAIL: {err}")
        ok += got
        resumed += res
    return ok, resumed


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", nargs="?", default="drive", choices=["drive", "serve"])
    ap.add_argument("--quick", action="store_true", help="1/10 of the full count (CI)")
    ap.add_argument("--scale", type=float, default=None, help="fraction of the full count")
    ap.add_argument("--clients", type=int, default=4, help="client processes")
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--cert", default="")
    ap.add_argument("--key", default="")
    a = ap.parse_args(argv)
    if a.mode == "serve":
        return serve_main(a.cert, a.key, a.max_seconds)
    scale = a.scale if a.scale is not None else (0.1 if a.quick else 1.0)
    total = max(a.clients, int(FULL * scale))
    deadline = time.monotonic() + a.max_seconds
    with tempfile.TemporaryDirectory() as d:
        ca, cert, key = make_cert(d)
        env = dict(os.environ, MALLOC_ARENA_MAX="1")
        srv = subprocess.Popen([sys.executable, __file__, "serve", "--cert", cert, "--key", key,
                                "--max-seconds", str(a.max_seconds)], stdout=subprocess.PIPE,
                               env=env)
        assert srv.stdout is not None
        port = int(srv.stdout.readline())
        ctx = ssl.create_default_context(cafile=ca)

        def stats() -> dict:
            import json
            body, _, _ = get(ctx, port, "/stats")
            return json.loads(body.split(b"\r\n\r\n", 1)[1])

        try:
            with mp.get_context("spawn").Pool(a.clients) as pool:
                t0 = time.monotonic()
                phase(pool, port, ca, int(total * WARMUP_FRACTION), a.clients, deadline, 0)
                stats()
                rss0, fd0 = rss_kib(srv.pid), fds(srv.pid)
                t1 = time.monotonic()
                ok, resumed = phase(pool, port, ca, total, a.clients, deadline, 1_000_000)
                t2 = time.monotonic()
                s = stats()
                rss1, fd1 = rss_kib(srv.pid), fds(srv.pid)
            get(ctx, port, "/quit")
            rc = srv.wait(30)
        finally:
            if srv.poll() is None:
                srv.kill()
    growth = (rss1 - rss0) / rss0
    print(f"soak-tls: warm-up {t1 - t0:.1f}s; {ok} connections ({resumed} resumed) in "
          f"{t2 - t1:.1f}s = {ok / (t2 - t1):.0f}/s; server handshakes {s['handshakes']}, "
          f"errors {s['errors']}, live {s['live']}")
    print(f"soak-tls: RSS {rss0} -> {rss1} KiB ({growth * 100:+.2f} %), fds {fd0} -> {fd1}, "
          f"server exit {rc}")
    failed = []
    if growth >= MAX_RSS_GROWTH:
        failed.append("RSS grew")
    if fd1 > fd0:
        failed.append("descriptors left over")
    if rc != 0:
        failed.append("server exit")
    if s["live"] != 1:  # the /stats connection itself
        failed.append("connections left")
    if resumed == 0:
        failed.append("no session was resumed")
    if failed:
        print("soak-tls: FAIL: " + ", ".join(failed))
        return 1
    print("soak-tls: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
