"""The threading guide's examples (issue 2), run as real programs over HTTP.

examples/seed/image_server.py is the guide's complete example, byte for byte;
the other files are the guide's fragments with only the smallest completion
added (lines marked "# completion:"). Each runs as a subprocess and is driven
with urllib / http.client from here.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import free_port, http_get, port_accepts

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "seed"
GUIDE = ROOT.parent / "shared" / "seed" / "000_79dd41e9fea1dc36.txt"
STARTUP_TIMEOUT = 60.0  # the first import may rebuild the extension


class Example:
    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc = proc
        self.port = port
        self.stdout = b""
        self.stderr = b""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def run_example(name: str, port: int, pass_port: bool = True):
    args = [sys.executable, str(EXAMPLES / name)] + ([str(port)] if pass_port else [])
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ex = Example(proc, port)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for _ in range(int(STARTUP_TIMEOUT / 0.05) + 10):
            if proc.poll() is not None:
                out, err = proc.communicate(timeout=10)
                pytest.fail(f"{name} exited early ({proc.returncode}):\n{err.decode()}")
            if port_accepts(port) or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        assert port_accepts(port), f"{name} never accepted on port {port}"
        yield ex
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        ex.stdout, ex.stderr = proc.communicate(timeout=10)
    assert b"Traceback" not in ex.stderr, ex.stderr.decode()


def concurrently(fns):
    """Run callables in threads at once; return their results (exceptions re-raised)."""
    results = [None] * len(fns)
    errors = []

    def run(i, fn):
        try:
            results[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "client threads hung"
    if errors:
        raise errors[0]
    return results


# --------------------------------------------------------------------------
# The files are the guide's lines


def _guide_block(start: str, end: str) -> str:
    text = GUIDE.read_text()
    i = text.index(start) + len(start)
    return text[i:text.index(end, i)]


@pytest.fixture(scope="module")
def guide():
    if not GUIDE.exists():
        pytest.skip(f"threading guide not found at {GUIDE}")
    return _guide_block


def test_image_server_is_verbatim(guide):
    block = guide("Image Processing Server\n\n", "\nMethod Thread-Safety Reference")
    assert (EXAMPLES / "image_server.py").read_text() == block


FRAGMENTS = {
    "basic_pattern.py": ("Basic Pattern\n", "Complete Example"),
    "stash_large.py": ("etc.):\n", "Note\n\nThe WSGI adapter"),
    "worker_pools.py": ("Different workers for different tasks:\n", "Fast Path vs Slow Path"),
    "fast_slow_path.py": ("offload complex ones:\n", "Graceful Shutdown"),
    "graceful_shutdown.py": ("Stop workers cleanly:\n", "Best Practices"),
}


@pytest.mark.parametrize("name", sorted(FRAGMENTS))
def test_fragment_keeps_guide_lines(guide, name):
    """Every line of the guide's fragment is in the file, unchanged (its "..."
    placeholders excepted); every other code line is marked as a completion."""
    block = guide(*FRAGMENTS[name])
    source = (EXAMPLES / name).read_text().splitlines()
    available = collections.Counter(source)
    missing = []
    for line in block.splitlines():
        if not line.strip() or "(...)" in line:
            continue
        if available[line] > 0:
            available[line] -= 1
        else:
            missing.append(line)
    assert missing == []
    guide_lines = collections.Counter(line for line in block.splitlines() if line.strip())
    for line in source:
        code = line.strip()
        if not code or code.startswith("#"):
            continue
        if guide_lines[line] > 0:
            guide_lines[line] -= 1
            continue
        assert "# completion:" in line, f"unmarked non-guide line: {line!r}"


# --------------------------------------------------------------------------
# The complete example, verbatim, on port 8000


def _port_8000_free() -> bool:
    if port_accepts(8000):
        return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", 8000))
        except OSError:
            return False
    return True


# The example pairs results with wakeups through one queue not keyed by connection
# (issue 12): a worker stalled between its result_queue.put() and its wakeup() (a thread
# descheduled on a loaded machine) lets another worker's wakeup take its result and answer
# its client, whose connection then closes; the late wakeup finds no connection and the
# other client's result waits in the queue forever (a client "timed out" once in CI).
# The example stays verbatim, so the test keeps the workers' completions apart: the posts
# leave STAGGER s apart, and the race would need a worker stalled that long between two
# adjacent lines.  What is asserted is unchanged: each client gets its own result, every
# job takes the 2 s processing time, and the four run at once on the four workers.
STAGGER = 0.3


def test_image_server_four_concurrent_posts():
    if not _port_8000_free():
        pytest.skip("port 8000 is busy; the verbatim image server needs it")
    with run_example("image_server.py", 8000, pass_port=False) as ex:
        bodies = [b"img%d" % i for i in range(1, 5)]
        t0 = time.monotonic()

        def post(i: int, body: bytes):
            time.sleep(max(0.0, t0 + i * STAGGER - time.monotonic()))
            sent = time.monotonic()
            status, _, got = http_get(ex.url("/upload"), data=body, timeout=20)
            return status, got, sent, time.monotonic()

        results = concurrently([(lambda i=i, b=b: post(i, b)) for i, b in enumerate(bodies)])
    for body, (status, got, _, _) in zip(bodies, results, strict=True):
        assert status == 200
        assert got == b"PROCESSED_" + body
    for sent, done in (r[2:] for r in results):
        assert done - sent >= 1.9, "a request finished before the 2 s processing time"
        # Waiting for a free worker would add >= 2 - 3 * STAGGER = 1.1 s to the last one.
        assert done - sent < 2.9, f"a request took {done - sent:.2f}s (waited for a worker?)"
    # All four were in the server at once: the last left before the first came back.
    assert results[-1][2] < min(r[3] for r in results)


# --------------------------------------------------------------------------
# Fragments


def test_basic_pattern():
    port = free_port()
    with run_example("basic_pattern.py", port) as ex:
        for body in (b"hello", b"", b"bin\x00ary"):
            status, _, got = http_get(ex.url("/work"), data=body)
            assert (status, got) == (200, b"COMPUTED_" + body[::-1])
        bodies = [b"job-%d" % i for i in range(4)]
        results = concurrently([
            (lambda b=b: http_get(ex.url("/work"), data=b)) for b in bodies])
        for body, (status, _, got) in zip(bodies, results, strict=True):
            assert (status, got) == (200, b"COMPUTED_" + body[::-1])


def _expected_stash_result(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def test_stash_large_and_inline():
    port = free_port()
    with run_example("stash_large.py", port) as ex:
        for n in (102_400, 10, 8000, 8001, 1 << 20):
            status, _, got = http_get(ex.url(f"/result?n={n}"), timeout=20)
            assert status == 200
            assert len(got) == n
            assert got == _expected_stash_result(n), f"payload of {n} bytes corrupted"
        sizes = [102_400, 64, 102_400, 64]
        results = concurrently([
            (lambda n=n: http_get(ex.url(f"/c?n={n}"), timeout=20)) for n in sizes])
        for n, (status, _, got) in zip(sizes, results, strict=True):
            assert (status, got) == (200, _expected_stash_result(n))


def test_fast_path_answers_while_slow_path_works():
    port = free_port()
    with run_example("fast_slow_path.py", port) as ex:
        slow_done = threading.Event()
        slow_result = []

        def slow():
            slow_result.append(http_get(ex.url("/process"), data=b"job", timeout=20))
            slow_done.set()

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2)
        status, _, body = http_get(ex.url("/status"))
        fast_before_slow = not slow_done.is_set()
        t.join(20)
        assert (status, body) == (200, b'{"status": "ok"}')
        assert fast_before_slow, "/status waited for the slow path"
        assert slow_result and slow_result[0][0] == 200
        assert slow_result[0][2] == b"PROCESSED:job"


def test_worker_pools_route_to_different_pools():
    port = free_port()
    with run_example("worker_pools.py", port) as ex:
        paths = [f"/db/q{i}" for i in range(6)] + [f"/compute/c{i}" for i in range(6)]
        results = concurrently([(lambda p=p: http_get(ex.url(p), timeout=20)) for p in paths])
    names = {"db": set(), "compute": set()}
    for path, (status, _, body) in zip(paths, results, strict=True):
        assert status == 200
        pool, thread_name, uri = body.decode().split("|")
        assert uri == path
        expected = "db" if path.startswith("/db/") else "compute"
        assert pool == expected
        assert f"({expected}_worker)" in thread_name
        names[pool].add(thread_name)
    assert 1 <= len(names["db"]) <= 2
    assert 1 <= len(names["compute"]) <= 4
    assert not names["db"] & names["compute"]


def test_graceful_shutdown_on_sigint():
    port = free_port()
    with run_example("graceful_shutdown.py", port) as ex:
        status, _, body = http_get(ex.url("/job"), data=b"payload")
        assert (status, body) == (200, b"DONE:payload")
        ex.proc.send_signal(signal.SIGINT)
        try:
            code = ex.proc.wait(10)
        except subprocess.TimeoutExpired:
            code = None
    assert code == 0, f"exit status {code}; stderr:\n{ex.stderr.decode()}"
    assert b"workers stopped: True" in ex.stdout
    assert ex.stderr == b""
