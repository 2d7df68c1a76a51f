"""The shipped type stubs agree with the extension: mypy's stubtest compares
every name, signature and class in _mongoose.pyi with the runtime module."""

import subprocess
import sys

import pytest

pytest.importorskip("mypy")


def test_stubtest_finds_no_difference():
    run = subprocess.run([sys.executable, "-m", "mypy.stubtest", "cymongoose._mongoose"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
