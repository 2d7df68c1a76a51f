"""HTTPS hello world on cymongoose: ONE script for ours and the original.

    python cm_https_hello.py PORT CERT KEY [listener|accept]

Answers every request with 200 and {"hello":"world"} (application/json).  TLS
options: `listener` calls tls_init once on the listener (ours: inherited by
every accepted connection, SPEC Decision 7); `accept` calls it in MG_EV_ACCEPT
on each connection (the original's documented way: its listener's tls_init is
not inherited).  Stops on SIGTERM/SIGINT.
"""

import sys

from cymongoose import MG_EV_ACCEPT, MG_EV_HTTP_MSG, Manager, TlsOpts

BODY = b'{"hello":"world"}'
HEADERS = {"Content-Type": "application/json"}


def main() -> None:
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    mode = sys.argv[4] if len(sys.argv) > 4 else "listener"
    with open(cert, "rb") as c, open(key, "rb") as k:
        opts = TlsOpts(cert=c.read(), key=k.read())
    per_conn = mode == "accept"

    def handler(conn, ev, data):
        if ev == MG_EV_HTTP_MSG:
            conn.reply(200, BODY, HEADERS)
        elif ev == MG_EV_ACCEPT and per_conn:
            conn.tls_init(opts)

    mgr = Manager(handler)
    lsn = mgr.listen(f"https://127.0.0.1:{port}")
    if not per_conn:
        lsn.tls_init(opts)
    mgr.run(100)


if __name__ == "__main__":
    main()
