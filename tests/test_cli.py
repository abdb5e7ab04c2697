"""The CLI: results on stdout (tables or JSON), errors as `Error: ...` with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
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
    # he_normal keeps its published gain √2 before tanh (issue 21); --gain-from activation opts into tanh's 5/3
    assert weights[0]["activation"] == "tanh" and abs(weights[0]["gain"] - 2**0.5) < 1e-12
    assert weights[0]["source"] == "published"
    args = [
        "init",
        "--depth",
        "3",
        "--width",
        "16",
        "--activation",
        "tanh",
        "--gain-from",
        "activation",
        "--format",
        "json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout)["rows"][0]
    assert abs(first["gain"] - 5 / 3) < 1e-12 and first["source"] == "activation (module)"


def test_unknown_scheme_is_exit_2_without_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "initlab.cli.main", "init", "--scheme", "he_unifrom"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: unknown initializer 'he_unifrom'. Did you mean 'he_uniform'")
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_predict_json_and_plot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plot = tmp_path / "phase.png"
    args = ["predict", "--activation", "tanh", "--weight-var", "1.5", "--bias-var", "0.05", "--depth", "50"]
    result = runner.invoke(app, [*args, "--plot", str(plot), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["phase"] == "ordered" and abs(data["chi1"] - il.theory.chi1("tanh", 1.5, 0.05)) < 1e-12
    assert abs(data["trainable_depth"] - 6 * data["xi_c"]) < 1e-9
    assert len(data["layers"]) == 50 and data["layers"][-1]["grad_var"] == 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_audit_table_has_findings() -> None:
    result = runner.invoke(app, ["audit", "--depth", "6", "--width", "64", "--activation", "sigmoid",
                                 "--scheme", "small_random"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ordered phase" in result.stdout
    json_result = runner.invoke(app, ["audit", "--depth", "4", "--width", "32", "--format", "json"])
    data = json.loads(json_result.stdout)
    assert data["findings"] and {"name", "measured_var", "predicted_var"} <= set(data["rows"][0])


def test_unknown_activation_in_predict_is_exit_2() -> None:
    result = runner.invoke(app, ["predict", "--activation", "rleu"])
    assert result.exit_code == 2
    assert "unknown activation 'rleu'. Did you mean 'relu'" in result.stderr


def test_run_writes_the_store_and_prints_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    toml = tmp_path / "run.toml"
    toml.write_text('depth = 2\nwidth = 16\nscheme = "glorot_uniform"\n')
    store = tmp_path / "runs.db"
    result = runner.invoke(app, ["run", "--config", str(toml), "--epochs", "2", "--activation=tanh",
                                 "--store", str(store), "--format", "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"run_id", "train_loss", "test_accuracy", "diverged", "findings"} <= set(data)
    from initlab.compare.store import Store

    with Store(store) as db:
        run = db.runs("done")[0]
    assert run["id"] == data["run_id"] and run["config"]["activation"] == "tanh" and run["config"]["depth"] == 2


def test_run_bad_field_and_value_are_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = str(tmp_path / "r.db")
    result = runner.invoke(app, ["run", "--dpeth", "3", "--store", store])
    assert result.exit_code == 2
    assert "Error: unknown config field 'dpeth'. Did you mean 'depth'" in result.stderr
    assert "Accepted: activation, base_depth, base_width, batch_size," in result.stderr
    result = runner.invoke(app, ["run", "--depth", "three", "--store", store])
    assert result.exit_code == 2
    assert "config field 'depth' takes an int. Received: 'three'." in result.stderr


def test_schemes_state_the_gain_rule_in_one_sentence() -> None:
    result = runner.invoke(app, ["schemes"])
    assert result.exit_code == 0
    assert "Every name keeps its published meaning (no activation gain for Glorot/Xavier and LeCun, √2 for" in " ".join(
        result.stdout.split()
    )
    rows = json.loads(runner.invoke(app, ["schemes", "--format", "json"]).stdout)
    assert {r["name"]: r["published_gain"] for r in rows}["he_normal"] == 2**0.5


def test_help_and_argument_errors_do_not_import_torch() -> None:
    # issue 23: every call waited 2.3 s for torch; help and usage errors need none of it (timed, beside
    # `python -c pass`, in bench/cli_startup.py). A fresh interpreter, so nothing is imported already.
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from initlab.cli.main import app\n"
        "runner = CliRunner()\n"
        "for args in (['--help'], ['run', '--help'], ['init', '--depth', 'x'], ['predict', '--help']):\n"
        "    runner.invoke(app, args)\n"
        "print(sorted(m for m in ('torch', 'numpy', 'scipy', 'matplotlib') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    usage = subprocess.run([sys.executable, "-m", "initlab.cli.main", "init", "--depth", "x"], capture_output=True,
                           text=True, check=False)  # fmt: skip
    assert usage.returncode == 2 and usage.stderr.startswith("Error: invalid value for '--depth'")


def test_the_demo_commands_data_sets_are_the_demos() -> None:
    from initlab.cli import demo_cmd
    from initlab.compare import demo

    assert demo_cmd.DATASETS == demo.DATASETS


def test_run_help_lists_every_train_config_field() -> None:
    import dataclasses

    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert all("--" + f.name.replace("_", "-") in text for f in dataclasses.fields(il.TrainConfig))


def test_lsuv_on_the_command_line() -> None:
    # issue 25: the scheme is accepted wherever a scheme is; init has no data and says what it calibrated on,
    # audit calibrates on its own batch and measures what mean-field theory predicts for LSUV (tanh: χ1 = 1.18)
    result = runner.invoke(app, ["init", "--scheme", "lsuv", "--depth", "3", "--width", "32", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert all(r["scheme"] == "lsuv (orthogonal)" for r in data["rows"] if r["name"].endswith("weight"))
    assert "lsuv was calibrated on 512 standard-normal inputs (initlab init has no data)" in data["notes"][-1]
    result = runner.invoke(app, ["audit", "--scheme", "lsuv", "--depth", "10", "--activation", "tanh", "--format",
                                 "json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    chi = json.loads(result.stdout)["chi_per_layer"]
    assert chi == pytest.approx(il.theory.chi1("tanh", il.theory.schemes.scheme_point("lsuv", "tanh")[0], 0.0),
                                abs=0.05)  # one batch of 256 digits against the mean-field value  # fmt: skip


_WITHOUT_TORCH = """
import sys
from initlab.cli.main import app
try:
    app(sys.argv[1:], prog_name="initlab")
