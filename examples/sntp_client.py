"""Ask an NTP server for the time with SNTP, as the original's sntp_client does.

    python examples/sntp_client.py [URL]      # default: sntp://127.0.0.1 (port 123)

Any NTP server works: pool.ntp.org on a connected machine, or a local one
(Debian: `apt-get install chrony`; the tests run `chronyd -x`, which serves
the system's time without touching it).  Prints the server's time and how far
the local clock is from it; exits 1 if no valid answer came within 3 s.
"""

import datetime
import sys
import time

from cymongoose import MG_EV_CLOSE, MG_EV_ERROR, MG_EV_SNTP_TIME, Manager

url = sys.argv[1] if len(sys.argv) > 1 else "sntp://127.0.0.1"
result = {}


def handler(conn, ev, data):
    if ev == MG_EV_SNTP_TIME:  # data: ms since the Unix epoch, an int
        result["ms"] = data
    elif ev == MG_EV_ERROR:  # a name that does not resolve, a kiss-o'-death, ...
        result["error"] = data
    elif ev == MG_EV_CLOSE:  # after the answer, or after 3 s of silence
        result["closed"] = True


with Manager() as manager:
    manager.sntp_connect(url, handler)  # the request goes out on MG_EV_CONNECT
    deadline = time.monotonic() + 10
    while "closed" not in result and time.monotonic() < deadline:
        manager.poll(100)

if "ms" not in result:
    print(f"{url}: no time ({result.get('error', 'no answer within 3 s')})", file=sys.stderr)
    sys.exit(1)
server = datetime.datetime.fromtimestamp(result["ms"] / 1000, datetime.timezone.utc)
offset_ms = result["ms"] - time.time() * 1000
print(f"{url}: {server.isoformat(timespec='milliseconds')} (local clock {offset_ms:+.0f} ms)")
