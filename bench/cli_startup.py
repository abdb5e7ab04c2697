"""Start-up cost of the command line (issue 23): `initlab --help` and an argument error beside `python -c pass`.

Run: .venv/bin/python bench/cli_startup.py
Target: `initlab --help` and argument errors under 0.5 s (they must not wait for torch, which only the commands
that train, initialize or predict import). The three commands run interleaved, 15 times each; medians.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "initlab --help": [str(BIN / "initlab"), "--help"],
    "initlab init --depth x (argument error)": [str(BIN / "initlab"), "init", "--depth", "x"],
    "import torch (what is no longer paid)": [sys.executable, "-c", "import torch"],
}
REPEATS = 15


def main() -> None:
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(REPEATS):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=False)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:42s} median {median:.3f} s (min {min(values):.3f}), {median / base:.1f}× python -c pass")


if __name__ == "__main__":
    main()
