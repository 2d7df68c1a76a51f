"""Hello-world HTTP server on cymongoose: ONE script for ours and the original.

    python cm_hello.py PORT

Answers every request with 200 and {"hello":"world"} (application/json) on
keep-alive.  Stops on SIGTERM/SIGINT.  The
interpreter chooses the package: bench/.venv-ours (ours) or bench/.venv-orig
(the original cymongoose 0.2.5 from PyPI).
"""

import sys

from cymongoose import MG_EV_HTTP_MSG, Manager

BODY = b'{"hello":"world"}'
HEADERS = {"Content-Type": "application/json"}


def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        conn.reply(200, BODY, HEADERS)


def main() -> None:
    port = int(sys.argv[1])
    mgr = Manager(handler)
    mgr.listen(f"http://127.0.0.1:{port}")
    mgr.run(100)  # poll(100) until SIGINT/SIGTERM, then close()


if __name__ == "__main__":
    main()
