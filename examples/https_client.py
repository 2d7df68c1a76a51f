"""An HTTPS client on cymongoose: GET a URL, verifying the server's certificate.

    python examples/https_client.py https://example.com/      # the system's trusted CAs
    CA=ca.pem python examples/https_client.py https://localhost:8443/
    INSECURE=1 python examples/https_client.py https://localhost:8443/   # verify nothing

Verification is on by default: the chain must lead to a trusted CA (CA=file, else
the system trust store) and the certificate must name the host of the URL (or
NAME=..., which also sets SNI).  A certificate that is expired, for another
name or from an unknown CA fails the connection with MG_EV_ERROR and OpenSSL's
reason, e.g. "TLS handshake failed: certificate verify failed: hostname mismatch".

TLS starts in MG_EV_CONNECT, when the TCP connection is up; the request is sent
right away and leaves encrypted once the handshake completes.
"""

import os
import sys

from cymongoose import (
    MG_EV_CONNECT,
    MG_EV_ERROR,
    MG_EV_HTTP_MSG,
    MG_EV_TLS_HS,
    Manager,
    TlsOpts,
    url_host,
    url_uri,
)


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else "https://localhost:8443/"
    ca_file = os.environ.get("CA")
    opts = TlsOpts(
        ca=open(ca_file, "rb").read() if ca_file else None,  # None: the system trust store
        name=os.environ.get("NAME"),  # None: the host of the URL
        skip_verification=os.environ.get("INSECURE") == "1",
    )
    result = {}

    def client(conn, ev, data):
        if ev == MG_EV_CONNECT:
            conn.tls_init(opts)
            conn.send(f"GET {url_uri(url)} HTTP/1.1\r\nHost: {url_host(url)}\r\n"
                      "Connection: close\r\n\r\n")
        elif ev == MG_EV_TLS_HS:
            print("TLS handshake done", file=sys.stderr)
        elif ev == MG_EV_HTTP_MSG:
            result["status"], result["body"] = data.status(), data.body_bytes
            conn.close()
        elif ev == MG_EV_ERROR:
            result["error"] = data

    with Manager() as manager:
        manager.connect(url, client)
        for _ in range(1000):  # at most ~10 s
            if result:
                break
            manager.poll(10)
    if "error" in result or not result:
        print(f"error: {result.get('error', 'timed out')}", file=sys.stderr)
        return 1
    print(f"HTTP {result['status']}", file=sys.stderr)
    sys.stdout.buffer.write(result["body"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
