#!/usr/bin/env python3
"""bench/ws_bench.py: the WebSocket benchmark; writes the WebSocket section of bench/RESULTS.md.

    python3 bench/ws_bench.py [--quick] [--reps N] [--duration S] [--servers ours,orig,websockets]

Run after bench/setup.sh (it makes the venvs).  Stdlib only; it borrows the process and
/proc helpers of bench/run.py.

Servers (one at a time, on 127.0.0.1), each echoing every message back:
  ours        bench/servers/cm_ws_echo.py under bench/.venv-ours (our package)
  orig        the same script under bench/.venv-orig (the original cymongoose 0.2.5)
  websockets  bench/servers/websockets_echo.py under bench/.venv-peers (asyncio)

Load: bench/ws_load.py in its own process, 50 connections, 1 KiB text messages, 16 in flight
per connection; the server pinned to CPU 1 and the client to CPU 0 (taskset).  Measured:
echoed messages per second, and the server's CPU time (utime + stime from /proc) per
message over the same window.  Servers alternate within each repetition; the median of the
repetitions is reported, with ratios to the original and to websockets.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as base  # noqa: E402  (bench/run.py: Proc, cpu_seconds, venv_python, ...)

BENCH = base.BENCH
CONNS, WINDOW, MSG_BYTES = 50, 16, 1024
BEGIN = "<!-- ws:begin (bench/ws_bench.py writes this section; run.py keeps it) -->"
END = "<!-- ws:end -->"
SERVERS = {
    "ours": ("cymongoose (ours)", 18111, "ours", "cm_ws_echo.py"),
    "orig": ("cymongoose 0.2.5 (original)", 18112, "orig", "cm_ws_echo.py"),
    "websockets": ("websockets 15 (asyncio)", 18113, "peers", "websockets_echo.py"),
}


def one_run(name: str, warmup: float, seconds: float) -> dict:
    label, port, venv, script = SERVERS[name]
    argv = [str(base.venv_python(venv)), str(base.SERVERS_DIR / script), str(port)]
    if base.port_in_use(port):
        raise base.BenchError(f"port {port} is already in use")
    proc = base.Proc(argv, f"ws-{name}", base.SERVER_CPU)
    try:
        base.wait_port(proc, port)
        load = subprocess.Popen(
            [
                "taskset",
                "-c",
                base.WRK_CPU,
                sys.executable,
                str(BENCH / "ws_load.py"),
                str(port),
                str(CONNS),
                str(warmup),
                str(seconds),
                str(WINDOW),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = load.stdout.readline()
        if line.strip() != "go":
            load.kill()
            raise base.BenchError(f"load client: {line!r} {load.stderr.read()[-400:]}")
        cpu0, t0 = base.cpu_seconds(proc.pid), time.monotonic()
        out = load.stdout.readline()
        cpu1, t1 = base.cpu_seconds(proc.pid), time.monotonic()
        load.wait(30)
        res = json.loads(out)
    finally:
        proc.stop()
    msgs = res["messages"]
    return {
        "msgs_per_s": msgs / res["seconds"],
        "cpu_us_per_msg": (cpu1 - cpu0) * 1e6 / msgs if msgs else float("nan"),
        "cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "errors": res["errors"],
    }


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def report(results: dict, args: argparse.Namespace, started: str, load: str) -> str:
    flags = " ".join(sys.argv[1:]) or "(none)"
    lines = [
        BEGIN,
        "## WebSocket echo",
        "",
        f"Run: {started} UTC by `python3 bench/ws_bench.py` (flags: `{flags}`); "
        f"load average at start: {load}.",
        "",
        f"{CONNS} connections, {MSG_BYTES}-byte text messages, {WINDOW} in flight per connection; "
        f"the client (`bench/ws_load.py`, stdlib) in its own process on CPU {base.WRK_CPU}, the "
        f"server on CPU {base.SERVER_CPU}; {args.duration:g} s measured after {args.warmup:g} s "
        f"of warm-up, median of {args.reps} repetition(s), servers alternated.  Server CPU per "
        "message: utime + stime of the server process over the measured window, divided by "
        "the messages echoed in it.",
        "",
        "| server | messages/s | server CPU µs/msg | server CPU busy | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rows in results.items():
        lines.append(
            f"| {SERVERS[name][0]} | {median(rows, 'msgs_per_s'):,.0f} | "
            f"{median(rows, 'cpu_us_per_msg'):.2f} | {median(rows, 'cpu_share'):.0%} | "
            f"{sum(r['errors'] for r in rows)} |"
        )
    lines.append("")
    if "ours" in results:
        ours = results["ours"]
        if "orig" in results:
            r = median(ours, "cpu_us_per_msg") / median(results["orig"], "cpu_us_per_msg")
            lines.append(
                f"- server CPU per message, ours / original: **{r:.2f}x** (target ≤ 0.75x)"
            )
            r = median(ours, "msgs_per_s") / median(results["orig"], "msgs_per_s")
            lines.append(f"- messages/s, ours / original: {r:.2f}x")
        if "websockets" in results:
            r = median(ours, "msgs_per_s") / median(results["websockets"], "msgs_per_s")
            lines.append(f"- messages/s, ours / websockets: **{r:.2f}x** (target ≥ 2x)")
            r = median(ours, "cpu_us_per_msg") / median(results["websockets"], "cpu_us_per_msg")
            lines.append(f"- server CPU per message, ours / websockets: {r:.2f}x")
    lines += ["", "Per repetition (messages/s, CPU µs/msg):", ""]
    for name, rows in results.items():
        reps = ", ".join(f"{r['msgs_per_s']:,.0f} / {r['cpu_us_per_msg']:.2f}" for r in rows)
        lines.append(f"- {name}: {reps}")
    lines.append(END)
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else "# cymongoose benchmarks\n"
    i, j = text.find(BEGIN), text.find(END)
    if 0 <= i < j:
        text = text[:i] + section + text[j + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 s runs, 1 repetition")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    p.add_argument("--duration", type=float, default=None, help="measured seconds (default 8)")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--servers", default="ours,orig,websockets")
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    args = p.parse_args()
    args.reps = args.reps or (1 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 8.0)
    names = [n for n in args.servers.split(",") if n]
    started = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}"
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    results: dict = {n: [] for n in names}
    for rep in range(args.reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            res = one_run(name, args.warmup, args.duration)
            base.log(
                f"ws rep {rep + 1} {name}: {res['msgs_per_s']:,.0f} msg/s, "
                f"{res['cpu_us_per_msg']:.2f} µs CPU/msg"
            )
            results[name].append(res)
    section = report(results, args, started, load)
    write_section(Path(args.out), section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
