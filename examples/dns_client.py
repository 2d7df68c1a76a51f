"""Look names up without blocking the loop, as the original's dns_client does.

    python examples/dns_client.py NAME...     # default: localhost example.invalid

Each name is resolved with Connection.resolve() on a connection of its own
(here a UDP listener, as in the original's usage: any connection may ask),
through the system's resolver: /etc/hosts, then the DNS servers of
/etc/resolv.conf.  MG_EV_RESOLVE sets the connection's remote_addr to the
answer; MG_EV_ERROR says why a name failed.  All lookups run at once, on
worker threads; the loop keeps polling (and would keep serving) meanwhile.
Exits 1 if any name failed.
"""

import sys
import time

from cymongoose import MG_EV_ERROR, MG_EV_RESOLVE, Manager

names = sys.argv[1:] or ["localhost", "example.invalid"]
answers = {}


def handler(conn, ev, data):
    name = conn.userdata
    if ev == MG_EV_RESOLVE:
        ip, _, is_ipv6 = conn.remote_addr
        answers[name] = f"{ip} ({'IPv6' if is_ipv6 else 'IPv4'})"
        conn.close()
    elif ev == MG_EV_ERROR:  # "<name> DNS lookup failed", "DNS timeout"
        answers[name] = f"error: {data}"


with Manager() as manager:
    for name in names:
        conn = manager.listen("udp://127.0.0.1:0", handler)
        conn.userdata = name
        conn.resolve(name)  # returns at once; the answer comes as an event
    deadline = time.monotonic() + 10  # lookups give up after 5 s themselves
    while len(answers) < len(names) and time.monotonic() < deadline:
        manager.poll(50)

for name in names:
    print(f"{name}: {answers.get(name, 'error: no answer')}")
failed = [n for n in names if answers.get(n, "error").startswith("error")]
sys.exit(1 if failed else 0)
