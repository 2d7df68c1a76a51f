#!/usr/bin/env python3
"""bench/tls_run.py: HTTPS hello world, ours against nginx and the original cymongoose.

Run after bench/setup.sh (which makes bench/.venv-ours and bench/.venv-orig):

    python3 bench/tls_run.py [--quick] [--reps N] [--duration S] [--servers ours,orig,nginx]

One EC P-256 certificate (made here with the `openssl` command, bench/out/tls/) serves
all three, so the original, whose built-in TLS takes EC keys only, can run:
  ours   bench/servers/cm_https_hello.py under bench/.venv-ours, tls_init on the listener
  orig   the same script under bench/.venv-orig, tls_init in MG_EV_ACCEPT (its way)
  nginx  bench/servers/nginx_tls.conf.in, one worker

Measurements (wrk -t1, servers alternated within each repetition, median of repetitions):
  keep-alive  -c50 on keep-alive connections: requests/s and server CPU µs per request
  handshakes  -c20 with "Connection: close": every request is a new connection and a full
              handshake (wrk does not resume sessions): handshakes/s and CPU µs per handshake

Writes the TLS section of bench/RESULTS.md (between the tls markers; run.py keeps it)
and bench/out/tls_results.json.  Stdlib only; 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import run as base  # noqa: E402  (bench/run.py: processes, /proc readings, wrk parsing)

OUT = BENCH / "out"
TLS_DIR = OUT / "tls"
PORTS = {"ours": 18111, "orig": 18112, "nginx": 18113}
LABELS = {"ours": "cymongoose (ours)", "orig": "cymongoose 0.2.5 (original)", "nginx": "nginx"}
MODES = {
    "keepalive": (50, []),
    "handshakes": (20, ["-H", "Connection: close"]),
}
BEGIN, END = base.TLS_BEGIN, base.TLS_END


def make_cert() -> tuple[Path, Path]:
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    cert, key = TLS_DIR / "server.pem", TLS_DIR / "server.key"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "30", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
    return cert, key


def argv_for(name: str, cert: Path, key: Path) -> list[str]:
    port = PORTS[name]
    if name == "nginx":
        prefix = OUT / "nginx-tls"
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        text = (BENCH / "servers" / "nginx_tls.conf.in").read_text()
        for k, v in (("@PORT@", str(port)), ("@PREFIX@", str(prefix)), ("@CERT@", str(cert)),
                     ("@KEY@", str(key))):
            text = text.replace(k, v)
        (prefix / "nginx.conf").write_text(text)
        return ["nginx", "-p", str(prefix), "-c", "nginx.conf", "-e", str(prefix / "error.log")]
    mode = "listener" if name == "ours" else "accept"
    return [str(base.venv_python(name)), str(BENCH / "servers" / "cm_https_hello.py"), str(port),
            str(cert), str(key), mode]


def check(port: int) -> None:
    r = subprocess.run(["curl", "-sk", "--noproxy", "*", "--max-time", "10",
                        f"https://127.0.0.1:{port}/", f"https://127.0.0.1:{port}/"],
                       capture_output=True, timeout=30)
    if r.stdout != base.BODY * 2:
        raise base.BenchError(f"bad HTTPS hello: {r.returncode} {r.stdout[:80]!r} {r.stderr!r}")


def wrk(port: int, conns: int, extra: list[str], seconds: float) -> dict:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--latency", *extra,
            f"https://127.0.0.1:{port}/"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise base.BenchError(f"wrk failed ({r.returncode}): {r.stderr or r.stdout}")
    return base.parse_wrk(r.stdout)


def measure(names: list[str], cert: Path, key: Path, a: argparse.Namespace) -> dict:
    res: dict = {n: {m: [] for m in MODES} for n in names}
    for rep in range(a.reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            server = base.Server(name, LABELS[name], PORTS[name])
            base.log(f"tls rep {rep + 1}/{a.reps}: {name}")
            with base.started(server, argv=argv_for(name, cert, key), log_name=f"tls-{name}") as p:
                check(server.port)
                wrk(server.port, 20, [], 1.0)  # warm-up
                for mode, (conns, extra) in MODES.items():
                    before = base.cpu_seconds(p.pid)
                    r = wrk(server.port, conns, extra, a.duration)
                    r["cpu_us"] = (base.cpu_seconds(p.pid) - before) * 1e6 / max(r["requests"], 1)
                    res[name][mode].append(r)
                    base.log(f"  {mode}: {r['rps']:.0f}/s, {r['cpu_us']:.1f} µs CPU each, "
                             f"errors {r['socket_errors']}")
    return res


def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows) if rows else float("nan")


def section(res: dict, a: argparse.Namespace, started: str, minutes: float) -> list[str]:
    took = f", {minutes:.1f} min" if minutes else ""
    cmd = " ".join(["python3 bench/tls_run.py", *a.argv])
    lines = [BEGIN, "## HTTPS (issue 9): keep-alive requests and new-connection handshakes", "",
             f"Run: {started}{took}, by `{cmd}`; {a.reps} repetition(s) of {a.duration:g} s "
             "per measurement, servers alternated, medians. One EC P-256 certificate for all "
             "(the original's built-in TLS takes EC keys only); wrk -t1 over TLS (OpenSSL; it "
             "negotiates TLS 1.3 and never resumes sessions, so every new connection is a full "
             "handshake).",
             "", "- ours: `cm_https_hello.py PORT CERT KEY listener` (tls_init on the listener)",
             "- original: the same script with `accept` (tls_init in MG_EV_ACCEPT, its documented "
             "way)", "- nginx: `bench/servers/nginx_tls.conf.in`, 1 worker, same certificate", "",
             "| server | keep-alive req/s (-c50) | CPU µs/req | handshakes/s (-c20, Connection: "
             "close) | CPU µs/handshake | socket errors |", "|---|---|---|---|---|---|"]
    for name, modes in res.items():
        ka, hs = modes["keepalive"], modes["handshakes"]
        errs = sum(r["socket_errors"] for r in ka + hs)
        lines.append(f"| {LABELS[name]} | {med(ka, 'rps'):.0f} | {med(ka, 'cpu_us'):.1f} | "
                     f"{med(hs, 'rps'):.0f} | {med(hs, 'cpu_us'):.0f} | {errs} |")
    if "ours" in res and "nginx" in res:
        ka = med(res["ours"]["keepalive"], "cpu_us") / med(res["nginx"]["keepalive"], "cpu_us")
        hs = med(res["ours"]["handshakes"], "rps") / med(res["nginx"]["handshakes"], "rps")
        lines += ["", "| target (issue 9) | value | goal | met |", "|---|---|---|---|",
                  f"| keep-alive CPU per request, ours ÷ nginx | {ka:.2f} | ≤ 1.0 | "
                  f"{'yes' if ka <= 1.0 else 'no'} |",
                  f"| new-connection handshakes/s, ours ÷ nginx | {hs:.2f} | ≥ 0.8 | "
                  f"{'yes' if hs >= 0.8 else 'no'} |"]
    lines += ["", "- wrk shares the 2 cores with the server and pays for the client side of every "
              "handshake: handshakes/s is bounded by the box; CPU µs per handshake is the "
              "server's own work, the steadier number.",
              "- socket errors: wrk `read` errors, one per new connection for the original: "
              "its answer to a `Connection: close` request does not say `Connection: close` "
              "(ours and nginx's do, RFC 9112 9.6), so wrk expects keep-alive and counts the "
              "close that follows as an error. Every request was answered.",
              f"- load average before / after: {a.load[0]} / {a.load[1]} (other work shared "
              "the machine: compare servers within this table only).", END]
    return lines


def write(lines: list[str]) -> None:
    path = BENCH / "RESULTS.md"
    text = path.read_text() if path.exists() else "# cymongoose benchmarks\n"
    block = "\n".join(lines)
    i, j = text.find(BEGIN), text.find(END)
    if 0 <= i < j:
        text = text[:i] + block + text[j + len(END):]
    else:
        k = text.find(base.PROFILE_BEGIN)
        text = text[:k] + block + "\n\n" + text[k:] if k >= 0 else text + "\n" + block + "\n"
    path.write_text(text)
    base.log(f"wrote the TLS section of {path}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 s runs, 1 repetition")
    p.add_argument("--reps", type=int)
    p.add_argument("--duration", type=float)
    p.add_argument("--servers", default="ours,orig,nginx")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the section from bench/out/tls_results.json")
    a = p.parse_args(argv)
    a.argv = argv
    a.reps = a.reps or (1 if a.quick else 3)
    a.duration = a.duration or (2.0 if a.quick else 10.0)
    names = [n for n in a.servers.split(",") if n in PORTS]
    base.raise_nofile()
    OUT.mkdir(exist_ok=True)
    cert, key = make_cert()
    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load = Path("/proc/loadavg").read_text().split()[0]
    if a.report_only:
        saved = json.loads((OUT / "tls_results.json").read_text())
        res, a.load, started = saved["results"], saved["load"], saved["started"]
        a.reps, a.duration, a.argv = saved["reps"], saved["duration"], saved["argv"]
        minutes = saved.get("minutes", 0.0)
    else:
        res = measure(names, cert, key, a)
        a.load = [load, Path("/proc/loadavg").read_text().split()[0]]
        minutes = (time.monotonic() - t0) / 60
        (OUT / "tls_results.json").write_text(json.dumps(
            {"results": res, "load": a.load, "started": started, "reps": a.reps,
             "duration": a.duration, "argv": argv, "minutes": minutes}, indent=1))
    write(section(res, a, started, minutes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
