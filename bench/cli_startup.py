"""Start-up cost of the command line (issues 23 and 35): every command that does not train or build a model,
beside `python -c pass` and `import torch` (what those commands no longer pay).

Run: .venv/bin/python bench/cli_startup.py
Target: each command under 0.5 s (none of them imports torch; tests/test_cli.py checks that part exactly).
The commands run interleaved, 15 times each; medians. `report` is measured on a store with no runs: a store
with runs is explained with the mean-field theory, which needs torch, and drawn with matplotlib.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from initlab.compare.store import Store

BIN = Path(sys.executable).parent
INITLAB = str(BIN / "initlab")
REPEATS = 15


def commands(tmp: Path) -> dict[str, list[str]]:
    empty = tmp / "empty.db"
    Store(empty).close()
    out = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import torch (what is no longer paid)": [sys.executable, "-c", "import torch"],
        "initlab --help": [INITLAB, "--help"],
        "initlab schemes": [INITLAB, "schemes"],
        "initlab schemes --format json": [INITLAB, "schemes", "--format", "json"],
        "initlab sweep --status --store empty.db": [INITLAB, "sweep", "--status", "--store", str(empty)],
        "initlab sweep --status --store missing.db (error)": [INITLAB, "sweep", "--status", "--store", str(tmp / "m")],
        "initlab report missing.db (error)": [INITLAB, "report", str(tmp / "missing.db")],
        "initlab init --depth x (argument error)": [INITLAB, "init", "--depth", "x"],
    }
    for sub in ("demo", "schemes", "init", "predict", "audit", "run", "sweep", "report"):
        out[f"initlab {sub} --help"] = [INITLAB, sub, "--help"]
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        todo = commands(Path(tmp))
        times: dict[str, list[float]] = {name: [] for name in todo}
        for _ in range(REPEATS):
            for name, command in todo.items():
                start = time.perf_counter()
                subprocess.run(command, capture_output=True, check=False, cwd=tmp)
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    for name, values in times.items():
        median = statistics.median(values)
        flag = "" if name.startswith(("python", "import")) else ("  ok" if median <= 0.5 else "  OVER 0.5 s")
        print(f"{name:52s} median {median:.3f} s (min {min(values):.3f}), {median / base:5.1f}× python -c pass{flag}")


if __name__ == "__main__":
    main()
