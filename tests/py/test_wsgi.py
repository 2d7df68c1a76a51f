"""cymongoose.wsgi (SPEC 1.12): PEP 3333 environ and responses, checked by wsgiref.validate
and by real clients."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from wsgiref.validate import validator

import pytest

from cymongoose.wsgi import FileWrapper, WSGIServer


class Served:
    def __init__(self, app, **kw) -> None:
        self.server = WSGIServer(app, **kw)
        self.port = self.server.listen("http://127.0.0.1:0").local_addr[1]
        self.thread = threading.Thread(target=self.server.run, kwargs={"poll_ms": 20}, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.thread.join(15)
        assert not self.thread.is_alive()

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.getheaders(), r.read()
        finally:
            c.close()


def test_environ_and_validate():
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        body = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    with Served(validator(app)) as s:
        status, _, body = s.request(
            "POST", "/a%20b/c?x=1&y=2", b"payload", {"X-Thing": "v", "Content-Type": "text/plain"}
        )
    assert (status, body) == (200, b"payload")
    assert seen["REQUEST_METHOD"] == "POST"
    assert seen["PATH_INFO"] == "/a b/c"
    assert seen["QUERY_STRING"] == "x=1&y=2"
    assert seen["CONTENT_TYPE"] == "text/plain" and seen["CONTENT_LENGTH"] == "7"
    assert seen["HTTP_X_THING"] == "v"
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1" and seen["SERVER_PORT"] == str(s.port)
    assert seen["REMOTE_ADDR"] == "127.0.0.1"
    assert seen["wsgi.url_scheme"] == "http" and seen["wsgi.file_wrapper"] is FileWrapper


def test_input_by_size_line_and_iteration():
    got = {}

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        got["first"] = inp.read(3)
        got["line"] = inp.readline()
        got["rest"] = list(inp)
        start_response("204 No Content", [])
        return []

    with Served(app) as s:
        status, _, _ = s.request("POST", "/", b"abcdef\nline2\nline3")
    assert status == 204
    assert got == {"first": b"abc", "line": b"def\n", "rest": [b"line2\n", b"line3"]}


def test_chunked_request_body_reaches_the_app():
    """A chunked request body is de-chunked (RFC 9112 7.1.3): the app sees its length in
    CONTENT_LENGTH, no Transfer-Encoding, and an input that ends with the body."""
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        body = environ["wsgi.input"].read()  # to the end: wsgi.input_terminated
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    with Served(app) as s, socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(
            b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nsent \r\n9\r\nin chunks\r\n0\r\n\r\n"
        )
        reply = b""
        while chunk := c.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"sent in chunks")
    assert seen["CONTENT_LENGTH"] == "14" and seen["wsgi.input_terminated"] is True
    assert "HTTP_TRANSFER_ENCODING" not in seen


def test_duplicate_headers_head_and_close_called():
    closed = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"hello"

        def close(self) -> None:
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
        return Body()

    with Served(app) as s:
        status, headers, body = s.request("GET", "/")
        hstatus, hheaders, hbody = s.request("HEAD", "/")
    assert (status, body) == (200, b"hello")
    assert [v for k, v in headers if k.lower() == "set-cookie"] == ["a=1", "b=2"]
    assert hstatus == 200 and hbody == b""
    assert dict((k.lower(), v) for k, v in hheaders)["content-length"] == "5"
    assert closed == [True, True]


def test_app_exception_is_500_and_server_goes_on():
    errors = []

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/boom":
            raise ValueError("boom")
        start_response("200 OK", [])
        return [b"fine"]

    with Served(app, error_handler=errors.append) as s:
        assert s.request("GET", "/boom")[0] == 500
        assert s.request("GET", "/ok")[2] == b"fine"
    assert [str(e) for e in errors] == ["boom"]


def test_streamed_and_large_responses():
    big = bytes(range(256)) * (12 << 10)  # 3 MiB

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        if environ["PATH_INFO"] == "/big":
            return [big]
        return (b"%d," % i for i in range(1000))

    with Served(app) as s:
        status, headers, body = s.request("GET", "/gen")
        assert status == 200 and body == b"".join(b"%d," % i for i in range(1000))
        assert dict((k.lower(), v) for k, v in headers).get("transfer-encoding") == "chunked"
        status, _, body = s.request("GET", "/big")
        assert status == 200 and body == big


def test_client_gone_mid_stream_frees_the_worker():
    """A client that disconnects during an endless stream: the worker stops (close())."""
    closed = threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [])

        def endless() -> Iterator[bytes]:
            try:
                while True:
                    yield b"x" * 65536
            finally:
                closed.set()

        return endless()

    with Served(app, stream_timeout=2.0) as s:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        sock.close()
        assert closed.wait(10)
        assert s.server._streams == {} or _eventually_empty(s.server)


def _eventually_empty(server: WSGIServer) -> bool:
    for _ in range(200):
        if not server._streams:
            return True
        time.sleep(0.01)
    return False


def test_large_request_body_is_spooled():
    size = 2 << 20
    got = {}

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        got["type"] = type(inp).__name__
        got["len"] = len(inp.read())
        start_response("200 OK", [])
        return [b"ok"]

    server = WSGIServer(app)
    port = server.listen("http://127.0.0.1:0", max_body=4 << 20).local_addr[1]
    t = threading.Thread(target=server.run, kwargs={"poll_ms": 20}, daemon=True)
    t.start()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/", body=b"z" * size)
        assert c.getresponse().read() == b"ok"
        c.close()
    finally:
        server.stop()
        t.join(15)
    assert got == {"type": "SpooledTemporaryFile", "len": size}


@pytest.mark.parametrize("workers", [1, 4])
def test_keep_alive_many_requests(workers):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    with Served(app, workers=workers) as s:
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        for i in range(50):
            c.request("GET", f"/{i}")
            assert c.getresponse().read() == f"/{i}".encode()
        c.close()
