"""WebSocket echo server on cymongoose: ONE script for ours and the original.

    python cm_ws_echo.py PORT

Upgrades every HTTP request and echoes each message back as text.  Stops on
SIGTERM/SIGINT.  The interpreter chooses the package: bench/.venv-ours (ours)
or bench/.venv-orig (the original cymongoose 0.2.5 from PyPI).
"""

import sys

from cymongoose import MG_EV_HTTP_MSG, MG_EV_WS_MSG, WEBSOCKET_OP_TEXT, Manager


def handler(conn, ev, data):
    if ev == MG_EV_WS_MSG:
        conn.ws_send(data.data, WEBSOCKET_OP_TEXT)
    elif ev == MG_EV_HTTP_MSG:
        conn.ws_upgrade(data)


def main() -> None:
    port = int(sys.argv[1])
    mgr = Manager(handler)
    mgr.listen(f"http://127.0.0.1:{port}")
    mgr.run(100)  # poll(100) until SIGINT/SIGTERM, then close()


if __name__ == "__main__":
    main()
