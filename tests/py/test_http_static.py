"""Static files through Connection.serve_dir / serve_file (SPEC 2.6, issue 3 item 4):
MIME types and overrides, ETag / 304, ranges 206 / 416, precompressed .gz, HEAD,
directories (301, index.html, escaped listing), page404, extra_headers, path
traversal, argument checks, and a 200 MB file served in bounded memory.

Peers: urllib, http.client and raw sockets (for byte-exact targets such as
``/%2e%2e/``, which the client libraries would normalise)."""

from __future__ import annotations

import gzip
import http.client
import os
import socket
import threading
import time

import pytest
from conftest import HttpReader, http_get, listen_free, raw_connect, serve
from http_peers import spawn_server

from cymongoose import MG_EV_HTTP_MSG, HttpMessage

pytestmark = pytest.mark.timeout(90)

SECRET = b"TOP-SECRET-MARKER-outside-the-root"
APP_JS = b"console.log('plain');\n" * 50
BIG_SIZE = 300 * 1024  # above the core's 64 KiB inline limit: streamed from disk


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """root/ to serve, with a secret file and directory beside it (outside the root)."""
    base = tmp_path_factory.mktemp("site")
    (base / "secret.txt").write_bytes(SECRET)
    (base / "outdir").mkdir()
    (base / "outdir" / "inner.txt").write_bytes(SECRET)
    root = base / "www"
    root.mkdir()
    files = {
        "index.html": b"<h1>root index</h1>\n",
        "hello.txt": b"hello static\n",
        "style.css": b"body{}\n",
        "app.js": APP_JS,
        "mod.mjs": b"export {};\n",
        "data.json": b'{"a": 1}\n',
        "page.htm": b"<p>htm</p>",
        "page.shtml": b"<p>shtml</p>",
        "pic.svg": b"<svg/>",
        "icon.ico": b"\x00\x00\x01\x00",
        "img.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        "anim.gif": b"GIF89a",
        "photo.jpg": b"\xff\xd8\xff",
        "photo.jpeg": b"\xff\xd8\xff",
        "img.webp": b"RIFF",
        "font.woff": b"wOFF",
        "font.ttf": b"\x00\x01",
        "table.csv": b"a,b\n",
        "doc.pdf": b"%PDF-1.4",
        "archive.zip": b"PK\x03\x04",
        "archive.tgz": b"\x1f\x8b",
        "prog.exe": b"MZ",
        "word.doc": b"\xd0\xcf",
        "clip.avi": b"RIFF",
        "clip.mov": b"\x00\x00",
        "song.mp3": b"ID3",
        "clip.mp4": b"\x00\x00\x00\x18ftyp",
        "clip.mpeg": b"\x00\x00\x01\xba",
        "sound.wav": b"RIFF",
        "clip.3gp": b"\x00\x00",
        "UPPER.TXT": b"upper case extension\n",
        "file.xyz": b"unknown extension\n",
        "noext": b"no extension\n",
        "binary.dat": bytes(range(256)) * 64,
        "404.html": b"<h1>custom not found</h1>\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "app.js.gz").write_bytes(gzip.compress(APP_JS))
    (root / "big.bin").write_bytes(os.urandom(BIG_SIZE))
    (root / "sub").mkdir()
    (root / "sub" / "index.html").write_bytes(b"<h1>sub index</h1>\n")
    (root / "sub" / "deeper").mkdir()
    (root / "sub" / "deeper" / "leaf.txt").write_bytes(b"leaf\n")
    listing = root / "listing"
    listing.mkdir()
    for name in ["a b.txt", "<b>&\"'.txt", "x%y.txt", "plain.txt"]:
        (listing / name).write_bytes(b"x")
    (listing / "inner").mkdir()
    os.symlink(root / "hello.txt", root / "link_in.txt")
    os.symlink(base / "secret.txt", root / "link_out.txt")
    os.symlink(base / "outdir", root / "dirlink_out")
    return root


def start(make_manager, site, **opts):
    """An in-process server answering everything with serve_dir(site, **opts)."""
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.serve_dir(data, str(site), **opts)

    mgr = make_manager()
    _, port = listen_free(mgr, handler=handler)
    return mgr, port


def raw(port: int, target: bytes, extra: bytes = b""):
    """One GET with a byte-exact target; returns (status, headers dict, body)."""
    s = raw_connect(port)
    try:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
        resp = HttpReader(s).read_response()
    finally:
        s.close()
    assert resp is not None, f"no response for {target!r}"
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.decode().lower()] = v.strip().decode("latin-1")
    return status, headers, body


