"""The CLI: results on stdout (tables or JSON), errors as `Error: ...` with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

import initlab as il
from initlab.cli.main import app

runner = CliRunner()


def test_schemes_json_lists_every_scheme() -> None:
    result = runner.invoke(app, ["schemes", "--format", "json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} == {s.name for s in il.schemes()}
    he = next(r for r in rows if r["name"] == "he_normal")
    assert "He et al. (2015)" in he["paper"]


def test_init_json_report() -> None:
    result = runner.invoke(app, ["init", "--depth", "3", "--width", "16", "--activation", "tanh", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    weights = [r for r in data["rows"] if r["name"].endswith("weight")]
    assert len(weights) == 4
    assert weights[0]["activation"] == "tanh" and abs(weights[0]["gain"] - 5 / 3) < 1e-12


def test_unknown_scheme_is_exit_2_without_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "initlab.cli.main", "init", "--scheme", "he_unifrom"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: unknown initializer 'he_unifrom'. Did you mean 'he_uniform'")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
