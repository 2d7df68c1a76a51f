"""An HTTPS server on cymongoose: TLS on OpenSSL, the certificate chain and key in PEM.

    python examples/https_server.py                       # https://127.0.0.1:8443
    CERT=server.pem KEY=server.key PORT=9443 python examples/https_server.py
    CA=ca.pem python examples/https_server.py             # mutual TLS: client certs required

CERT (default server.pem) holds the certificate chain, leaf first; KEY (default
server.key) its private key, RSA or EC.  examples/README.md shows how to make a
test CA and a certificate for localhost with the `openssl` command.

Try it:
    curl --cacert ca.pem https://localhost:8443/
    curl --cacert ca.pem https://localhost:8443/info

TLS is set up once, on the listener: every connection it accepts inherits it and
starts its handshake (the original's documented way, tls_init() in MG_EV_ACCEPT,
works too and replaces the listener's options for that connection).  Handlers
see plaintext only; MG_EV_TLS_HS tells when a handshake is done.  A certificate
that fails to load is logged and the connections the listener accepts fail with
MG_EV_ERROR, rather than talk plaintext on a TLS port.
"""

import os
import sys

from cymongoose import MG_EV_ERROR, MG_EV_HTTP_MSG, MG_EV_TLS_HS, Manager, TlsOpts

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8443"))


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def handler(conn, ev, data):
    if ev == MG_EV_TLS_HS:
        conn.userdata = "tls"  # the handshake is done: what follows is encrypted
    elif ev == MG_EV_HTTP_MSG:
        if data.uri == "/info":
            conn.reply_json({"tls": conn.is_tls, "handshake": conn.userdata == "tls",
                             "peer": conn.remote_addr[0]})
        else:
            conn.reply(200, "Hello over TLS\n")
    elif ev == MG_EV_ERROR:
        print(f"connection {conn.id}: {data}", file=sys.stderr, flush=True)


def main() -> None:
    cert, key, ca = os.environ.get("CERT", "server.pem"), os.environ.get("KEY", "server.key"), \
        os.environ.get("CA")
    try:
        opts = TlsOpts(cert=read(cert), key=read(key), ca=read(ca) if ca else None)
    except OSError as exc:
        sys.exit(f"{exc}\nMake a certificate first: see examples/README.md (https_server.py).")
    manager = Manager(handler)
    listener = manager.listen(f"https://{HOST}:{PORT}")
    listener.tls_init(opts)  # inherited by every accepted connection
    host, port, _ = listener.local_addr
    print(f"Serving on https://{host}:{port}/  (Ctrl-C to stop)", flush=True)
    manager.run()
    print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
