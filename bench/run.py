#!/usr/bin/env python3
"""bench/run.py: benchmark cymongoose (ours) against its peers; write bench/RESULTS.md.

Run through bench/run.sh (`make bench`), which first runs bench/setup.sh.  Stdlib only.

Servers (each on its own port, one at a time, all on 127.0.0.1):
  ours     bench/servers/cm_hello.py under bench/.venv-ours (our package)
  orig     the same script under bench/.venv-orig (the original cymongoose 0.2.5)
  nginx    bench/servers/nginx.conf.in, one worker
  uvicorn  bench/servers/uvicorn_hello.py (httptools + uvloop)
  aiohttp  bench/servers/aiohttp_hello.py (asyncio's default loop)

Measurements (--only selects; default all):
  http       wrk -t1 -c{1,50,200} --latency, unpinned and pinned (taskset: wrk on CPU 0,
             the server on CPU 1), servers alternated within each repetition, median of the
             repetitions; server CPU per request from /proc/PID/stat; paired ratio to nginx.
  wakeup     bench/servers/wakeup_bench.py: 4 threads x 64-byte wakeups (ours, orig).
  memory     RSS growth of the server with 5,000 idle keep-alive connections (all servers).
  iteration  bench/servers/iter_bench.py: mean time of poll(0) with 10 / 1,000 / 10,000 idle
             connections and one busy one (ours, orig).

"ours" is skipped, with the reason in RESULTS.md, when its venv cannot import a cymongoose
that has a Manager or when it does not serve the hello world, unless --servers names it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
SERVERS_DIR = BENCH / "servers"
BODY = b'{"hello":"world"}'
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE = 20000
WRK_CPU, SERVER_CPU = "0", "1"
CONCURRENCY = (1, 50, 200)
IDLE_COUNTS = (10, 1000, 10000)
MEMORY_CONNS = 5000
WAKEUP_THREADS = 4
ALL_SERVERS = ("ours", "orig", "nginx", "uvicorn", "aiohttp")
CM_SERVERS = ("ours", "orig")
ALL_TESTS = ("http", "wakeup", "memory", "iteration")
PROFILE_BEGIN = "<!-- profile:begin (hand-written; run.py keeps this section) -->"
PROFILE_END = "<!-- profile:end -->"
ADAPTERS_BEGIN = "<!-- adapters:begin (bench/adapters.py writes this section) -->"
ADAPTERS_END = "<!-- adapters:end -->"


class BenchError(Exception):
    """A server or a load generator failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- servers -------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    label: str
    port: int
    python: Path | None = None  # None: nginx
    script: str = "cm_hello.py"

    def argv(self) -> list[str]:
        if self.python is None:
            prefix = render_nginx_conf(self.port)
            return ["nginx", "-p", str(prefix), "-c", "nginx.conf", "-e", str(prefix / "error.log")]
        return [str(self.python), str(SERVERS_DIR / self.script), str(self.port)]


def make_servers(ours_python: Path) -> dict[str, Server]:
    peers = BENCH / ".venv-peers/bin/python"
    return {
        "ours": Server("ours", "cymongoose (ours)", 18101, ours_python),
        "orig": Server("orig", "cymongoose 0.2.5 (original)", 18102, venv_python("orig")),
        "nginx": Server("nginx", "nginx", 18103),
        "uvicorn": Server("uvicorn", "uvicorn+httptools+uvloop", 18104, peers, "uvicorn_hello.py"),
        "aiohttp": Server("aiohttp", "aiohttp", 18105, peers, "aiohttp_hello.py"),
    }


def venv_python(name: str) -> Path:
    return BENCH / f".venv-{name}" / "bin" / "python"


def render_nginx_conf(port: int) -> Path:
    prefix = OUT / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    text = (SERVERS_DIR / "nginx.conf.in").read_text()
    text = text.replace("@PORT@", str(port)).replace("@PREFIX@", str(prefix))
    (prefix / "nginx.conf").write_text(text)
    return prefix


