"""A WebSocket broadcast server: every message any client sends goes to
every open WebSocket (a chat room), and a tick goes out every few seconds.

    python examples/ws_broadcast.py            # http://127.0.0.1:8000
    PORT=9000 python examples/ws_broadcast.py  # another port (0: any free port)

Open http://127.0.0.1:8000/ in two browser tabs and type in one.  Or, with
the `websockets` package, in two terminals:

    python -m websockets ws://127.0.0.1:8000/ws

The set of open sockets is kept by the handler: a connection joins on
MG_EV_WS_OPEN and leaves on MG_EV_CLOSE.  Everything runs on the thread that
polls the manager, so the set needs no lock; another thread that wants to
broadcast would hand the message over with Manager.wakeup().
"""

import os

from cymongoose import MG_EV_CLOSE, MG_EV_HTTP_MSG, MG_EV_WS_MSG, MG_EV_WS_OPEN, Manager

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
TICK_MS = int(os.environ.get("TICK_MS", "5000"))

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>cymongoose WebSocket broadcast</title>
<form id="f"><input id="t" autofocus placeholder="to everyone"> <button>send</button></form>
<pre id="log"></pre>
<script>
const log = (s) => { document.getElementById("log").textContent += s + "\\n"; };
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onmessage = (e) => log(e.data);
ws.onclose = (e) => log(`closed (${e.code})`);
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  const t = document.getElementById("t");
  ws.send(t.value);
  t.value = "";
};
</script>
"""


class Room:
    def __init__(self) -> None:
        self.members = {}  # connection id -> Connection, in order of arrival
        self.ticks = 0
        self.manager = Manager(self.handler)

    def broadcast(self, text: str) -> None:
        for conn in list(self.members.values()):
            conn.ws_send(text)

    def handler(self, conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            if data.uri == "/ws":
                conn.ws_upgrade(data)
            elif data.uri == "/":
                conn.reply(200, PAGE, {"Content-Type": "text/html; charset=utf-8"})
            else:
                conn.reply(404, "Not found\n")
        elif ev == MG_EV_WS_OPEN:
            self.members[conn.id] = conn
            self.broadcast(f"#{conn.id} joined ({len(self.members)} here)")
        elif ev == MG_EV_WS_MSG:
            self.broadcast(f"#{conn.id}: {data.text}")
        elif ev == MG_EV_CLOSE and self.members.pop(conn.id, None) is not None:
            self.broadcast(f"#{conn.id} left ({len(self.members)} here)")

    def tick(self) -> None:
        self.ticks += 1
        self.broadcast(f"tick {self.ticks}")

    def run(self) -> None:
        listener = self.manager.listen(f"http://{HOST}:{PORT}")
        host, port, _ = listener.local_addr
        print(f"Serving on http://{host}:{port}/  (WebSocket: ws://{host}:{port}/ws; "
              "Ctrl-C to stop)", flush=True)
        self.manager.timer_add(TICK_MS, self.tick, repeat=True)
        self.manager.run()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    Room().run()
