"""Detector scenarios, each seeded: the problem is found, at the right place and time, with remedies;
and a healthy net gives no finding."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

import initlab as il
from initlab import InitlabError
from initlab.compare.data import load
from initlab.monitor import Monitor, Thresholds


def _mlp(depth: int, width: int, act: type[nn.Module], norm: bool = False, d_in: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(d_in if i == 0 else width, width))
        if norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(act())
    return nn.Sequential(*layers, nn.Linear(width, 10))


def _train(net: nn.Module, mon: Monitor, steps: int, lr: float = 0.1, seed: int = 0) -> list[float]:
    data = load("digits")
    x, y = data.train_x.flatten(1), data.train_y
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    losses = []
    with mon:
        for _ in range(steps):
            idx = torch.randint(0, x.shape[0], (64,), generator=g)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            mon.observe_loss(loss)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def _kinds(mon: Monitor) -> dict[str, il.monitor.Finding]:
    return {f.kind: f for f in reversed(mon.findings)}


def test_small_random_sigmoid_vanishes_within_20_steps() -> None:
    torch.manual_seed(0)
    net = _mlp(20, 64, nn.Sigmoid)
    il.initialize(net, "small_random", generator=torch.Generator().manual_seed(0))
    mon = Monitor(net, every=1)
    _train(net, mon, 20)
    finding = _kinds(mon)["vanishing"]
    assert finding.step <= 20 and finding.layer == "0.weight"
    assert finding.evidence["ratio"] < 1e-3 and finding.evidence["first_grad_norm"] < 1e-4
    assert finding.message.startswith("gradients vanish: the first layer's gradient norm is")
    # The initialization it names was predicted first (issue 22): small random sigmoid weights give χ1 ≈ 0.002,
    # and the scheme named is predicted to bring χ1 to 1.00, both numbers stated.
    assert finding.remedies[0].startswith("initialize closer to the edge of chaos: initlab.initialize(model, ")
    assert "gives χ1 = 1.00 per layer for sigmoid (this model: 0.00" in finding.remedies[0]
    assert any("BatchNorm" in r for r in finding.remedies)


def test_large_relu_weights_explode() -> None:
    net = _mlp(20, 64, nn.ReLU)
    il.initialize(net, {"class_name": "VarianceScaling", "config": {"scale": 4.0, "distribution": "normal"}},
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    mon = Monitor(net, every=1)
    _train(net, mon, 5, lr=1e-6)
    finding = _kinds(mon)["exploding"]
    assert finding.evidence["growth"] > 70  # std grows √2 per layer: ~2^9.5 over 20 layers
    assert finding.message.startswith("activations explode: their std grows")
    assert "clip gradients by norm" in finding.remedies[0]


def test_gradient_ratio_explodes() -> None:
    # tanh deep in the chaotic phase: the forward signal stays bounded, but back-propagated gradients grow
    # by χ1 = 1.36 per layer (mean-field; 1.36^29 ≈ 7600 in variance), so the first layer dwarfs the last.
    net = _mlp(30, 64, nn.Tanh)
    il.initialize(net, {"class_name": "VarianceScaling", "config": {"scale": 4.0, "distribution": "normal"}},
                  generator=torch.Generator().manual_seed(0))  # fmt: skip
    mon = Monitor(net, every=1)
    _train(net, mon, 4, lr=1e-6)
    finding = _kinds(mon)["exploding"]
    assert finding.evidence["ratio"] > 70 and finding.layer == "0.weight"


def test_negative_bias_kills_relus() -> None:
    net = _mlp(5, 64, nn.ReLU)
    il.initialize(net, "he_normal", bias=-3.0, generator=torch.Generator().manual_seed(0))
    mon = Monitor(net, every=1)
    _train(net, mon, 5)
    finding = _kinds(mon)["dying_relu"]
    assert finding.evidence["dead_fraction"] >= 0.7 and finding.layer in {"1", "3", "5", "7", "9"}
    assert "LeakyReLU" in finding.remedies[0]


def test_unit_variance_tanh_saturates() -> None:
    net = _mlp(6, 128, nn.Tanh)
    il.initialize(net, "normal", generator=torch.Generator().manual_seed(0))  # N(0, 1): σ_w² = fan_in
    mon = Monitor(net, every=1)
    _train(net, mon, 5, lr=1e-3)
    finding = _kinds(mon)["saturation"]
    assert finding.evidence["saturated_fraction"] > 0.5


def test_huge_learning_rate_nan_at_the_step_it_appears() -> None:
    net = _mlp(4, 64, nn.ReLU)
    il.initialize(net, "he_normal", generator=torch.Generator().manual_seed(0))
    mon = Monitor(net, every=1, stop_on=("nan",))
    with pytest.raises(il.TrainingDiverged) as info:
        _train(net, mon, 50, lr=1e4)
    finding = info.value.finding
    assert isinstance(finding, il.monitor.Finding) and finding.kind == "nan"
    # Brute force: replay the same run and find the first step whose loss or gradients are not finite.
    torch.manual_seed(0)
    replay = _mlp(4, 64, nn.ReLU)
    il.initialize(replay, "he_normal", generator=torch.Generator().manual_seed(0))
    data, g = load("digits"), torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(replay.parameters(), lr=1e4)
    first = None
    for step in range(1, 51):
        idx = torch.randint(0, data.train_x.shape[0], (64,), generator=g)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(replay(data.train_x.flatten(1)[idx]), data.train_y[idx])
        loss.backward()
        grads_ok = all(torch.isfinite(p.grad).all() for p in replay.parameters())
        if not math.isfinite(loss.item()) or not grads_ok:
            first = step
            break
        opt.step()
    assert finding.step == first
    assert "lower the learning rate" in finding.remedies[0]


def test_on_finding_callback_and_thresholds() -> None:
    seen: list[str] = []
    net = _mlp(5, 64, nn.ReLU)
    il.initialize(net, "he_normal", bias=-3.0, generator=torch.Generator().manual_seed(0))
    mon = Monitor(net, every=1, on_finding=lambda f: seen.append(f.kind), thresholds=Thresholds(dead_fraction=1.01))
    _train(net, mon, 5)
    assert "dying_relu" not in seen  # the threshold is configurable
    assert seen == [f.kind for f in mon.findings]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_no_false_positive_on_a_healthy_net(seed: int) -> None:
    torch.manual_seed(seed)
    net = _mlp(10, 64, nn.ReLU, norm=True)
    il.initialize(net, "he_normal", generator=torch.Generator().manual_seed(seed))
    mon = Monitor(net, every=1)
    losses = _train(net, mon, 200, lr=0.05, seed=seed)
    assert mon.findings == []
    assert losses[-1] < losses[0]


def test_detect_reads_each_record_by_its_own_layout() -> None:
    """Records that change layout mid-run (a layer left out of a step) are read by their own keys, finite
    values whose sum overflows are not NaN, and the first non-finite value is found in record order."""
    from initlab.monitor.detectors import DetectorState, detect

    weights, t = ["a.weight", "b.weight"], Thresholds()
    state = DetectorState()
    full = {("a", "mean"): 1e308, ("a", "std"): 1e308, ("b", "mean"): 0.0, ("b", "std"): 1.0,
            ("a.weight", "grad_norm"): 1.0, ("b.weight", "grad_norm"): 1.0}  # fmt: skip
    assert detect(state, 1, full, weights, t) == []  # 2e308 overflows the sum; no value is non-finite
    skipped = {("b", "mean"): 0.0, ("b", "std"): math.inf, ("a.weight", "grad_norm"): math.nan,
               ("b.weight", "grad_norm"): 1.0}  # fmt: skip
    (finding,) = detect(state, 2, skipped, weights, t)
    assert (finding.kind, finding.layer, finding.step, finding.evidence) == ("nan", "b", 2, {"std": math.inf})
    # Back to the first layout, read by it (a stale layout would name "b" again, already reported).
    (finding,) = detect(state, 3, {**full, ("a", "mean"): math.nan}, weights, t)
    assert (finding.kind, finding.layer, finding.step) == ("nan", "a", 3)


@pytest.mark.parametrize(("name", "value"), [("plateau_steps", 0), ("patience", -1), ("plateau_steps", 2.5)])
def test_thresholds_reject_step_counts_below_one(name: str, value: object) -> None:
    default = getattr(Thresholds, name)
    message = (f"Thresholds.{name} must be a whole number of recorded steps. Accepted: an int >= 1. "
               f"Received: {value!r}. Pass {name}={default} (the default) or more.")  # fmt: skip
    with pytest.raises(InitlabError, match=re.escape(message)):
        Thresholds(**{name: value})


def test_a_zero_initialized_residual_branch_is_not_a_dead_relu() -> None:
    # issue 21: the demo's best residual run carried "dying ReLU 100%" because each branch [Linear, ReLU] starts
    # with its Linear at exactly zero (residual="zero_last"), so the ReLU's input is exactly 0 - by design, not
    # dead units. Such a layer is silent; a ReLU with a negative bias is still dead (test above).
    from initlab.compare.models import ModelSpec, build

    net = build(ModelSpec("mlp", 8, 64, "relu", residual=True), (64,), 10)
    il.initialize(net, "he_normal", residual="zero_last", generator=torch.Generator().manual_seed(0))
    mon = Monitor(net, every=1)
    _train(net, mon, 10)
    assert "dying_relu" not in _kinds(mon)
    silent = [name for name, _ in mon.layers if mon._silent(name)]
    assert len(silent) == 7  # the 7 residual blocks' ReLUs; the first hidden layer's ReLU is not silent


def test_a_finding_does_not_solve_the_mean_field_on_the_training_step() -> None:
    # regression (issue 35): the first vanishing finding computed its remedies inside the step (29 mean-field
    # solves, a 0.4 s stall on a 30-layer MLP). They are computed when read, from the weights of the step the
    # finding fired in: changing the weights afterwards does not change the remedy.
    net = _mlp(20, 64, nn.Sigmoid)
    il.initialize(net, "small_random", generator=torch.Generator().manual_seed(0))
    seen: list[il.monitor.Finding] = []
    mon = Monitor(net, every=1, on_finding=seen.append)
    _train(net, mon, 20, lr=0.0)
    finding = next(f for f in seen if f.kind == "vanishing")
    assert callable(finding.ranked)  # nothing computed yet
    with torch.no_grad():
        for module in net:
            if isinstance(module, nn.Linear):
                module.weight.mul_(50.0)  # would move χ1 far from 0.002 if the remedy read today's weights
    assert "for sigmoid (this model: 0.00" in finding.remedies[0]
    assert finding.remedies is finding.ranked  # computed once, then kept


def test_a_zero_bias_has_no_gradient_weight_ratio() -> None:
    # regression (issue 35): the table showed grad_weight_ratio = inf for zero-initialized biases
    net = _mlp(2, 16, nn.ReLU)
    il.initialize(net, "he_normal", generator=torch.Generator().manual_seed(0))  # biases exactly zero
    mon = Monitor(net, every=1)
    _train(net, mon, 1)
    assert math.isnan(mon.history.records[-1][("0.bias", "grad_weight_ratio")])
    assert mon.history.records[-1][("0.bias", "grad_norm")] > 0
    row = next(line for line in str(mon.summary()).splitlines() if "0.bias" in line)
    assert "inf" not in row and "nan" not in row and "-" in row


def test_a_finding_travels_to_another_process_with_its_remedies() -> None:
    # regression: sweeps pickle a run's findings to the driver; the not-yet-computed remedies must travel too
    import pickle

    net = _mlp(20, 64, nn.Sigmoid)
    il.initialize(net, "small_random", generator=torch.Generator().manual_seed(0))
    mon = Monitor(net, every=1)
    _train(net, mon, 20)
    finding = next(f for f in mon.findings if f.kind == "vanishing")
    copy = pickle.loads(pickle.dumps(finding))
    assert copy.remedies == finding.remedies and copy.remedies[0].startswith("initialize closer to the edge")