except SystemExit as stop:
    code = stop.code
print("exit", code, "torch loaded:", "torch" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["schemes"], ["schemes", "--format", "json"], ["sweep", "--status", "--store", "{store}"],
     ["sweep", "--status", "--store", "{missing}"], ["report", "{missing}"], ["init", "--depth", "x"],
     ["demo", "--help"], ["report", "--help"]],
)  # fmt: skip
def test_commands_that_do_not_train_start_without_torch(tmp_path, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    # issue 35: opening a store imported torch (sweep --status 2.2 s), listing the schemes too (2.7 s)
    from initlab.compare.store import Store

    Store(tmp_path / "runs.db").close()
    args = [a.format(store=tmp_path / "runs.db", missing=tmp_path / "missing.db") for a in args]
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, *args], capture_output=True, text=True)
    assert "torch loaded: False" in proc.stderr, proc.stderr
    assert "exit 0" in proc.stderr or "exit 2" in proc.stderr or "exit None" in proc.stderr


def test_critical_is_known_whatever_was_imported_first() -> None:
    # issue 30: initlab.init.model.initialize(net, "critical") said "unknown initializer" unless initlab.theory
    # had been imported first
    code = (
        "import torch\nfrom initlab.init.model import initialize\n"
        "net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))\n"
        "print(initialize(net, 'critical').rows[0].scheme)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "critical", proc.stderr
