"""Bad input to the theory, from Python and from the CLI (issue 22): pinned InitlabError texts, and `Error: ...`
with exit code 2 and no traceback on the command line. Before, `predict --weight-var -1` answered χ1 = -1
"ordered", `nan` answered "chaotic", and `audit --batch-size 0` printed a table of NaN with exit 0."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest
import torch

import initlab as il
from initlab import theory as th

WEIGHT = ("weight_var must be a finite variance > 0 (σ_w² = fan_in · Var[W]). Accepted: a finite number > 0, "
          "e.g. 1.0 for LeCun, 2.0 for He. Received: {}. Pass a positive weight variance.")  # fmt: skip
BIAS = ("bias_var must be a finite variance ≥ 0 (σ_b² = Var[b]). Accepted: a finite number ≥ 0, e.g. 0.0 for "
        "zero biases. Received: {}. Pass bias_var=0.0 for zero-initialized biases.")  # fmt: skip


@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan, math.inf])
@pytest.mark.parametrize("fn", [th.chi1, th.fixed_point, th.c_fixed_point, th.depth_scales])
def test_weight_variance_must_be_positive_and_finite(fn: object, bad: float) -> None:
    with pytest.raises(il.InitlabError, match=re.escape(WEIGHT.format(bad))):
        fn("tanh", bad, 0.0)  # type: ignore[operator]


@pytest.mark.parametrize("bad", [-0.1, math.nan, -math.inf])
def test_bias_variance_must_be_non_negative_and_finite(bad: float) -> None:
    for call in (lambda: th.chi1("tanh", 1.0, bad), lambda: th.critical_weight_var("tanh", bad),
                 lambda: th.phase_diagram("tanh", [1.0], [0.0, bad])):  # fmt: skip
        with pytest.raises(il.InitlabError, match=re.escape(BIAS.format(bad))):
            call()


def test_a_bad_point_inside_an_array_is_named() -> None:
    with pytest.raises(il.InitlabError, match=re.escape(WEIGHT.format(-2.0))):
        th.chi1("relu", [1.0, 2.0, -2.0])


def test_depth_and_input_length() -> None:
    depth = "depth must be a whole number of layers ≥ 1. Accepted: an int ≥ 1. Received: 0. Pass depth=20, for example."
    with pytest.raises(il.InitlabError, match=re.escape(depth)):
        th.layer_profile("tanh", 1.0, 0.0, 0)
    with pytest.raises(il.InitlabError, match=re.escape("the input length q0 must be finite and > 0")):
        th.layer_profile("tanh", 1.0, 0.0, 5, q0=-1.0)
    with pytest.raises(il.InitlabError, match=re.escape("χ1 must be a finite number ≥ 0. Accepted: a value from "
                                                        "chi1(). Received: nan.")):  # fmt: skip
        th.phase(math.nan)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "initlab.cli.main", *args], capture_output=True, text=True,
                          check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["predict", "--weight-var", "-1"], "Error: " + WEIGHT.format(-1.0)),
        (["predict", "--weight-var", "nan"], "Error: " + WEIGHT.format(math.nan)),
        (["predict", "--bias-var", "-0.5"], "Error: " + BIAS.format(-0.5)),
        (["predict", "--depth", "0"], "Error: depth must be a whole number of layers ≥ 1."),
        (["predict", "--input-var", "0"], "Error: the input length q0 must be finite and > 0."),
        (["audit", "--depth", "3", "--width", "16", "--batch-size", "0"],
         "Error: audit needs at least 2 examples to measure a variance. Accepted: a batch of 2 or more. "
         "Received: 0. Pass a larger batch (256 is a good size)."),
    ],
)  # fmt: skip
def test_cli_rejects_bad_theory_input(args: list[str], error: str) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.replace("\n", " ").startswith(error), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_predict_on_the_chaotic_side_of_tanh_without_bias_is_finite() -> None:
    # The example: a trainable depth of "inf" where the true ξ_c is 216.8.
    proc = _cli("predict", "--activation", "tanh", "--weight-var", "1.2", "--bias-var", "0", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["xi_c"] == pytest.approx(216.77, abs=0.01) and data["trainable_depth"] == pytest.approx(1300.6, abs=0.1)


def _gelu_mlp(depth: int = 50, width: int = 512) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for _ in range(depth):
        layers += [torch.nn.Linear(width, width), torch.nn.GELU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))


def test_critical_init_never_picks_a_discontinuity() -> None:
    # GELU at the critical scheme's default σ_b² = 0.05 has no edge of chaos (the length jumps from 0.16 to ∞);
    # it used to pick the jump, and a 50-layer net's forward variance grew from 2.3 to 721.
    net = _gelu_mlp()
    with pytest.raises(il.InitlabError, match=re.escape(
            "activation 'gelu' has no critical point at σ_b² = 0.05: at σ_w² ≈ 2.234 χ1 jumps from 0.734 to 1.12 "
            "instead of crossing 1: below it q* = 0.1645, above it the signal grows without bound (q* = ∞). At "
            "bias_var=0.2 there is one (σ_w² = 1.971): use initlab.get('critical', bias_var=0.2)")):  # fmt: skip
        il.initialize(net, "critical")
    # The suggestion works: over 50 layers the signal's variance stays within a factor 4 of the first layer's
    # (it grew 313× with the jump; seeded, width 512).
    il.initialize(net, il.get("critical", bias_var=0.2), generator=torch.Generator().manual_seed(0))
    h, variances = torch.randn(256, 512, generator=torch.Generator().manual_seed(1)), []
    with torch.no_grad():
        for layer in net[:-1]:
            h = layer(h)
            if isinstance(layer, torch.nn.Linear):
                variances.append(h.var().item())
    assert max(variances) / variances[0] < 4 and variances[0] / min(variances) < 4, variances


@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan, math.inf])
def test_predict_needs_a_positive_input_variance(bad: float) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    with pytest.raises(il.InitlabError, match=re.escape(
            f"input_var must be a finite variance > 0. Accepted: a number > 0, e.g. 1.0 for standardized inputs. "
            f"Received: {bad}. Pass the variance of one input element.")):  # fmt: skip
        il.predict(net, 4, input_var=bad)