class Proc:
    """A process this run started, in its own session; stop() ends exactly that group."""

    def __init__(self, argv: list[str], name: str, cpu: str | None = None, stdout=None):
        if cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]  # taskset execs: the pid is the server's
        self.argv = argv
        self.log_path = OUT / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.log.write(f"\n=== {datetime.datetime.now():%H:%M:%S} {' '.join(argv)}\n".encode())
        self.log.flush()
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.log if stdout is None else stdout,
            stderr=self.log,
            start_new_session=True,
            cwd=ROOT,
        )
        self.pid = self.p.pid

    def log_tail(self, n: int = 15) -> str:
        self.log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.p.wait(10)
        self.log.close()


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(proc: Proc, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.p.poll() is not None:
            raise BenchError(f"exited with {proc.p.returncode}:\n{proc.log_tail()}")
        if port_in_use(port):
            return
        time.sleep(0.05)
    raise BenchError(f"did not listen on port {port} within {timeout:.0f} s:\n{proc.log_tail()}")


def check_hello(port: int) -> None:
    """Two keep-alive GET / on one connection: 200, the JSON body, application/json."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        for _ in range(2):
            conn.request("GET", "/")
            r = conn.getresponse()
            body = r.read()
            ctype = r.getheader("Content-Type", "")
            if r.status != 200 or body != BODY or not ctype.startswith("application/json"):
                raise BenchError(f"bad hello response: {r.status} {ctype!r} {body[:80]!r}")
            if r.will_close:
                raise BenchError("the hello response closes the connection (no keep-alive)")
    except (OSError, http.client.HTTPException) as e:
        raise BenchError(f"hello request failed: {e!r}") from e
    finally:
        conn.close()


@contextlib.contextmanager
def started(server: Server, pinned: bool = False, **kw) -> Iterator[Proc]:
    if port_in_use(server.port):
        raise BenchError(f"port {server.port} is already in use by another process")
    argv = kw.pop("argv", None) or server.argv()
    proc = Proc(argv, kw.pop("log_name", server.name), SERVER_CPU if pinned else None, **kw)
    try:
        wait_port(proc, server.port)
        yield proc
    finally:
        proc.stop()


# --- /proc readings over the server's process tree ---------------------------------------


def tree(pid: int) -> list[int]:
    """pid and all its descendants (nginx: master + worker)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process tree (all threads), in seconds."""
    ticks = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / CLK_TCK


def rss_kib(pid: int) -> int:
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text(), re.M)
            total += int(m.group(1)) if m else 0
    return total


def socket_fds(pid: int) -> int:
    n = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    n += os.readlink(f"/proc/{p}/fd/{fd}").startswith("socket:")
    return n


# --- wrk -------------------------------------------------------------------------------

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def wrk_argv(port: int, conns: int, seconds: float, pinned: bool) -> list[str]:
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--latency", f"http://127.0.0.1:{port}/"]
    return ["taskset", "-c", WRK_CPU, *argv] if pinned else argv


def to_us(value: str, unit: str) -> float:
    return float(value) * UNITS[unit]


def parse_wrk(text: str) -> dict:
    def grab(pattern: str) -> re.Match:
        m = re.search(pattern, text, re.M)
        if not m:
            raise BenchError(f"unexpected wrk output (no {pattern!r}):\n{text}")
        return m

    p50 = grab(r"^\s+50%\s+([\d.]+)(us|ms|s|m|h)\s*$")
    p99 = grab(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": float(grab(r"^Requests/sec:\s+([\d.]+)").group(1)),
        "requests": int(grab(r"^\s+(\d+) requests in ([\d.]+)(\w+)").group(1)),
        "p50_us": to_us(*p50.groups()),
        "p99_us": to_us(*p99.groups()),
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def run_wrk(port: int, conns: int, seconds: float, pinned: bool) -> dict:
    argv = wrk_argv(port, conns, seconds, pinned)
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from e
    if r.returncode != 0:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stderr or r.stdout}")
    return parse_wrk(r.stdout)


# --- the measurements ------------------------------------------------------------------


@dataclass
class Run:
    args: argparse.Namespace
    servers: dict[str, Server]
    selected: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)

    def fail(self, what: str, e: Exception) -> None:
        msg = f"{what}: {e}"
        log(f"ERROR {msg}")
        self.errors.append(msg)


def bench_http(run: Run) -> dict:
    a = run.args
    names = run.selected
    # res[variant][server][conns] = list of per-repetition dicts
    res: dict = {v: {s: {c: [] for c in CONCURRENCY} for s in names} for v in a.variants}
    for rep in range(a.reps):
        k = rep % len(names)
        order = names[k:] + names[:k]  # alternate the order between repetitions
        for variant in a.variants:
            for name in order:
                server = run.servers[name]
                pinned = variant == "pinned"
                log(f"http rep {rep + 1}/{a.reps} {variant}: {name}")
                try:
                    with started(server, pinned) as proc:
                        check_hello(server.port)
                        if a.warmup > 0:
                            run_wrk(server.port, 50, a.warmup, pinned)
                        for c in CONCURRENCY:
                            before = cpu_seconds(proc.pid)
                            r = run_wrk(server.port, c, a.duration, pinned)
                            cpu = cpu_seconds(proc.pid) - before
                            r["cpu_us_per_req"] = cpu * 1e6 / max(r["requests"], 1)
                            r["rep"] = rep
                            res[variant][name][c].append(r)
                            log(
                                f"  -c{c}: {r['rps']:.0f} req/s, p50 {r['p50_us']:.0f} us, "
                                f"p99 {r['p99_us']:.0f} us, {r['cpu_us_per_req']:.1f} us CPU/req"
                            )
                except BenchError as e:
                    run.fail(f"http {variant} rep {rep + 1} {name}", e)
    return res


def bench_wakeup(run: Run) -> dict:
    a = run.args
    res: dict = {}
    for name in [s for s in run.selected if s in CM_SERVERS]:
        server = run.servers[name]
        res[name] = []
        for rep in range(a.reps):
            argv = [
                str(server.python),
                str(SERVERS_DIR / "wakeup_bench.py"),
                str(server.port),
                str(a.wakeup_count),
                str(WAKEUP_THREADS),
                str(a.wakeup_seconds),
            ]
            log(f"wakeup rep {rep + 1}/{a.reps}: {name}")
            try:
                res[name].append(run_json_script(argv, f"wakeup-{name}", a.wakeup_seconds + 60))
                r = res[name][-1]
                log(
                    f"  delivered {r['delivered']}/{r['sent']} in {r['seconds']:.2f} s: "
                    f"{r['per_second']:.0f}/s"
                )
            except BenchError as e:
                run.fail(f"wakeup {name}", e)
    return res


def run_json_script(argv: list[str], name: str, timeout: float) -> dict:
    proc = Proc(argv, name, stdout=subprocess.PIPE)
    try:
        out, _ = proc.p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{name} did not finish within {timeout:.0f} s") from e
    finally:
        proc.stop()
    if proc.p.returncode != 0 or not out.strip():
        raise BenchError(f"{name} failed ({proc.p.returncode}):\n{proc.log_tail()}")
    return json.loads(out.decode().strip().splitlines()[-1])


def open_idle(proc: Proc, port: int, n: int, batch: int = 100) -> list[socket.socket]:
    """n connections to port, opened in batches; each batch is waited for until the server
    holds that many more sockets (it accepted them), so no listen backlog overflows."""
    base = socket_fds(proc.pid)
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            for _ in range(min(batch, n - len(socks))):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                # RST on close: no TIME_WAIT pile-up between runs.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                socks.append(s)
            deadline = time.monotonic() + 60
            while socket_fds(proc.pid) < base + len(socks):
                if proc.p.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(
                        f"the server accepted {socket_fds(proc.pid) - base} of {len(socks)} "
                        f"connections:\n{proc.log_tail()}"
                    )
                time.sleep(0.01)
    except BaseException:
        close_all(socks)
        raise
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def one_request_each(socks: list[socket.socket], timeout: float = 120.0) -> None:
    """Send GET / on every connection and read each whole response (keep-alive)."""
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sel = selectors.DefaultSelector()
    got: dict[int, bytes] = {}
    for s in socks:
        s.sendall(req)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        got[s.fileno()] = b""
    pending = len(socks)
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise BenchError(f"{pending} of {len(socks)} responses missing after {timeout} s")
            for key, _ in sel.select(1.0):
                s = key.fileobj
                data = s.recv(4096)
                if not data:
                    raise BenchError("the server closed an idle test connection")
                got[s.fileno()] += data
                if got[s.fileno()].endswith(BODY):
                    sel.unregister(s)
                    pending -= 1
    finally:
        sel.close()
        for s in socks:
            s.setblocking(True)


def bench_memory(run: Run) -> dict:
    a = run.args
    res: dict = {}
    for name in run.selected:
        server = run.servers[name]
        log(f"memory: {name}, {a.memory_conns} idle connections")
        try:
            with started(server, log_name=f"memory-{name}") as proc:
                check_hello(server.port)
                time.sleep(0.5)
                base = rss_kib(proc.pid)
                socks = open_idle(proc, server.port, a.memory_conns)
                try:
                    time.sleep(1.0)
                    connected = rss_kib(proc.pid)
                    one_request_each(socks)
                    time.sleep(1.0)
                    after = rss_kib(proc.pid)
                finally:
                    close_all(socks)
            n = a.memory_conns
            res[name] = {
                "connections": n,
                "rss_base_kib": base,
                "rss_connected_kib": connected,
                "rss_after_request_kib": after,
                "bytes_per_conn_connected": (connected - base) * 1024 / n,
                "bytes_per_conn_after_request": (after - base) * 1024 / n,
            }
            r = res[name]
            log(
                f"  {r['bytes_per_conn_connected']:.0f} B/conn connected, "
                f"{r['bytes_per_conn_after_request']:.0f} B/conn after one request"
            )
        except (BenchError, OSError) as e:
            run.fail(f"memory {name}", e)
    return res


def iter_argv(server: Server, a: argparse.Namespace) -> list[str]:
    script = SERVERS_DIR / "iter_bench.py"
    return [
        str(server.python),
        str(script),
        str(server.port),
        str(a.iterations),
        str(a.iter_seconds),
    ]


def bench_iteration(run: Run) -> dict:
    a = run.args
    res: dict = {}
    for name in [s for s in run.selected if s in CM_SERVERS]:
        server = run.servers[name]
        res[name] = {}
        for n in IDLE_COUNTS:
            log(f"iteration: {name}, {n} idle + 1 busy connection")
            try:
                kw = {"argv": iter_argv(server, a), "log_name": f"iter-{name}"}
                with started(server, stdout=subprocess.PIPE, **kw) as proc:
                    socks = open_idle(proc, server.port, n)
                    # The busy connection: sequential keep-alive requests, stopped (by its
                    # pid) once iter_bench.py has printed its result.
                    busy = Proc(wrk_argv(server.port, 1, 600, False), f"iter-wrk-{name}")
                    try:
                        out, _ = proc.p.communicate(timeout=600)
                    finally:
                        busy.stop()
                        close_all(socks)
                if proc.p.returncode != 0 or not out.strip():
                    raise BenchError(f"iter_bench failed ({proc.p.returncode})")
                r = json.loads(out.decode().strip().splitlines()[-1])
                res[name][n] = r
                log(
                    f"  {r['iterations']} iterations: mean {r['mean_us']:.1f} us, median "
                    f"{r['median_us']:.1f} us, {100 * r['busy_fraction']:.0f}% served a request"
                )
            except (BenchError, OSError, subprocess.TimeoutExpired) as e:
                run.fail(f"iteration {name} {n}", e)
    return res


# --- pre-flight ------------------------------------------------------------------------


def ours_problem(python: Path) -> str | None:
    if not python.exists():
        return f"{python} does not exist (bench/setup.sh makes it)"
    failed = python.parent.parent / ".build-failed"
    if failed.exists():
        return failed.read_text().strip()
    probe = "import cymongoose as m; m.Manager; m.MG_EV_HTTP_MSG; m.MG_EV_WAKEUP; m.Manager.run"
    r = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd="/")
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"its cymongoose is not usable yet ({last})"
    return None


def preflight(run: Run, explicit: bool) -> None:
    """Every selected server must start and serve the hello world; "ours" is skipped with
    the reason unless it was asked for by name."""
    for name in list(run.selected):
        server = run.servers[name]
        problem = ours_problem(server.python) if name == "ours" else None
        if problem is None:
            try:
                with started(server, log_name=f"preflight-{name}"):
                    check_hello(server.port)
                continue
            except BenchError as e:
                problem = str(e)
        if name == "ours" and not explicit:
            log(f"SKIPPING ours: {problem}")
            run.skipped[name] = problem
            run.selected.remove(name)
        else:
            sys.exit(f"bench: {name} is not usable: {problem}")


# --- machine and versions ----------------------------------------------------------------


def cmd_out(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({e})"


def machine_info() -> dict:
    lscpu = dict(
        (k.strip(), v.strip())
        for k, _, v in (line.partition(":") for line in cmd_out(["lscpu"]).splitlines())
    )
    os_release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)', os_release, re.M)
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
    keys = (
        "Model name",
        "CPU(s)",
        "Thread(s) per core",
        "Core(s) per socket",
        "CPU max MHz",
        "L2 cache",
        "L3 cache",
        "Hypervisor vendor",
    )
    return {
        "cpu": {k: lscpu[k] for k in keys if k in lscpu},
        "kernel": cmd_out(["uname", "-srvm"]),
        "os": m.group(1) if m else "?",
        "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def pkg_versions(python: Path, names: list[str]) -> dict:
    code = (
        "import json, sys, importlib.metadata as m\n"
        "v = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: v[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: v[n] = None\n"
        "v['python'] = sys.version.split()[0]\n"
        "v['interpreter'] = __import__('os').path.realpath(sys._base_executable)\n"
        "print(json.dumps(v))"
    )
    try:
        r = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True)
        return json.loads(r.stdout)
    except (OSError, ValueError):
        return {}


def versions(run: Run) -> dict:
    git = cmd_out(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"])
    changed = cmd_out(["git", "-C", str(ROOT), "status", "--porcelain"]).splitlines()
    if changed:  # setup.sh builds the working tree, not the commit
        git += f" + {len(changed)} uncommitted path(s)"
    wrk = cmd_out(["wrk", "-v"]).splitlines()
    return {
        "nginx": cmd_out(["nginx", "-v"]).split("/")[-1],
        "wrk": wrk[0] if wrk else "?",
        "ours": {**pkg_versions(run.servers["ours"].python, ["cymongoose"]), "git": git},
        "orig": pkg_versions(venv_python("orig"), ["cymongoose"]),
        "peers": pkg_versions(venv_python("peers"), ["uvicorn", "httptools", "uvloop", "aiohttp"]),
        "driver_python": sys.version.split()[0],
    }


# --- RESULTS.md ------------------------------------------------------------------------


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fnum(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def flat(x: float | None) -> str:
    """A latency or CPU time in µs: one decimal below 100."""
    return fnum(x, 1 if x is not None and x < 100 else 0)


def http_summary(res: dict, variant: str, name: str, c: int) -> dict:
    runs = res[variant][name][c]
    nginx = {r["rep"]: r["rps"] for r in res[variant].get("nginx", {}).get(c, [])}
    ratios = [r["rps"] / nginx[r["rep"]] for r in runs if nginx.get(r["rep"])]
    return {
        "n": len(runs),
        "rps": med([r["rps"] for r in runs]),
        "ratio": med(ratios),
        "p50_us": med([r["p50_us"] for r in runs]),
        "p99_us": med([r["p99_us"] for r in runs]),
        "cpu_us": med([r["cpu_us_per_req"] for r in runs]),
        "errors": sum(r["socket_errors"] + r["non2xx"] for r in runs),
    }


def md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(head) - 1)
    return [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def section_http(run: Run, res: dict) -> list[str]:
    a = run.args
    out = [
        "## HTTP hello world (wrk)",
        "",
        f"`wrk -t1 -cN -d{a.duration:g}s --latency http://127.0.0.1:PORT/`, N = 1, 50, 200; "
        f"a {a.warmup:g} s warm-up at -c50 after each server start (not counted); "
        f"median of {a.reps} repetition(s); servers alternated within each repetition. "
        "**vs nginx**: requests/s divided by nginx's in the same repetition (median of those "
        "ratios). **CPU/req**: the server's utime+stime (whole process tree, all threads; "
        f"/proc/PID/stat, {1e6 / CLK_TCK:,.0f} µs ticks) during the run divided by the "
        "requests wrk completed. **errors**: wrk socket errors + non-2xx responses.",
    ]
    for variant in a.variants:
        how = (
            f"wrk on CPU {WRK_CPU}, the server on CPU {SERVER_CPU} (`taskset -c`)"
            if variant == "pinned"
            else "no pinning: the scheduler places wrk and the server"
        )
        out += ["", f"### {variant}: {how}"]
        for c in CONCURRENCY:
            rows = []
            for name in run.selected:
                s = http_summary(res, variant, name, c)
                if not s["n"]:
                    rows.append([run.servers[name].label, "failed", "", "", "", "", ""])
                    continue
                rows.append(
                    [
                        run.servers[name].label,
                        fnum(s["rps"]),
                        fnum(s["ratio"], 2),
                        flat(s["p50_us"]),
                        flat(s["p99_us"]),
                        fnum(s["cpu_us"], 1),
                        str(s["errors"]),
                    ]
                )
            head = [f"-c{c}", "req/s", "vs nginx", "p50 µs", "p99 µs", "CPU µs/req", "errors"]
            out += ["", *md_table(head, rows)]
    return out


def section_wakeup(run: Run, res: dict) -> list[str]:
    a = run.args
    rows = []
    for name, runs in res.items():
        if not runs:
            rows.append([run.servers[name].label, "failed", "", "", "", "", ""])
            continue

        def m(key: str, runs=runs) -> float | None:
            return med([r[key] for r in runs])

        rows.append(
            [
                run.servers[name].label,
                fnum(m("per_second")),
                fnum(m("delivered")),
                fnum(m("accepted")),
                fnum(m("sent")),
                fnum(med([100 * (1 - r["delivered"] / r["sent"]) for r in runs]), 1),
                fnum(m("send_seconds"), 2),
            ]
        )
    return [
        "## Wakeup throughput",
        "",
        f"`bench/servers/wakeup_bench.py PORT {a.wakeup_count} {WAKEUP_THREADS} "
        f"{a.wakeup_seconds:g}`: {WAKEUP_THREADS} threads each send {a.wakeup_count:,} "
        "64-byte `wakeup()`s to one connection (a listener) as fast as they can; the poll "
        "thread counts the MG_EV_WAKEUP events that arrive with the right payload. "
        "**delivered/s** = delivered / (time of the last delivery − start). The run ends when "
        "all accepted wakeups arrived, 1 s after the senders finished with nothing arriving, "
        f"or after {a.wakeup_seconds:g} s. The original drops wakeups silently (UDP "
        "socketpair, one per iteration) while `wakeup()` returns True; **lost** counts them; "
        f"**send s**: how long the senders took. Median of {a.reps} run(s).",
        "",
        *md_table(
            ["server", "delivered/s", "delivered", "wakeup() True", "sent", "lost %", "send s"],
            rows,
        ),
    ]


def section_memory(run: Run, res: dict) -> list[str]:
    a = run.args
    rows = []
    for name in run.selected:
        r = res.get(name)
        if r is None:
            rows.append([run.servers[name].label, "failed", "", "", ""])
            continue
        rows.append(
            [
                run.servers[name].label,
                fnum(r["rss_base_kib"] / 1024, 1),
                fnum(r["bytes_per_conn_connected"]),
                fnum(r["bytes_per_conn_after_request"]),
                fnum(r["rss_after_request_kib"] / 1024, 1),
            ]
        )
    return [
        "## Memory per idle connection",
        "",
        f"{a.memory_conns:,} keep-alive TCP connections to the hello server, opened in "
        "batches of 100 (each batch waited for until the server holds its sockets, "
        "/proc/PID/fd). RSS is VmRSS of the server's process tree. **connected**: "
        "(RSS with the idle connections − RSS before) / connections, before any request; "
        "**after 1 request**: the same after each connection sent one GET / and read the "
        "response (the usual idle keep-alive state). RLIMIT_NOFILE is raised to "
        f"{NOFILE:,} for the client and the servers.",
        "",
        *md_table(
            [
                "server",
                "RSS before MiB",
                "B/conn connected",
                "B/conn after 1 request",
                "RSS after MiB",
            ],
            rows,
        ),
    ]


def section_iteration(run: Run, res: dict) -> list[str]:
    a = run.args
    rows = []
    for name, by_n in res.items():
        base = by_n.get(IDLE_COUNTS[0])
        for n in IDLE_COUNTS:
            r = by_n.get(n)
            if r is None:
                rows.append([run.servers[name].label, f"{n:,}", "failed", "", "", "", "", "", ""])
                continue
            rows.append(
                [
                    run.servers[name].label,
                    f"{n:,}",
                    fnum(r["iterations"]),
                    flat(r["mean_us"]),
                    flat(r["median_us"]),
                    flat(r["empty_mean_us"]),
                    flat(r["busy_mean_us"]),
                    fnum(100 * r["busy_fraction"]),
                    fnum(r["mean_us"] / base["mean_us"], 2) if base else "–",
                ]
            )
    head = [
        "server",
        "idle conns",
        "iterations",
        "mean µs",
        "median µs",
        "empty µs",
        "busy µs",
        "busy %",
        "mean ÷ 10-idle",
    ]
    return [
        "## Cost of one poll iteration",
        "",
        f"`bench/servers/iter_bench.py PORT {a.iterations} {a.iter_seconds:g}`: run.py opens "
        "N idle connections to it, then one busy connection (`wrk -t1 -c1`, sequential "
        "keep-alive GET /). After 200 requests the server times its own `mgr.poll(0)` calls "
        f"(perf_counter_ns around each), at least {a.iterations:,} of them and for at least "
        f"{a.iter_seconds:g} s. **empty** / **busy**: mean of the iterations that served no "
        "request / at least one; **busy %**: their share. Every connection gets MG_EV_POLL, "
        "so the original's cost grows with N.",
        "",
        *md_table(head, rows),
    ]


def targets(run: Run) -> list[str]:
    """The numbers issue 4's 'Done when' asks for, when ours and the original were measured."""
    r = run.results
    if "ours" not in run.selected or "orig" not in run.selected:
        return []
    rows = []

    def row(what: str, value: float | None, goal: str, ok: bool | None) -> None:
        verdict = "–" if ok is None else ("yes" if ok else "**no**")
        rows.append([what, fnum(value, 3), goal, verdict])

    for variant in run.args.variants if "http" in r else ():
        ours50 = http_summary(r["http"], variant, "ours", 50)
        orig50 = http_summary(r["http"], variant, "orig", 50)
        ours1 = http_summary(r["http"], variant, "ours", 1)
        orig1 = http_summary(r["http"], variant, "orig", 1)
        x = ours50["cpu_us"] / orig50["cpu_us"] if ours50["cpu_us"] and orig50["cpu_us"] else None
        ok = None if x is None else x <= 0.75
        row(f"{variant}: CPU/req ours ÷ original, -c50", x, "≤ 0.75", ok)
        x = ours50["ratio"]
        row(f"{variant}: req/s ours ÷ nginx, -c50", x, "≥ 0.95", None if x is None else x >= 0.95)
        x = ours1["p50_us"] / orig1["p50_us"] if ours1["p50_us"] and orig1["p50_us"] else None
        row(f"{variant}: p50 ours ÷ original, -c1", x, "≤ 1", None if x is None else x <= 1)
    if r.get("wakeup", {}).get("ours") and r["wakeup"].get("orig"):
        ours = med([x["per_second"] for x in r["wakeup"]["ours"]])
        orig = med([x["per_second"] for x in r["wakeup"]["orig"]])
        x = ours / orig if orig else None
        row("wakeup delivered/s ours ÷ original", x, "≥ 3", None if x is None else x >= 3)
    if r.get("memory", {}).get("ours") and r["memory"].get("orig"):
        for k, label in (("connected", "connected"), ("after_request", "after 1 request")):
            o, g = r["memory"]["ours"], r["memory"]["orig"]
            key = f"bytes_per_conn_{k}"
            x = o[key] / g[key] if g[key] > 0 else None
            row(f"memory/conn ours ÷ original ({label})", x, "≤ 1", None if x is None else x <= 1)
    it = r.get("iteration", {}).get("ours", {})
    if it.get(IDLE_COUNTS[0]) and it.get(IDLE_COUNTS[-1]):
        x = it[IDLE_COUNTS[-1]]["mean_us"] / it[IDLE_COUNTS[0]]["mean_us"]
        row("ours: poll iteration, 10,000 idle ÷ 10 idle", x, "< 2", x < 2)
    if not rows:
        return []
    return [
        "## Targets (issue 4, 'Done when')",
        "",
        *md_table(["measure", "value", "goal", "met"], rows),
    ]


def kept_profile(path: Path) -> str:
    if path.exists():
        text = path.read_text()
        i, j = text.find(PROFILE_BEGIN), text.find(PROFILE_END)
        if 0 <= i < j:
            return text[i : j + len(PROFILE_END)]
    return "\n".join(
        [
            PROFILE_BEGIN,
            "## Profile",
            "",
            "_To be written by hand (run.py keeps this section when it regenerates the file):_",
            "where our remaining microseconds per request go (`perf record -g` on the server "
            "during `wrk -c50`, `valgrind --tool=callgrind` on a bounded run), how many times "
            "each request enters Python, and what would take us below nginx's CPU per request.",
            PROFILE_END,
        ]
    )


def kept_adapters(path: Path) -> str:
    """The section bench/adapters.py wrote (WSGI/ASGI against gunicorn/uvicorn), kept."""
    text = path.read_text() if path.exists() else ""
    i, j = text.find(ADAPTERS_BEGIN), text.find(ADAPTERS_END)
    return text[i : j + len(ADAPTERS_END)] if 0 <= i < j else ""


def write_report(run: Run, machine: dict, vers: dict, started_at: str, seconds: float) -> None:
    a = run.args
    out_path = Path(a.out)
    profile = kept_profile(out_path)
    adapters = kept_adapters(out_path)
    cpu = machine["cpu"]
    peers = vers["peers"]
    lines = [
        "# cymongoose benchmarks",
        "",
        "Generated by `bench/run.py` (run through `make bench` = `bash bench/run.sh`); only the "
        "Profile section is written by hand. Raw numbers: `bench/out/results.json`; server "
        "logs: `bench/out/logs/`.",
        "",
    ]
    if a.quick:
        lines += [
            "> **QUICK SMOKE RUN (`--quick`): short runs, one repetition. These numbers only "
            "show that the harness works; they are not a measurement.**",
            "",
        ]
    lines += [
        f"Run: {started_at}, {seconds / 60:.1f} min; flags: `{' '.join(a.argv) or '(none)'}`; "
        f"load average at start: {' '.join(machine['loadavg_start'])}.",
        "",
        "## Machine",
        "",
        f"- CPU: {cpu.get('Model name', '?')}; {cpu.get('CPU(s)', '?')} CPU(s), "
        f"{cpu.get('Thread(s) per core', '?')} thread(s)/core"
        + (f", max {cpu['CPU max MHz']} MHz" if "CPU max MHz" in cpu else "")
        + (f", L3 {cpu['L3 cache']}" if "L3 cache" in cpu else "")
        + (f"; hypervisor: {cpu['Hypervisor vendor']}" if "Hypervisor vendor" in cpu else ""),
        f"- Memory: {machine['memory_gib']} GiB; OS: {machine['os']}; kernel: {machine['kernel']}",
        "",
        "## Versions",
        "",
        f"- ours: cymongoose {vers['ours'].get('cymongoose')} at `{vers['ours']['git']}`, "
        f"Python {vers['ours'].get('python')} (bench/.venv-ours: `pip install` of the working "
        "tree)",
        f"- original: cymongoose {vers['orig'].get('cymongoose')} from PyPI, Python "
        f"{vers['orig'].get('python')} (bench/.venv-orig)",
        f"- nginx {vers['nginx']} (Debian); {vers['wrk']}",
        f"- uvicorn {peers.get('uvicorn')}, httptools {peers.get('httptools')}, uvloop "
        f"{peers.get('uvloop')}, aiohttp {peers.get('aiohttp')}, Python {peers.get('python')} "
        "(bench/.venv-peers)",
        f"- every venv runs on `{vers['ours'].get('interpreter', '?')}`; the driver (run.py) on "
        f"Python {vers['driver_python']}",
        "",
        "## Servers and commands",
        "",
        'Every server answers `GET /` with `200`, body `{"hello":"world"}`, '
        "`Content-Type: application/json`, on keep-alive (checked before each measurement).",
        "",
    ]
    for name in run.selected:
        s = run.servers[name]
        lines.append(f"- {s.label}, port {s.port}: `{' '.join(rel(x) for x in s.argv())}`")
    for name, why in run.skipped.items():
        lines.append(f"- **{run.servers[name].label}: skipped**: {why}")
    lines += [
        "",
        "- setup: `bash bench/setup.sh` (idempotent; `make bench` runs it first)",
        f"- this run: `{' '.join(['python3', 'bench/run.py', *a.argv])}`",
        f"- load: `{' '.join(wrk_argv(0, 50, a.duration, False)).replace(':0/', ':PORT/')}`; "
        f"pinned: `taskset -c {WRK_CPU} wrk ...` and the server under `taskset -c {SERVER_CPU}`",
        "",
    ]
    r = run.results
    if "http" in r:
        lines += [*section_http(run, r["http"]), ""]
    if "wakeup" in r:
        lines += [*section_wakeup(run, r["wakeup"]), ""]
    if "memory" in r:
        lines += [*section_memory(run, r["memory"]), ""]
    if "iteration" in r:
        lines += [*section_iteration(run, r["iteration"]), ""]
    t = targets(run)
    if t:
        lines += [*t, ""]
    lines += [
        "## How to read these numbers",
        "",
        "- wrk and the server share the machine's cores (2 here): requests/s is capped by the "
        "box, not only by the server; CPU µs/req is the number that compares the servers' work.",
        "- pinned -c1 puts a cross-core wake-up (an IPI, expensive under a hypervisor) into "
        "every request; unpinned -c1 lets the scheduler keep both on one core.",
        f"- CPU time comes in {1000 / CLK_TCK:g} ms ticks (±1 tick per reading): small next "
        "to a 10 s run's seconds of server CPU, a few per cent of a 2 s `--quick` run at -c1.",
        f"- load average at the end: {' '.join(machine.get('loadavg_end', ['?']))}; anything "
        "else running on the machine during the run shows up in every column.",
        "",
    ]
    if run.errors:
        lines += ["## Errors in this run", "", *(f"- {e.splitlines()[0]}" for e in run.errors), ""]
    if adapters:
        lines += [adapters, ""]
    lines += [profile, ""]
    out_path.write_text("\n".join(lines))
    log(f"wrote {out_path}")


def rel(x: str) -> str:
    return x.replace(str(ROOT) + "/", "")


# --- main ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke test: 2 s runs, 1 repetition")
    p.add_argument("--servers", help=f"comma list from {','.join(ALL_SERVERS)} (default all)")
    p.add_argument("--only", help=f"comma list from {','.join(ALL_TESTS)} (default all)")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 10; quick 2)")
    p.add_argument("--reps", type=int, help="repetitions (default 3; quick 1)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (default 1)")
    p.add_argument("--no-pinned", action="store_true", help="skip the taskset variant")
    p.add_argument(
        "--ours-python",
        default=str(venv_python("ours")),
        help="interpreter with our package (default bench/.venv-ours)",
    )
    p.add_argument("--out", default=str(BENCH / "RESULTS.md"), help="report path")
    a = p.parse_args(argv)
    a.argv = argv
    a.duration = a.duration or (2.0 if a.quick else 10.0)
    a.reps = a.reps or (1 if a.quick else 3)
    a.variants = ["unpinned"] + ([] if a.no_pinned or (os.cpu_count() or 1) < 2 else ["pinned"])
    a.wakeup_count = 10000 if a.quick else 50000
    a.wakeup_seconds = 20.0 if a.quick else 60.0
    a.memory_conns = MEMORY_CONNS
    a.iterations = 2000
    a.iter_seconds = 0.5 if a.quick else 2.0
    a.tests = split_choices(p, "--only", a.only, ALL_TESTS)
    a.server_names = split_choices(p, "--servers", a.servers, ALL_SERVERS)
    return a


