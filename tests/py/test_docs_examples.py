"""Every ```python block of the documentation site (docs/**/*.md) runs here.

The conventions (markers, ports, expected output) are in scripts/check_snippets.py,
which finds the blocks; this module runs them as a reader would: each example is a
script in a scratch directory, run with this interpreter against the installed
package.  A `server` example is started, exercised with the commands of the
```console block shown under it (curl, mostly), whose output must match the page,
then stopped with SIGINT as Ctrl-C would; a `program` must exit 0 and print what the
page says it prints; a `client` gets a small HTTP server of ours to talk to; a
`fragment` is compiled.
"""

from __future__ import annotations

import http.server
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import free_port, have_ipv6, port_accepts

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import check_snippets  # noqa: E402

pytestmark = pytest.mark.timeout(90)

DOCS = ROOT / "docs"
RUN_TIMEOUT = 30.0  # one program, or one console command
START_TIMEOUT = 30.0  # a server's ports accepting
STOP_GRACE = 0.2  # before SIGINT, for a server that stops by itself
# A port after a loopback host: "127.0.0.1:8000" in URLs, ('127.0.0.1', 8000) in Python.
PORT_RE = re.compile(r"""(127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1?\])(:|['"],\s*)(\d{4,5})\b""")
LISTEN_RE = re.compile(
    r"""(?:listen|mqtt_broker)\(\s*(?:f?["'])(?:https?|tcp|wss?|mqtts?)://[^"']*?:(\d{4,5})\b""")

EXAMPLES = [ex for md in sorted(DOCS.rglob("*.md")) for ex in check_snippets.examples(md)]


def test_the_site_has_examples():
    # A guard against a parser that silently finds nothing.
    kinds = {ex.kind for ex in EXAMPLES}
    assert len(EXAMPLES) >= 20, [ex.id for ex in EXAMPLES]
    assert {"program", "server", "fragment"} <= kinds


def test_markers_are_valid():
    errors = [e for md in sorted(DOCS.rglob("*.md")) for e in check_snippets.marker_errors(md)]
    assert errors == []


# --------------------------------------------------------------------------
# Ports, output matching


def port_map(*texts: str) -> dict[str, str]:
    ports: dict[str, str] = {}
    for text in texts:
        for _, _, p in PORT_RE.findall(text):
            if p not in ports:
                ports[p] = str(free_port())
    return ports


def substitute(text: str, ports: dict[str, str]) -> str:
    return PORT_RE.sub(lambda m: m.group(1) + m.group(2) + ports.get(m.group(3), m.group(3)), text)


def matches(expected: str, actual: str) -> bool:
    """Line-wise equality, trailing blanks ignored; `...` matches any text."""
    def norm(s: str) -> str:
        return "\n".join(line.rstrip() for line in s.splitlines()).strip("\n")

    pattern = ".*?".join(re.escape(part) for part in norm(expected).split("..."))
    return re.fullmatch(pattern, norm(actual), re.S) is not None


def incomplete(cmd: list[str]) -> bool:
    """A command goes on past a trailing backslash or an open quote."""
    if cmd[-1].endswith("\\"):
        return True
    try:
        shlex.split("\n".join(cmd))
    except ValueError:
        return True
    return False


def console_session(text: str) -> list[tuple[str, str]]:
    """`$ command` lines (with continuations) and the output under each."""
    session: list[tuple[str, str]] = []
    cmd: list[str] = []
    out: list[str] = []
    continuing = False
    for line in text.splitlines():
        if continuing:
            cmd.append(line)
            continuing = incomplete(cmd)
        elif line.startswith("$ "):
            if cmd:
                session.append(("\n".join(cmd), "\n".join(out)))
            cmd, out = [line[2:]], []
            continuing = incomplete(cmd)
        else:
            out.append(line)
    if cmd:
        session.append(("\n".join(cmd), "\n".join(out)))
    return session


def child_env() -> dict[str, str]:
    # `python3` in a console session is this interpreter, with the package under test
    # and the peers of requirements-dev.txt (websockets, paho-mqtt).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, PYTHONUNBUFFERED="1", PATH=path)
    for name in list(env):  # curl must never go through a proxy configured around us
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            del env[name]
    return env


def run_console(text: str, cwd: Path, where: str) -> None:
    for cmd, expected in console_session(text):
        proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=child_env(),
                              capture_output=True, timeout=RUN_TIMEOUT)
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        assert proc.returncode == 0, f"{where}: `{cmd}` exited {proc.returncode}:\n{out}{err}"
        assert matches(expected, out), \
            f"{where}: `{cmd}` printed\n{out}\nthe page shows\n{expected}"


def write_script(ex, tmp_path: Path, ports: dict[str, str]) -> Path:
    for setup in ex.setup:
        if setup.lang == "python":  # `file NAME`: a module the example imports
            code = substitute(setup.code, ports)
            compile(code, f"{setup.path}:{setup.line}", "exec")
            (tmp_path / setup.arg).write_text(code)
        else:
            run_console(substitute(setup.code, ports), tmp_path, f"{setup.path}:{setup.line}")
    script = tmp_path / "example.py"
    if ex.block.lang != "python":  # a command line: its files and setup are all it needs
        return script
    # Line numbers of tracebacks point into the page.
    script.write_text("\n" * (ex.block.line - 1) + substitute(ex.block.code, ports))
    return script


