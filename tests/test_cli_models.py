"""The command line on the user's own model (issue 33, item 3): ``--model package.module:factory`` with
``--model-arg key=value``, ``--model hf:CONFIG.json``, and ``--example`` (a shape or a .pt file), for init,
predict and audit; each way a factory can fail is a pinned ``Error:`` line with exit code 2."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import initlab as il
from initlab.cli.main import app

runner = CliRunner()

FACTORIES = """
import torch
from torch import nn


def build(width=32, depth=3):
    layers = [nn.Linear(16, width), nn.Tanh()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 4))


def fails(width=32):
    raise RuntimeError("no GPU here")


def not_a_model():
    return [1, 2, 3]
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package of the user's, importable as ``my_models`` while the test runs."""
    (tmp_path / "my_models.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_models"


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def test_predict_through_a_factorys_model(package: str) -> None:
    torch.manual_seed(0)  # the factory draws torch's default init from the global generator
    data = json.loads(_ok(["predict", "--model", f"{package}:build", "--model-arg", "width=64", "--model-arg",
                           "depth=2", "--example", "16", "--format", "json"]))  # fmt: skip
    rows = data["rows"]
    assert [r["name"] for r in rows] == ["0", "1", "2", "3", "4"] and rows[0]["shape"] == [64]
    import my_models  # the same model, built here: the command line gives what the API gives

    torch.manual_seed(0)
    expected = il.predict(my_models.build(width=64, depth=2), 16)
    assert [r["forward_var"] for r in rows] == [r.forward_var for r in expected]


def test_audit_and_init_on_a_factorys_model(package: str, tmp_path: Path) -> None:
    out = _ok(["audit", "--model", f"{package}:build", "--example", "16", "--batch-size", "64"])
    assert "ordered phase" in out or "chaotic phase" in out or "critical" in out
    report = json.loads(_ok(["init", "--model", f"{package}:build", "--scheme", "lecun_normal", "--format", "json"]))
    weights = [r for r in report["rows"] if r["name"].endswith("weight")]
    assert [r["activation"] for r in weights] == ["tanh", "tanh", "tanh", "linear"]
    batch = tmp_path / "batch.pt"
    torch.save(torch.randn(32, 16), batch)
    audited = json.loads(_ok(["audit", "--model", f"{package}:build", "--example", str(batch), "--format", "json"]))
    assert len(audited["rows"]) == 7 and audited["findings"]


def test_a_hugging_face_config_file(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=32,
                                     architectures=["GPT2LMHeadModel"])  # fmt: skip
    path = tmp_path / "config.json"
    config.to_json_file(path)
    data = json.loads(_ok(["predict", "--model", f"hf:{path}", "--format", "json"]))
    assert data["rows"][-1]["name"] == "lm_head"
    out = _ok(["audit", "--model", f"hf:{path}", "--batch-size", "8"])
    assert "transformer.h.1" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no_such_pkg.models:build"],
         "cannot import 'no_such_pkg.models' (No module named 'no_such_pkg'). Accepted: a factory"),
        (["--model", "{pkg}:nothing"], "'my_models' has no function 'nothing'. Accepted: a factory"),
        (["--model", "{pkg}:fails"], "my_models:fails() raised RuntimeError: no GPU here. Fix the factory"),
        (["--model", "{pkg}:not_a_model"],
         "my_models:not_a_model must return a torch.nn.Module. Received: 'list'. Return the model"),
        (["--model", "{pkg}:build", "--model-arg", "width"], "--model-arg takes key=value."),
        (["--model", "{pkg}:build", "--example", "16,x"],
         "--example takes the shape of one example or a .pt file of inputs."),
        (["--model", "hf:/no/such/config.json"], "cannot use /no/such/config.json: No such file or directory."),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["init", "predict", "audit"])
def test_a_factory_that_fails_is_a_pinned_error(package: str, command: str, args: list[str], message: str) -> None:
    args = [a.replace("{pkg}", package) for a in args]
    if command == "init" and "--example" in args:
        args += ["--scheme", "lsuv"]  # init reads --example where it needs data
    result = runner.invoke(app, [command, *args])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert re.sub(r"\s+", " ", result.stderr).find(message) > 0, result.stderr
