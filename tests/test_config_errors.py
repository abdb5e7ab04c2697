"""Bad values in a run's config fail at the edge, before any work, with one message for Python, TOML and the CLI
(issue 23). Before: `run --lr nan` was stored, `--momentum nan` and `--clip-grad-norm -1` accepted, `--max-steps -1`
silently ran one step, `--seed 99999999999999999999` and `--lr 1e308` gave tracebacks, and the hint for a
non-integer width said "e.g. width=0", an invalid value."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

import initlab as il
from initlab.compare.config import TrainConfig


def _message(name: str, accepted: str, received: object, default: object) -> str:
    return (f"config field {name!r} is out of range. Accepted: {accepted}. Received: {received!r}. "
            f"Pass {name}={default!r} (the default) or another accepted value.")  # fmt: skip


CASES = [
    ("lr", math.nan, "a finite number from 1e-12, at most 1e+06", 0.1),
    ("lr", 1e308, "a finite number from 1e-12, at most 1e+06", 0.1),
    ("lr", 0.0, "a finite number from 1e-12, at most 1e+06", 0.1),
    ("momentum", math.nan, "a finite number from 0, below 1", 0.9),
    ("momentum", 1.0, "a finite number from 0, below 1", 0.9),
    ("clip_grad_norm", -1.0, "a finite number from 0, at most 1e+12", 0.0),
    ("max_steps", -1, "an int from 0, at most 1000000000000", 0),
    ("seed", 99999999999999999999, "an int from 0, at most 9223372036854775807", 0),
    ("depth", -4, "an int from 1, at most 10000", 5),
    ("width", 0, "an int from 1, at most 65536", 128),
    ("dropout", 1.0, "a finite number from 0, below 1", 0.0),
    ("batch_size", 0, "an int from 1, at most 10000000", 64),
    ("monitor_every", 0, "an int from 1, at most 1000000000000", 10),
]


@pytest.mark.parametrize(("name", "value", "accepted", "default"), CASES)
def test_out_of_range_values_are_refused_with_the_rule(
    name: str, value: object, accepted: str, default: object
) -> None:
    with pytest.raises(il.InitlabError, match=re.escape(_message(name, accepted, value, default))):
        TrainConfig(**{name: value})  # type: ignore[arg-type]
    with pytest.raises(il.InitlabError, match=re.escape(f"config field {name!r} is out of range")):
        TrainConfig.from_dict({name: str(value)})  # as a command line or a TOML string gives it


def test_a_wrong_type_names_a_valid_example() -> None:
    with pytest.raises(il.InitlabError, match=re.escape(
            "config field 'width' takes an int. Received: '1.5'. Give width an int value, e.g. width=128 "
            "(the default).")):  # fmt: skip
        TrainConfig.from_dict({"width": "1.5"})


@pytest.mark.parametrize(
    ("args", "error"),
    [(["--lr", "nan"], _message("lr", "a finite number from 1e-12, at most 1e+06", math.nan, 0.1)),
     (["--max-steps", "-1"], _message("max_steps", "an int from 0, at most 1000000000000", -1, 0)),
     (["--seed", "99999999999999999999"],
      _message("seed", "an int from 0, at most 9223372036854775807", 99999999999999999999, 0))],
)  # fmt: skip
def test_run_refuses_them_before_training(args: list[str], error: str, tmp_path: object) -> None:
    store = f"{tmp_path}/runs.db"
    proc = subprocess.run([sys.executable, "-m", "initlab.cli.main", "run", *args, "--store", store],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert " ".join(proc.stderr.split()) == f"Error: {error}"
    assert "Traceback" not in proc.stderr and proc.stdout == ""