# --------------------------------------------------------------------------
# The fixture server of `client` examples


class _Fixture(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - the http.server API
        self._answer(b"hello from the test server\n")

    def do_POST(self):  # noqa: N802
        self._answer(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def log_message(self, *args):
        pass


def fixture_servers(ports: dict[str, str]) -> list[http.server.ThreadingHTTPServer]:
    servers = []
    for port in ports.values():
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), _Fixture)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(srv)
    return servers


# --------------------------------------------------------------------------
# The examples


def _assert_clean(where: str, proc_out: str, proc_err: str) -> None:
    assert "Traceback" not in proc_err, f"{where}:\n{proc_err}"


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda ex: ex.id)
def test_example(ex, tmp_path):
    where = ex.id
    if ex.kind == "fragment":
        compile(ex.block.code, where, "exec")
        return
    if re.search(r"\[::1?\]", ex.block.code) and not have_ipv6():
        pytest.skip("no ::1 on this machine")  # as tests/py/test_ipv6.py
    console = ex.console.code if ex.console else ""
    ports = port_map(ex.block.code, console, *(s.code for s in ex.setup))
    script = write_script(ex, tmp_path, ports)
    if ex.kind in ("program", "client"):
        servers = fixture_servers(ports) if ex.kind == "client" else []
        try:
            proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=child_env(),
                                  capture_output=True, timeout=RUN_TIMEOUT)
        finally:
            for srv in servers:
                srv.shutdown()
                srv.server_close()
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        assert proc.returncode == 0, f"{where}: exit {proc.returncode}\n{out}\n{err}"
        _assert_clean(where, out, err)
        if ex.output is not None:
            assert matches(substitute(ex.output.code, ports), out), \
                f"{where} printed\n{out}\nthe page shows\n{ex.output.code}"
        return
    if ex.kind == "serve":  # a command line: the first command serves, the rest exercise it
        (start, _), *rest = console_session(ex.block.code)
        session = "\n".join(f"$ {cmd}\n{out}" for cmd, out in rest)
        cmd = start.replace("python ", f"{sys.executable} ", 1)
        argv = ["bash", "-c", "exec " + substitute(cmd, ports)]
        run_server(ex, argv, ports, tmp_path, re.findall(r"--listen \S+?:(\d{4,5})", start),
                   session)
        return
    assert ex.kind == "server", ex.kind
    run_server(ex, [sys.executable, str(script)], ports, tmp_path,
               LISTEN_RE.findall(ex.block.code), ex.console.code)


def run_server(ex, argv: list[str], ports: dict[str, str], tmp_path: Path,
               port_names: list[str], console: str) -> None:
    where = ex.id
    listen_ports = [ports[p] for p in port_names if p in ports]
    proc = subprocess.Popen(argv, cwd=tmp_path, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = err = ""
    try:
        deadline = time.monotonic() + START_TIMEOUT
        for _ in range(int(START_TIMEOUT / 0.02) + 10):
            if proc.poll() is not None:
                break
            if all(port_accepts(int(p)) for p in listen_ports) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if proc.poll() is not None:
            o, e = proc.communicate(timeout=10)
            pytest.fail(f"{where}: the server exited early ({proc.returncode}):\n"
                        f"{o.decode(errors='replace')}{e.decode(errors='replace')}")
        assert all(port_accepts(int(p)) for p in listen_ports), f"{where}: never listened"
        if not listen_ports:
            time.sleep(0.5)  # UDP only: nothing to probe
        run_console(substitute(console, ports), tmp_path, f"{where} (console)")
    finally:
        try:  # a server the session told to stop may be on its way out: let it go alone
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: Manager.run() returns, the script ends
        try:
            o, e = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            o, e = proc.communicate(timeout=10)
            pytest.fail(f"{where}: the server did not stop on SIGINT")
        out, err = o.decode(errors="replace"), e.decode(errors="replace")
    assert proc.returncode == 0, f"{where}: exit {proc.returncode} after SIGINT\n{out}\n{err}"
    _assert_clean(where, out, err)
    if ex.output is not None:
        assert matches(substitute(ex.output.code, ports), out), \
            f"{where} printed\n{out}\nthe page shows\n{ex.output.code}"


def test_port_placeholders_are_replaced():
    ports = port_map('listen("http://127.0.0.1:8000")', "curl http://localhost:8000/")
    assert list(ports) == ["8000"]
    got = substitute('listen("http://127.0.0.1:8000"); connect("tcp://[::1]:8000")', ports)
    assert "8000" not in got
    got = substitute("connect(('127.0.0.1', 8000))", ports)
    assert got == f"connect(('127.0.0.1', {ports['8000']}))"


def test_output_matching():
    assert matches("a\n...\nz\n", "a\nb\nc\nz")
    assert matches("took ... ms", "took 12 ms  ")
    assert not matches("a\nb", "a\nc")
    assert console_session("$ echo 1 \\\n  2\n1 2\n$ true\n") == [("echo 1 \\\n  2", "1 2"),
                                                                  ("true", "")]
    assert console_session("$ python3 -c \"\nprint(1)\n\"\n1\n") == [
        ("python3 -c \"\nprint(1)\n\"", "1")]