# --------------------------------------------------------------------------
# MIME types and bodies

MIME = [
    ("index.html", "text/html; charset=utf-8"),
    ("page.htm", "text/html; charset=utf-8"),
    ("page.shtml", "text/html; charset=utf-8"),
    ("hello.txt", "text/plain; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("mod.mjs", "text/javascript; charset=utf-8"),
    ("data.json", "application/json"),
    ("pic.svg", "image/svg+xml"),
    ("icon.ico", "image/x-icon"),
    ("img.png", "image/png"),
    ("anim.gif", "image/gif"),
    ("photo.jpg", "image/jpeg"),
    ("photo.jpeg", "image/jpeg"),
    ("img.webp", "image/webp"),
    ("font.woff", "font/woff"),
    ("font.ttf", "font/ttf"),
    ("table.csv", "text/csv"),
    ("doc.pdf", "application/pdf"),
    ("archive.zip", "application/zip"),
    ("archive.tgz", "application/gzip"),
    ("prog.exe", "application/octet-stream"),
    ("word.doc", "application/msword"),
    ("clip.avi", "video/x-msvideo"),
    ("clip.mov", "video/quicktime"),
    ("song.mp3", "audio/mpeg"),
    ("clip.mp4", "video/mp4"),
    ("clip.mpeg", "video/mpeg"),
    ("sound.wav", "audio/wav"),
    ("clip.3gp", "video/3gpp"),
    ("UPPER.TXT", "text/plain; charset=utf-8"),
    ("file.xyz", "text/plain; charset=utf-8"),
    ("noext", "text/plain; charset=utf-8"),
    ("binary.dat", "text/plain; charset=utf-8"),
]


def test_mime_types_and_exact_bodies(make_manager, site):
    mgr, port = start(make_manager, site)
    with serve(mgr):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for name, ctype in MIME:  # all on one keep-alive connection
                conn.request("GET", "/" + name)
                resp = conn.getresponse()
                body = resp.read()
                assert resp.status == 200, name
                assert resp.getheader("Content-Type") == ctype, name
                assert body == (site / name).read_bytes(), name
                assert int(resp.getheader("Content-Length")) == len(body)
                st = os.stat(site / name)
                assert resp.getheader("Etag") == f'"{int(st.st_mtime)}.{st.st_size}"'
                assert resp.getheader("Accept-Ranges") == "bytes"
        finally:
            conn.close()


def test_mime_types_override(make_manager, site):
    mgr, port = start(make_manager, site, mime_types="txt=text/x-custom, png=image/x-mine")
    mgr2, port2 = start(make_manager, site, mime_types="*=application/x-everything")
    with serve(mgr), serve(mgr2):
        assert http_get(f"http://127.0.0.1:{port}/hello.txt")[1]["Content-Type"] == "text/x-custom"
        assert http_get(f"http://127.0.0.1:{port}/img.png")[1]["Content-Type"] == "image/x-mine"
        # Not overridden: the built-in table still applies.
        assert http_get(f"http://127.0.0.1:{port}/data.json")[1]["Content-Type"] == \
            "application/json"
        for name in ("hello.txt", "data.json", "noext"):
            ctype = http_get(f"http://127.0.0.1:{port2}/{name}")[1]["Content-Type"]
            assert ctype == "application/x-everything"


def test_nested_paths_and_symlink_inside_root(make_manager, site):
    mgr, port = start(make_manager, site)
    with serve(mgr):
        assert http_get(f"http://127.0.0.1:{port}/sub/deeper/leaf.txt")[2] == b"leaf\n"
        assert http_get(f"http://127.0.0.1:{port}/link_in.txt")[2] == b"hello static\n"
        assert http_get(f"http://127.0.0.1:{port}/./sub/./deeper//leaf.txt")[2] == b"leaf\n"
        # Percent-encoded names are decoded.
        status, _, body = raw(port, b"/listing/a%20b.txt")
        assert (status, body) == (200, b"x")


# --------------------------------------------------------------------------
# ETag / 304, ranges, HEAD


def test_etag_if_none_match_304(make_manager, site):
    mgr, port = start(make_manager, site, extra_headers="X-Extra: yes\r\n")
    with serve(mgr):
        status, headers, _ = raw(port, b"/hello.txt")
        etag = headers["etag"]
        assert status == 200 and etag.startswith('"') and etag.endswith('"')
        for inm in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            status, h, body = raw(port, b"/hello.txt", f"If-None-Match: {inm}\r\n".encode())
            assert status == 304, inm
            assert body == b"" and "content-length" not in h
            assert h["etag"] == etag and h["x-extra"] == "yes"
        status, _, body = raw(port, b"/hello.txt", b'If-None-Match: "nope"\r\n')
        assert (status, body) == (200, b"hello static\n")


@pytest.mark.parametrize("name", ["hello.txt", "big.bin"])
def test_ranges_206_and_416(make_manager, site, name):
    data = (site / name).read_bytes()
    size = len(data)
    mgr, port = start(make_manager, site)
    cases = [
        ("bytes=0-4", 0, 4),
        ("bytes=3-", 3, size - 1),
        ("bytes=-5", size - 5, size - 1),
        ("bytes=2-2", 2, 2),
        (f"bytes=5-{size + 100}", 5, size - 1),  # the end is clipped to the size
    ]
    with serve(mgr):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for rng, a, b in cases:
                conn.request("GET", "/" + name, headers={"Range": rng})
                resp = conn.getresponse()
                body = resp.read()
                assert resp.status == 206, rng
                assert resp.getheader("Content-Range") == f"bytes {a}-{b}/{size}", rng
                assert body == data[a:b + 1], rng
            for rng in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
                conn.request("GET", "/" + name, headers={"Range": rng})
                resp = conn.getresponse()
                resp.read()
                assert resp.status == 416, rng
                assert resp.getheader("Content-Range") == f"bytes */{size}", rng
            # A malformed or multi-range header is ignored: the whole file.
            for rng in ("bytes=a-b", "items=0-1", "bytes=0-1,3-4"):
                conn.request("GET", "/" + name, headers={"Range": rng})
                resp = conn.getresponse()
                assert (resp.status, resp.read()) == (200, data), rng
        finally:
            conn.close()


def test_head_static_has_headers_only(make_manager, site):
    mgr, port = start(make_manager, site)
    with serve(mgr):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            for name in ("hello.txt", "big.bin", "sub/", "listing/"):
                conn.request("HEAD", "/" + name)
                resp = conn.getresponse()
                assert resp.status == 200 and resp.read() == b"", name
                if not name.endswith("/"):
                    assert int(resp.getheader("Content-Length")) == (site / name).stat().st_size
            # The connection is still in step: a GET after the HEADs.
            conn.request("GET", "/hello.txt")
            assert conn.getresponse().read() == b"hello static\n"
        finally:
            conn.close()


# --------------------------------------------------------------------------
# gzip, directories, page404, extra_headers


def test_precompressed_gzip(make_manager, site):
    mgr, port = start(make_manager, site)
    with serve(mgr):
        status, h, body = raw(port, b"/app.js", b"Accept-Encoding: br, gzip;q=0.8\r\n")
        assert status == 200
        assert h["content-encoding"] == "gzip" and "accept-encoding" in h["vary"].lower()
        assert h["content-type"] == "text/javascript; charset=utf-8"  # of app.js, not .gz
        assert gzip.decompress(body) == APP_JS
        status, h, body = raw(port, b"/app.js")
        assert status == 200 and "content-encoding" not in h and body == APP_JS
        status, h, body = raw(port, b"/app.js", b"Accept-Encoding: gzip;q=0\r\n")
        assert "content-encoding" not in h and body == APP_JS
        # urllib does not decode: it sees the stored .gz bytes.
        _, headers, body = http_get(f"http://127.0.0.1:{port}/app.js",
                                    headers={"Accept-Encoding": "gzip"})
        assert headers["Content-Encoding"] == "gzip" and gzip.decompress(body) == APP_JS


def test_directory_redirect_index_and_listing(make_manager, site):
    mgr, port = start(make_manager, site)
    with serve(mgr):
        status, h, _ = raw(port, b"/sub")
        assert status == 301 and h["location"] == "/sub/"
        status, h, _ = raw(port, b"/sub?x=1")
        assert status == 301 and h["location"] == "/sub/?x=1"
        assert raw(port, b"/sub/")[2] == b"<h1>sub index</h1>\n"
        assert raw(port, b"/")[2] == b"<h1>root index</h1>\n"
        # urllib follows the redirect by itself.
        status, _, body = http_get(f"http://127.0.0.1:{port}/sub")
        assert (status, body) == (200, b"<h1>sub index</h1>\n")
        status, h, body = raw(port, b"/listing/")
        assert status == 200 and h["content-type"] == "text/html; charset=utf-8"
        page = body.decode()
        assert "&lt;b&gt;&amp;&quot;&#39;.txt" in page  # names HTML-escaped
        assert "<b>&" not in page
        assert 'href="a%20b.txt"' in page and 'href="x%25y.txt"' in page
        assert 'href="inner/"' in page and 'href="plain.txt"' in page
        assert 'href="../"' in page


def test_not_found_and_page404(make_manager, site):
    mgr, port = start(make_manager, site)
    mgr2, port2 = start(make_manager, site, page404=str(site / "404.html"))
    with serve(mgr), serve(mgr2):
        status, _, body = raw(port, b"/missing.txt")
        assert (status, body) == (404, b"Not found\n")
        status, h, body = raw(port2, b"/missing.txt")
        assert (status, body) == (200, b"<h1>custom not found</h1>\n")
        assert h["content-type"] == "text/html; charset=utf-8"
        assert raw(port2, b"/hello.txt")[2] == b"hello static\n"


def test_extra_headers_on_every_kind_of_answer(make_manager, site):
    mgr, port = start(make_manager, site,
                      extra_headers="Cache-Control: max-age=60\r\nX-Served-By: cm\r\n")
    mgr2, port2 = start(make_manager, site, extra_headers="X-No-Crlf: 1")  # CRLF added
    with serve(mgr), serve(mgr2):
        for target in (b"/hello.txt", b"/big.bin", b"/missing", b"/sub", b"/listing/",
                       b"/sub/"):
            status, h, _ = raw(port, target)
            assert h.get("cache-control") == "max-age=60", (target, status)
            assert h.get("x-served-by") == "cm", target
        status, h, _ = raw(port, b"/hello.txt", b"Range: bytes=99-\r\n")
        assert status == 416 and h["x-served-by"] == "cm"
        status, h, body = raw(port2, b"/hello.txt")
        assert h["x-no-crlf"] == "1" and body == b"hello static\n"


def test_serve_file_ignores_the_uri(make_manager, site):
    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/missing":
                conn.serve_file(data, str(site / "nope.txt"))
            elif data.uri == "/dir":
                conn.serve_file(data, str(site / "sub"))  # not a regular file
            else:
                conn.serve_file(data, site / "data.json", extra_headers="X-F: 1\r\n",
                                mime_types="json=application/x-json")

    mgr = make_manager()
    _, port = listen_free(mgr, handler=handler)
    with serve(mgr):
        for target in (b"/anything", b"/../../etc/passwd", b"/data.json?x"):
            status, h, body = raw(port, target)
            assert (status, body) == (200, b'{"a": 1}\n'), target
            assert h["content-type"] == "application/x-json" and h["x-f"] == "1"
        assert raw(port, b"/missing")[0] == 404
        assert raw(port, b"/dir")[0] == 404


def test_pipelined_static_responses_stay_in_order(make_manager, site):
    big = (site / "big.bin").read_bytes()
    mgr, port = start(make_manager, site)
    with serve(mgr):
        s = raw_connect(port)
        try:
            req = b"".join(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % n
                           for n in (b"big.bin", b"hello.txt", b"big.bin", b"missing"))
            s.sendall(req)
            reader = HttpReader(s)
            bodies = [reader.read_response(10).partition(b"\r\n\r\n")[2] for _ in range(4)]
        finally:
            s.close()
        assert bodies == [big, b"hello static\n", big, b"Not found\n"]


# --------------------------------------------------------------------------
# Traversal: never a byte from outside the root

TRAVERSAL = [
    b"/../secret.txt",
    b"/../../../../../../etc/passwd",
    b"/sub/../../secret.txt",
    b"/%2e%2e/secret.txt",
    b"/%2E%2E/secret.txt",
    b"/%2e%2e%2fsecret.txt",
    b"/sub/%2e%2e/%2e%2e/secret.txt",
    b"/..%2fsecret.txt",
    b"/..%5csecret.txt",
    b"/..\\secret.txt",
    b"/%5c..%5csecret.txt",
    b"/sub\\..\\..\\secret.txt",
    b"/%252e%252e/secret.txt",  # double-encoded: a literal "%2e%2e" name, absent
    b"/.%2e/secret.txt",
    b"/%2e./secret.txt",
    b"/hello.txt%00.html",
    b"/%00../secret.txt",
    b"/~/secret.txt",
    b"/~root/.bashrc",
    b"//etc/passwd",
    b"/%2fetc%2fpasswd",
    b"/link_out.txt",
    b"/dirlink_out/inner.txt",
    b"/dirlink_out/",
    b"secret.txt",
    b"../secret.txt",
    b"http://x/../secret.txt",
    b"/%c0%ae%c0%ae/secret.txt",  # overlong UTF-8 dots are bytes, not "."
    b"/..;/secret.txt",
    b"/sub/..%00/secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSAL, ids=[t.decode("latin-1") for t in TRAVERSAL])
def test_traversal_never_leaves_the_root(make_manager, site, target):
    mgr, port = start(make_manager, site)
    with serve(mgr):
        status, _, body = raw(port, target)
        assert status in (400, 403, 404), (target, status, body[:80])
        assert SECRET not in body and b"root:" not in body
        # The server still serves.
        assert raw(port, b"/hello.txt")[2] == b"hello static\n"


# --------------------------------------------------------------------------
# Argument checks


def test_invalid_view_and_bad_arguments(make_manager, site):
    kept = []
    errors = []

    def handler(conn, ev, data):
        if ev != MG_EV_HTTP_MSG:
            return
        if data.uri == "/keep":
            kept.append(data)
            conn.reply(200, "kept")
            return
        for call in (
            lambda: conn.serve_dir(kept[0], str(site)),  # invalidated view
            lambda: conn.serve_file(kept[0], str(site / "hello.txt")),
            lambda: conn.serve_dir(HttpMessage.__new__(HttpMessage), str(site)),  # empty view
            lambda: conn.serve_dir("not a message", str(site)),
            lambda: conn.serve_dir(data, str(site), extra_headers="X: a\r\n\r\n<html>"),
            lambda: conn.serve_dir(data, str(site), extra_headers="Bad Name: x\r\n"),
            lambda: conn.serve_dir(data, str(site), extra_headers="X: a\rb\r\n"),
            lambda: conn.serve_dir(data, str(site), extra_headers="X: a\x00b"),
            lambda: conn.serve_dir(data, str(site), extra_headers="no colon here"),
            lambda: conn.serve_dir(data, str(site), mime_types="txt=a\r\nX-Evil: 1"),
            lambda: conn.serve_dir(data, str(site) + "\x00x"),
            lambda: conn.serve_file(data, ""),
            lambda: conn.serve_dir(data, 42),
        ):
            try:
                call()
            except (ValueError, TypeError) as exc:
                errors.append((type(exc).__name__, str(exc)))
            else:
                errors.append(("no error", ""))
        conn.serve_dir(data, str(site))  # still answerable after all that

    mgr = make_manager()
    _, port = listen_free(mgr, handler=handler)
    with serve(mgr):
        assert raw(port, b"/keep")[2] == b"kept"
        status, _, body = raw(port, b"/hello.txt")
    assert (status, body) == (200, b"hello static\n")
    kinds = [k for k, _ in errors]
    msgs = [m for _, m in errors]
    assert kinds == ["ValueError"] * 3 + ["TypeError"] + ["ValueError"] * 8 + ["TypeError"]
    assert msgs[0] == msgs[1] == msgs[2] == "HttpMessage is not valid for this event"
    assert "HttpMessage" in msgs[3]
    assert "not 'Name: value'" in msgs[4]
    assert msgs[5].startswith("Header name")
    assert msgs[6].startswith("Header value contains illegal character")
    assert "null" in msgs[7] or "illegal" in msgs[7]
    assert "not 'Name: value'" in msgs[8]
    assert "mime_types" in msgs[9]


def test_serve_on_closed_connection_raises(make_manager, site):
    closed = []

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.serve_dir(data, str(site))
            closed.append(conn)

    mgr = make_manager()
    _, port = listen_free(mgr, handler=handler)
    with serve(mgr):
        raw(port, b"/hello.txt", b"Connection: close\r\n")
        time.sleep(0.2)
    mgr.poll(10)
    conn = closed[0]
    assert conn.id == 0
    with pytest.raises(RuntimeError, match="closed"):
        conn.http_end()


# --------------------------------------------------------------------------
# A 200 MB file in bounded memory


def test_200mb_sparse_file_streams_with_bounded_rss(tmp_path):
    size = 200 << 20
    root = tmp_path / "root"
    root.mkdir()
    path = root / "huge.bin"
    markers = {0: b"BEGIN", 123456789: b"MIDDLE", size - 3: b"END"}
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: no disk blocks, no page-cache pressure
        for off, mark in markers.items():
            f.seek(off)
            f.write(mark)
    (root / "small.txt").write_bytes(b"small")
    with spawn_server(root) as srv:
        # Warm up: imports, first allocations, a first static answer.
        for target in (b"/hello", b"/small.txt"):
            s = raw_connect(srv.port)
            s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            assert HttpReader(s).read_response() is not None
            s.close()
        base_kb = srv.rss_kb()
        peak = [base_kb]
        done = threading.Event()

        def sample():
            for _ in range(100000):
                if done.wait(0.02):
                    break
                peak[0] = max(peak[0], srv.rss_kb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        s = raw_connect(srv.port, timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
        try:
            s.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                assert chunk, "closed before the head"
                head += chunk
            head, _, got = head.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            assert b"Content-Length: %d" % size in head
            # Stop reading for a moment: the server must keep answering others
            # while this transfer waits on a full socket (it streams across
            # iterations, it does not block in a loop).
            time.sleep(0.3)
            t0 = time.monotonic()
            s2 = raw_connect(srv.port)
            s2.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            other = HttpReader(s2).read_response(5)
            s2.close()
            assert other is not None and other.endswith(b"hello world\n")
            assert time.monotonic() - t0 < 2.0
            # Read it all, checking every byte: the markers where they are,
            # zeros everywhere else (the markers hold no zero byte).
            pos = len(got)
            seen = dict.fromkeys(markers, 0)
            zeros = 0
            deadline = time.monotonic() + 60
            chunk = got
            start = 0
            for _ in range(10_000_000):
                for off, mark in markers.items():
                    lo, hi = max(off, start), min(off + len(mark), start + len(chunk))
                    if lo < hi:
                        assert chunk[lo - start:hi - start] == mark[lo - off:hi - off]
                        seen[off] += hi - lo
                zeros += chunk.count(0)
                if pos >= size or time.monotonic() > deadline:
                    break
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                start = pos
                pos += len(chunk)
            assert pos == size
            assert seen == {off: len(m) for off, m in markers.items()}
            assert zeros == size - sum(len(m) for m in markers.values())
        finally:
            s.close()
            done.set()
            sampler.join(5)
        growth_kb = peak[0] - base_kb
        print(f"server RSS {base_kb} KiB, peak {peak[0]} KiB")
        assert growth_kb < 10 * 1024, f"server RSS grew by {growth_kb} KiB"
        assert srv.alive()
