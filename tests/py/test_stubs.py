"""The shipped type stubs agree with the extension: mypy's stubtest compares
every name, signature and class in _mongoose.pyi with the runtime module."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")


def test_stubtest_finds_no_difference():
    run = subprocess.run([sys.executable, "-m", "mypy.stubtest", "cymongoose._mongoose"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_python_layer_type_checks_against_the_stubs():
    """mypy over src/cymongoose (the thin Python layer: aio, wsgi, asgi, the command line)
    with its stubs: no type error, and no `# type: ignore` left that hides nothing."""
    src = Path(__file__).resolve().parents[2] / "src" / "cymongoose"
    run = subprocess.run([sys.executable, "-m", "mypy", "--warn-unused-ignores", "--no-incremental",
                          str(src)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
