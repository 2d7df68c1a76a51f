"""curl against our server (issue 3 item 7): keep-alive reuse (``-v`` says
"Re-using existing connection" and ``%{num_connects}`` stays 0 after the first
transfer), several URLs and every kind of response on one connection, POST, a
chunked upload (``-H 'Transfer-Encoding: chunked'``), Expect: 100-continue, ranges,
HEAD with ``-I``, gzip with ``--compressed``, redirects, parallel transfers."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import subprocess

import pytest
from conftest import listen_free, serve

from cymongoose import MG_EV_HTTP_MSG

pytestmark = pytest.mark.timeout(90)

W = "\\n%{num_connects}|%{http_code}|%{size_download}\\n"


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    (root / "s" / "dir").mkdir(parents=True)
    (root / "s" / "small.txt").write_bytes(b"small file\n")
    (root / "s" / "big.bin").write_bytes(os.urandom(3 << 20))
    (root / "s" / "app.js").write_bytes(b"let x = 1;\n" * 100)
    (root / "s" / "app.js.gz").write_bytes(gzip.compress(b"let x = 1;\n" * 100))
    (root / "s" / "dir" / "index.html").write_bytes(b"<p>index</p>\n")
    return root


def handler_for(root):
    def handler(conn, ev, data):
        if ev != MG_EV_HTTP_MSG:
            return
        uri = data.uri
        if uri.startswith("/s/"):
            conn.serve_dir(data, str(root))
        elif uri == "/echo":
            body = data.body_bytes
            conn.reply(200, body, {
                "Content-Type": "application/octet-stream",
                "X-Method": data.method,
                "X-Sha256": hashlib.sha256(body).hexdigest(),
                "X-TE": data.header("Transfer-Encoding", "-"),
            })
        elif uri == "/hello":
            conn.reply(200, "hello\n")
        elif uri == "/json":
            conn.reply_json({"ok": True, "q": data.query_var("q")})
        elif uri == "/raw":  # raw send()s finished with http_end() (Decision 5)
            conn.send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n")
            conn.send("raw\n")
            conn.http_end()
        elif uri == "/chunked":
            conn.send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n")
            for piece in ("one,", "two,", "three\n"):
                conn.http_chunk(piece)
            conn.http_chunk(b"")
        elif uri == "/sse":
            conn.send("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.http_sse("greeting", "hello")
            conn.http_sse("multi", "line1\nline2")
            conn.http_chunk(b"")
        else:
            conn.reply(404, "nope\n")

    return handler


@pytest.fixture
def server(make_manager, site):
    mgr = make_manager()
    _, port = listen_free(mgr, handler=handler_for(site))
    with serve(mgr):
        yield f"http://127.0.0.1:{port}"


def run_curl(curl, *args, timeout=60, check=True):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.run([curl, "--noproxy", "*", "--max-time", "20", "-sS", *args],
                          capture_output=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc


def stats(stdout: bytes) -> list[tuple[int, int, int]]:
    """The -w W lines at the end of each transfer: (num_connects, http_code, size)."""
    out = []
    for line in stdout.splitlines():
        parts = line.split(b"|")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            out.append(tuple(int(p) for p in parts))
    return out


def test_keep_alive_reuse_several_urls_one_connection(curl, server, site):
    urls = ["/hello", "/s/small.txt", "/raw", "/chunked", "/sse", "/json?q=x", "/echo",
            "/s/dir/", "/missing", "/hello"]
    proc = run_curl(curl, "-v", "-w", W, *[server + u for u in urls])
    st = stats(proc.stdout)
    assert [s[0] for s in st] == [1] + [0] * (len(urls) - 1)  # one connection for all
    assert [s[1] for s in st] == [200] * 8 + [404, 200]
    err = proc.stderr.decode(errors="replace")
    assert err.count("Re-using existing connection") == len(urls) - 1
    out = proc.stdout
    for piece in (b"hello\n", b"small file\n", b"raw\n", b"one,two,three\n",
                  b"event: greeting\ndata: hello\n\n",
                  b"event: multi\ndata: line1\ndata: line2\n\n",
                  b'{"ok": true, "q": "x"}', b"<p>index</p>\n", b"nope\n"):
        assert piece in out


def test_post_binary_roundtrip(curl, server, tmp_path):
    data = os.urandom(200_000) + b"\x00\r\n\x00"
    src = tmp_path / "body.bin"
    src.write_bytes(data)
    out = tmp_path / "out.bin"
    proc = run_curl(curl, "-D", "-", "-o", str(out), "--data-binary", f"@{src}", server + "/echo")
    head = proc.stdout.decode()
    assert "HTTP/1.1 200" in head
    assert f"X-Sha256: {hashlib.sha256(data).hexdigest()}" in head
    assert "X-Method: POST" in head and "X-TE: -" in head
    assert out.read_bytes() == data


def test_chunked_upload(curl, server, tmp_path):
    data = os.urandom(300_000)
    src = tmp_path / "body.bin"
    src.write_bytes(data)
    proc = run_curl(curl, "-v", "-D", "-", "-o", os.devnull, "-H", "Transfer-Encoding: chunked",
                    "--data-binary", f"@{src}", server + "/echo")
    err = proc.stderr.decode(errors="replace")
    assert "> Transfer-Encoding: chunked" in err  # curl really sent it chunked
    head = proc.stdout.decode()
    assert "X-TE: chunked" in head
    assert f"X-Sha256: {hashlib.sha256(data).hexdigest()}" in head  # de-chunked exactly


def test_chunked_upload_then_reuse(curl, server, tmp_path):
    src = tmp_path / "b.txt"
    src.write_bytes(b"x" * 5000)
    proc = run_curl(curl, "-v", "-w", W, "-H", "Transfer-Encoding: chunked",
                    "--data-binary", f"@{src}", server + "/echo", "--next", "-w", W,
                    server + "/hello")
    assert [s[:2] for s in stats(proc.stdout)] == [(1, 200), (0, 200)]


def test_expect_100_continue(curl, server, tmp_path):
    data = os.urandom(50_000)
    src = tmp_path / "body.bin"
    src.write_bytes(data)
    proc = run_curl(curl, "-v", "-D", "-", "-o", os.devnull, "-H", "Expect: 100-continue",
                    "--data-binary", f"@{src}", server + "/echo")
    assert "HTTP/1.1 100 Continue" in proc.stdout.decode()
    assert f"X-Sha256: {hashlib.sha256(data).hexdigest()}" in proc.stdout.decode()


def test_ranges(curl, server, site, tmp_path):
    data = (site / "s" / "big.bin").read_bytes()
    n = len(data)
    out = tmp_path / "part.bin"
    for rng, a, b in (("0-99", 0, 99), ("100-", 100, n - 1), ("-50", n - 50, n - 1),
                      ("1000-1999", 1000, 1999)):
        proc = run_curl(curl, "-r", rng, "-D", "/dev/stderr", "-o", str(out), "-w", W,
                        server + "/s/big.bin")
        assert stats(proc.stdout)[0][1] == 206, rng
        assert out.read_bytes() == data[a:b + 1], rng
        assert f"Content-Range: bytes {a}-{b}/{n}" in proc.stderr.decode(), rng
    proc = run_curl(curl, "-r", f"{n}-", "-o", os.devnull, "-w", W, server + "/s/big.bin")
    assert stats(proc.stdout)[0][1] == 416


def test_head_with_dash_i(curl, server, site):
    for path, length in (("/hello", 6), ("/s/small.txt", 11), ("/s/big.bin", 3 << 20)):
        proc = run_curl(curl, "-I", server + path)
        head = proc.stdout.decode()
        assert head.startswith("HTTP/1.1 200 OK\r\n"), path
        assert re.search(rf"Content-Length: +{length}\r\n", head), path
    # A chunked response to HEAD: the head only, and the connection goes on.
    proc = run_curl(curl, "-v", "-I", "-w", W, server + "/sse", "--next", "-w", W,
                    server + "/sse")
    st = stats(proc.stdout)
    assert [s[:2] for s in st] == [(1, 200), (0, 200)]
    assert proc.stdout.count(b"event: greeting") == 1  # only the GET has a body


def test_head_then_get_on_one_connection(curl, server):
    proc = run_curl(curl, "-v", "-w", W, "-I", server + "/s/big.bin", "--next", "-w", W,
                    server + "/s/small.txt", "--next", "-I", "-w", W, server + "/hello",
                    "--next", "-w", W, server + "/hello")
    st = stats(proc.stdout)
    assert [s[0] for s in st] == [1, 0, 0, 0]
    assert [s[2] for s in st] == [0, 11, 0, 6]
    assert proc.stderr.decode(errors="replace").count("Re-using existing connection") == 3


def test_compressed_and_redirect(curl, server, site):
    proc = run_curl(curl, "--compressed", "-D", "/dev/stderr", server + "/s/app.js")
    assert proc.stdout == b"let x = 1;\n" * 100
    assert "Content-Encoding: gzip" in proc.stderr.decode()
    proc = run_curl(curl, "-L", "-w", "\n%{num_redirects}", server + "/s/dir")
    assert proc.stdout == b"<p>index</p>\n\n1"


def test_big_static_download_and_404(curl, server, site, tmp_path):
    out = tmp_path / "dl.bin"
    proc = run_curl(curl, "-o", str(out), "-w", W, server + "/s/big.bin")
    assert stats(proc.stdout)[0][1:] == (200, 3 << 20)
    assert out.read_bytes() == (site / "s" / "big.bin").read_bytes()
    proc = run_curl(curl, "-o", os.devnull, "-w", W, server + "/s/none.txt")
    assert stats(proc.stdout)[0][1] == 404


def test_parallel_transfers(curl, server, site):
    urls = [server + p for p in ("/hello", "/s/big.bin", "/chunked", "/sse", "/raw") * 4]
    args = [a for u in urls for a in ("-o", os.devnull, u)]
    proc = run_curl(curl, "-Z", "--parallel-max", "10", "-w", W, *args)
    st = stats(proc.stdout)
    assert len(st) == len(urls) and all(s[1] == 200 for s in st)
