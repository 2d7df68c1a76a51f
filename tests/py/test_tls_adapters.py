"""TLS under the Python layers: the command line's --tls-cert/--tls-key (static, WSGI,
ASGI, several workers, an ASGI WebSocket route over wss://, the MQTT broker over
mqtts://) and AsyncManager, with curl, Python's ssl, websockets and paho-mqtt as clients."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import urllib.request
from typing import Any

import pytest
import tls_certs
from test_cli import serve

from cymongoose import MG_EV_HTTP_MSG, TlsOpts

APPS = '''
def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("wsgi " + environ["wsgi.url_scheme"]).encode()]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": ("asgi " + scope["scheme"]).encode()})
'''


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tls_certs.Certs:
    return tls_certs.make(tmp_path_factory.getbasetemp() / "tls-certs")


def get(url: str, certs: tls_certs.Certs) -> bytes:
    ctx = ssl.create_default_context(cafile=str(certs.root.cert_path))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=ctx))
    with opener.open(url, timeout=10) as r:
        return r.read()


def tls_args(certs: tls_certs.Certs) -> list[str]:
    return ["--tls-cert", str(certs.leaf.cert_path), "--tls-key", str(certs.leaf.key_path)]


def test_cli_static_over_https(tmp_path, certs, curl):
    (tmp_path / "hello.txt").write_text("static over tls\n")
    with serve("static", str(tmp_path), "--listen", "https://127.0.0.1:0", *tls_args(certs)) as s:
        url = s.url.replace("127.0.0.1", "localhost")
        assert url.startswith("https://")
        r = subprocess.run([curl, "-sS", "--noproxy", "*", "--cacert", str(certs.root.cert_path),
                            url + "/hello.txt"], capture_output=True, timeout=30)
        assert r.returncode == 0 and r.stdout == b"static over tls\n", r.stderr
        assert s.stop() == 0


@pytest.mark.parametrize("kind,app,want", [("wsgi", "apps:wsgi_app", b"wsgi https"),
                                           ("asgi", "apps:asgi_app", b"asgi https")])
def test_cli_apps_see_https(tmp_path, certs, kind, app, want):
    (tmp_path / "apps.py").write_text(APPS)
    with serve(kind, app, "--listen", "https://127.0.0.1:0", "--workers", "2", *tls_args(certs),
               cwd=tmp_path) as s:
        url = s.url.replace("127.0.0.1", "localhost")
        for _ in range(4):  # both workers, whichever accepts
            assert get(url + "/", certs) == want
        assert s.stop() == 0


def test_async_manager_tls(certs):
    from cymongoose.aio import AsyncManager

    def handler(conn: Any, ev: int, data: Any) -> None:
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, "async tls")

    async def main() -> bytes:
        async with AsyncManager(handler) as am:
            lsn = am.listen("https://127.0.0.1:0")
            lsn.tls_init(TlsOpts(cert=certs.leaf.cert, key=certs.leaf.key))
            port = lsn.local_addr[1]
            return await asyncio.to_thread(get, f"https://localhost:{port}/", certs)

    assert asyncio.run(asyncio.wait_for(main(), 30)) == b"async tls"


WS_APP = '''
async def ws_app(scope, receive, send):
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "scheme " + scope["scheme"]})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            return
        if m.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": m["bytes"][::-1]})
        else:
            await send({"type": "websocket.send", "text": m["text"].upper()})
'''


def test_cli_asgi_websocket_over_tls(tmp_path, certs):
    """python -m cymongoose asgi --tls-cert/--tls-key: a WebSocket route over wss://,
    with the websockets client verifying our CA."""
    pytest.importorskip("websockets")
    from websockets.asyncio.client import connect

    (tmp_path / "wsapp.py").write_text(WS_APP)

    async def talk(url: str) -> list[Any]:
        ctx = ssl.create_default_context(cafile=str(certs.root.cert_path))
        async with connect(url + "/ws", ssl=ctx) as ws:
            out = [await asyncio.wait_for(ws.recv(), 10)]
            for msg in ("hello tls", b"\x00\x01" * 40000):
                await ws.send(msg)
                out.append(await asyncio.wait_for(ws.recv(), 10))
            return out

    with serve("asgi", "wsapp:ws_app", "--listen", "https://127.0.0.1:0", *tls_args(certs),
               cwd=tmp_path) as s:
        url = s.url.replace("https://127.0.0.1", "wss://localhost")
        got = asyncio.run(asyncio.wait_for(talk(url), 30))
        assert got == ["scheme wss", "HELLO TLS", b"\x01\x00" * 40000]
        assert s.stop() == 0


def test_cli_mqtt_broker_over_tls(certs):
    """python -m cymongoose mqtt-broker --listen mqtts://... --tls-cert/--tls-key, with
    paho-mqtt over TLS (a subprocess: not in scripts/asan-pytest.sh's list)."""
    pytest.importorskip("paho.mqtt.client")
    from test_mqtts import paho_round_trip

    with serve("mqtt-broker", "--listen", "mqtts://127.0.0.1:0", *tls_args(certs)) as s:
        port = int(s.wait_log(r"listening on (\S+)")[0].group(1).rsplit(":", 1)[1])
        got = paho_round_trip(port, certs, "cli")
        assert got == [(f"b/q{q}", f"tls {q}".encode(), min(q, 1)) for q in (0, 1, 2)]
        assert s.stop() == 0
