"""Regenerate every picture the README shows (``make docs``), from one full demo run.

Run: .venv/bin/python docs/pictures.py [--store initlab-demo/runs.db]
Without --store it runs ``initlab demo`` (the full demo, ~4 min on 2 cores) into initlab-demo/ first. Each PNG is
stamped with the command that made it and a fingerprint of the demo's configuration and the schemes' semantics;
tests/test_readme.py fails when a picture's fingerprint is no longer the code's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from initlab.compare.report.pictures import write_pictures

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="a full demo's runs.db (default: run the demo now)")
    args = parser.parse_args()
    store = args.store
    if store is None:
        out = HERE.parent / "initlab-demo"
        subprocess.run([str(Path(sys.executable).parent / "initlab"), "demo", "--out", str(out)], check=True)
        store = out / "runs.db"
    for path in write_pictures(store, HERE):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
