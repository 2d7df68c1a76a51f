#!/usr/bin/env python3
"""bench/adapters.py: our WSGI and ASGI servers against gunicorn and uvicorn, same run.

    bash bench/setup.sh && python3 bench/adapters.py [--seconds 8] [--reps 3]

The same hello-world apps (bench/servers/asgi_hello.py, wsgi_hello.py) are served by
  ours-asgi  python -m cymongoose asgi asgi_hello:app   (bench/.venv-ours, uvloop installed)
  uvicorn    uvicorn asgi_hello:app --loop uvloop --http httptools   (bench/.venv-peers)
  ours-wsgi  python -m cymongoose wsgi wsgi_hello:app --threads 4
  gunicorn   gunicorn -k gthread --threads 4 wsgi_hello:app
each with --workers 1 and 2.  Per configuration and repetition (servers alternated):
`wrk -t1 -c50 -dS`, requests/s, and the server's CPU per request (utime+stime of its whole
process tree from /proc, supervisor and workers included).  Medians of the repetitions go
into bench/RESULTS.md between the "adapters" markers (run.py keeps that section).
Stdlib only; helpers come from bench/run.py.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as harness  # noqa: E402 - bench/run.py, next to this file

BENCH = harness.BENCH
SERVERS_DIR = harness.SERVERS_DIR
OURS = BENCH / ".venv-ours" / "bin"
PEERS = BENCH / ".venv-peers" / "bin"
BEGIN = "<!-- adapters:begin (bench/adapters.py writes this section) -->"
END = "<!-- adapters:end -->"
PORT = 18201
THREADS = 4
CONNS = 50


def argv_for(name: str, workers: int, port: int) -> list[str]:
    listen = f"http://127.0.0.1:{port}"
    quiet = ["--log-level", "warning"]
    w = ["--workers", str(workers)]
    if name == "ours-asgi":
        return [
            str(OURS / "python"),
            "-m",
            "cymongoose",
            "asgi",
            "asgi_hello:app",
            "--listen",
            listen,
            *w,
            *quiet,
        ]
    if name == "ours-wsgi":
        return [
            str(OURS / "python"), "-m", "cymongoose", "wsgi", "wsgi_hello:app",
            "--listen", listen, "--threads", str(THREADS), *w, *quiet,
        ]  # fmt: skip
    if name == "uvicorn":
        return [
            str(PEERS / "uvicorn"), "asgi_hello:app", "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--lifespan", "off", "--no-access-log",
            "--log-level", "warning", "--workers", str(workers),
        ]  # fmt: skip
    if name == "gunicorn":
        return [
            str(PEERS / "gunicorn"), "-k", "gthread", "--threads", str(THREADS), "-w", str(workers),
            "-b", f"127.0.0.1:{port}", "--log-level", "warning", "wsgi_hello:app",
        ]  # fmt: skip
    raise ValueError(name)


def wait_ready(p: subprocess.Popen[bytes], port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise harness.BenchError(f"server exited with {p.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    else:
        raise harness.BenchError(f"no listener on {port}")
    # Every worker up: the hello answers (a few times, so a second worker is ready too).
    for _ in range(20):
        harness.check_hello(port)
    time.sleep(0.5)


def measure(name: str, workers: int, seconds: float, log_dir: Path) -> dict[str, float]:
    log = open(log_dir / f"{name}-w{workers}.log", "ab")  # noqa: SIM115 - closed below
    p = subprocess.Popen(
        argv_for(name, workers, PORT),
        cwd=SERVERS_DIR,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        wait_ready(p, PORT)
        cpu0 = harness.cpu_seconds(p.pid)
        r = harness.run_wrk(PORT, CONNS, seconds, pinned=False)
        cpu1 = harness.cpu_seconds(p.pid)
        if r["non2xx"] or r["socket_errors"]:
            raise harness.BenchError(
                f"{name}: {r['non2xx']} non-2xx, {r['socket_errors']} socket errors"
            )
        return {
            "rps": r["rps"],
            "cpu_us": (cpu1 - cpu0) / r["requests"] * 1e6,
            "p99_us": r["p99_us"],
        }
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        log.close()


PAIRS = [("ours-asgi", "uvicorn"), ("ours-wsgi", "gunicorn")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    a = ap.parse_args()
    log_dir = BENCH / "out" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    workers_list = [int(w) for w in a.workers.split(",")]
    res: dict[tuple[str, int], list[dict[str, float]]] = {}
    started = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()
    for rep in range(a.reps):
        for workers in workers_list:
            for pair in PAIRS:
                order = pair if rep % 2 == 0 else pair[::-1]
                for name in order:
                    m = measure(name, workers, a.seconds, log_dir)
                    res.setdefault((name, workers), []).append(m)
                    rps, cpu = m["rps"], m["cpu_us"]
                    print(f"rep {rep} {name} w{workers}: {rps:.0f} req/s, {cpu:.1f} us/req")
    write(a, res, workers_list, started, load0)
    return 0


def med(xs: list[dict[str, float]], key: str) -> float:
    return statistics.median(x[key] for x in xs)


def write(
    a: argparse.Namespace,
    res: dict[tuple[str, int], list[dict[str, float]]],
    workers_list: list[int],
    started: datetime.datetime,
    load0: tuple[float, float, float],
) -> None:
    git = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH
    )
    lines = [
        BEGIN,
        "## WSGI and ASGI servers (issue 11): ours against gunicorn and uvicorn",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC at `{git.stdout.strip()}`, "
        f"`python3 bench/adapters.py --seconds {a.seconds:g} --reps {a.reps}`; "
        f"load `wrk -t1 -c{CONNS} -d{a.seconds:g}s` unpinned (2 cores shared by wrk and the "
        f"server); load average at start {load0[0]:.2f}. Medians of {a.reps} repetitions, "
        "servers alternated. CPU per request is utime+stime of the server's whole process tree "
        "(supervisor and workers) over the wrk run. Same hello apps "
        f"(`bench/servers/asgi_hello.py`, `wsgi_hello.py`), {THREADS} threads for WSGI.",
        "",
        "| app | workers | server | req/s | CPU µs/req | p99 µs | CPU ratio ours/peer |",
        "|---|---|---|---|---|---|---|",
    ]
    for ours, peer in PAIRS:
        for w in workers_list:
            o, p = res.get((ours, w)), res.get((peer, w))
            if not o or not p:
                continue
            ratio = med(o, "cpu_us") / med(p, "cpu_us")
            kind = ours.split("-")[1].upper()
            for name, xs in ((ours, o), (peer, p)):
                label = {"ours-asgi": "cymongoose asgi", "ours-wsgi": "cymongoose wsgi"}.get(
                    name, name
                )
                if name == "uvicorn":
                    label = "uvicorn+httptools+uvloop"
                if name == "gunicorn":
                    label = "gunicorn gthread"
                lines.append(
                    f"| {kind} | {w} | {label} | {med(xs, 'rps'):.0f} | {med(xs, 'cpu_us'):.1f} | "
                    f"{med(xs, 'p99_us'):.0f} | {f'**{ratio:.2f}**' if name == ours else ''} |"
                )
    lines += [
        "",
        "Goal (issue 11): CPU per request <= 0.5x uvicorn+httptools+uvloop's (ASGI) and <= 0.5x "
        "gunicorn gthread's (WSGI). Our ASGI server runs the Manager inside the asyncio loop "
        "(uvloop) on one thread: a request is parsed in C, the app runs as a task, the response "
        "(head built in C by `Connection.http_response`) is written straight into the connection "
        "and flushed once per asyncio iteration. Our WSGI "
        "server hands each request to a worker thread and gets the response back as one wakeup.",
        END,
    ]
    section = "\n".join(lines)
    out = Path(a.out)
    text = out.read_text() if out.exists() else ""
    i, j = text.find(BEGIN), text.find(END)
    if 0 <= i < j:
        text = text[:i] + section + text[j + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
