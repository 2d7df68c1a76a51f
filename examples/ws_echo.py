"""A WebSocket echo server, with the HTML page that talks to it served from
the same listener.

    python examples/ws_echo.py            # http://127.0.0.1:8000
    PORT=9000 python examples/ws_echo.py  # another port (0: any free port)

Open http://127.0.0.1:8000/ in a browser: the page connects to ws://.../ws
and every line you send comes back.  From a terminal, with the `websockets`
package:

    python -m websockets ws://127.0.0.1:8000/ws

How it works: a plain HTTP listener.  A request for /ws is answered with
conn.ws_upgrade(data), which sends the 101 and fires MG_EV_WS_OPEN right
away; from then on the connection brings MG_EV_WS_MSG for each message (a
fragmented one arrives whole), and conn.ws_send() answers.  Pings are
answered for you; a close frame is answered and the connection closed.
"""

import os

from cymongoose import (
    MG_EV_CLOSE,
    MG_EV_HTTP_MSG,
    MG_EV_WS_MSG,
    MG_EV_WS_OPEN,
    WEBSOCKET_OP_BINARY,
    WEBSOCKET_OP_TEXT,
    Manager,
)

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>cymongoose WebSocket echo</title>
<form id="f"><input id="t" autofocus placeholder="say something"> <button>send</button></form>
<pre id="log"></pre>
<script>
const log = (s) => { document.getElementById("log").textContent += s + "\\n"; };
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onopen = () => log("connected");
ws.onmessage = (e) => log("echo: " + e.data);
ws.onclose = (e) => log(`closed (${e.code})`);
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  const t = document.getElementById("t");
  ws.send(t.value);
  t.value = "";
};
</script>
"""


def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        if data.uri == "/ws":
            conn.ws_upgrade(data)  # 101, then MG_EV_WS_OPEN inside this call
        elif data.uri == "/":
            conn.reply(200, PAGE, {"Content-Type": "text/html; charset=utf-8"})
        else:
            conn.reply(404, "Not found\n")
    elif ev == MG_EV_WS_OPEN:
        conn.userdata = 0  # messages echoed on this connection
    elif ev == MG_EV_WS_MSG:
        # data.flags is the first frame byte: 0x81 text, 0x82 binary.
        binary = data.flags & 0x0F == WEBSOCKET_OP_BINARY
        conn.ws_send(data.data, WEBSOCKET_OP_BINARY if binary else WEBSOCKET_OP_TEXT)
        conn.userdata += 1
    elif ev == MG_EV_CLOSE and conn.is_websocket:
        print(f"connection {conn.id} closed after {conn.userdata} messages", flush=True)


def main() -> None:
    manager = Manager(handler)
    listener = manager.listen(f"http://{HOST}:{PORT}")
    host, port, _ = listener.local_addr
    print(f"Serving on http://{host}:{port}/  (WebSocket: ws://{host}:{port}/ws; Ctrl-C to stop)",
          flush=True)
    manager.run()  # polls until SIGINT/SIGTERM, then closes the manager
    print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