def split_choices(p: argparse.ArgumentParser, flag: str, value: str | None, allowed) -> list:
    if not value:
        return list(allowed)
    items = [x.strip() for x in value.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad:
        p.error(f"{flag}: unknown {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def raise_nofile() -> None:
    """Children (the servers) inherit this limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= NOFILE:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, max(hard, NOFILE)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log(f"RLIMIT_NOFILE is capped at {hard}: the 10,000-connection runs may fail")


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    for tool in ("wrk", "nginx", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} not found: run bench/setup.sh first")
    raise_nofile()
    OUT.mkdir(exist_ok=True)
    run = Run(a, make_servers(Path(a.ours_python)), list(a.server_names))
    t0 = time.monotonic()
    started_at = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    machine = machine_info()
    vers = versions(run)
    preflight(run, explicit=bool(a.servers))
    log(f"servers: {', '.join(run.selected)}; tests: {', '.join(a.tests)}")
    benches = {
        "http": bench_http,
        "wakeup": bench_wakeup,
        "memory": bench_memory,
        "iteration": bench_iteration,
    }
    for test in a.tests:
        run.results[test] = benches[test](run)
    machine["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    raw = {
        "machine": machine,
        "versions": vers,
        "args": a.argv,
        "skipped": run.skipped,
        "errors": run.errors,
        "results": run.results,
    }
    (OUT / "results.json").write_text(json.dumps(raw, indent=1, default=str))
    write_report(run, machine, vers, started_at, time.monotonic() - t0)
    if run.errors:
        log(f"{len(run.errors)} measurement(s) failed; see RESULTS.md and bench/out/logs/")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
