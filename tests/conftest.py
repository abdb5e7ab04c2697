"""Shared test set-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Keras 3 runs on the torch backend beside initlab; it reads this before its first import.
os.environ.setdefault("KERAS_BACKEND", "torch")

# Under pytest-xdist each worker is one process on a 2-core machine: one torch thread per worker, or
# OpenMP threads oversubscribe the cores and spin (measured: a 20 s test file took 590 s with -n 2).
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`initlab demo --quick` (README's command), run once per test session and shared by the xdist workers
    (under a file lock) and by the tests of the demo and of the README."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this session's directory
    out, printed = shared / "quick-demo", shared / "quick-demo.stdout"
    with FileLock(str(shared / "quick-demo.lock")):
        if not printed.exists():
            command = [sys.executable, "-m", "initlab.cli.main", "demo", "--quick", "--out", str(out)]
            proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stderr
            printed.write_text(proc.stdout)
    return out, printed.read_text()
