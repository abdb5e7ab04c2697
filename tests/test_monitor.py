"""Monitor: probes against brute-force autograd (oracles), hooks' lifecycle, history and export."""

from __future__ import annotations

import io
import json
import math
import re
import weakref
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from initlab import InitlabError
from initlab.monitor import GradientNorms, Monitor, fused_kernels, log_schedule, probes

ROWS = 16  # ActivationStats' default sample


@pytest.fixture(params=["fused", "torch"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each oracle runs on both paths: the fused C kernels (CPU float32/float64 tensors, the default here)
    and the torch kernels that serve everything else (GPU, half precision, an install without a compiler)."""
    if request.param == "torch":
        monkeypatch.setattr(probes, "_fused", None)
    return str(request.param)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 200), nn.Tanh(), nn.Linear(200, 200), nn.ReLU(inplace=True),
                         nn.Linear(200, 200), nn.Sigmoid(), nn.Linear(200, 5))  # fmt: skip


def _brute(net: nn.Sequential, x: torch.Tensor) -> dict[str, torch.Tensor]:
    outs, h = {}, x
    for i, m in enumerate(net):
        h = m(h if not getattr(m, "inplace", False) else h.clone())
        outs[str(i)] = h.detach()
    return outs


def test_activation_probe_matches_brute_force(path: str) -> None:
    net, x = _net(), torch.randn(64, 32, generator=torch.Generator().manual_seed(1)) * 3
    outs = _brute(net, x)
    with Monitor(net, every=1) as mon:
        net(x).sum().backward()
    record = mon.history.records[-1]
    for layer, (dead_rule, sat_level) in {"1": (None, math.tanh(5)), "3": ("zero", None),
                                          "5": (None, 1 / (1 + math.exp(-5)))}.items():  # fmt: skip
        y = outs[layer][:ROWS]
        assert record[(layer, "mean")] == pytest.approx(y.mean().item(), rel=1e-5, abs=1e-6)
        assert record[(layer, "std")] == pytest.approx(y.std().item(), rel=1e-4)
        assert record[(layer, "dead")] == pytest.approx((y <= 0).float().mean().item() if dead_rule else 0.0)
        if layer == "1":
            assert record[(layer, "saturated")] == pytest.approx((y.abs() >= sat_level).float().mean().item())
        if layer == "5":
            expected = ((y >= sat_level) | (y <= 1 - sat_level)).float().mean().item()
            assert record[(layer, "saturated")] == pytest.approx(expected)


def test_gradient_probe_matches_brute_force(path: str) -> None:
    net, x = _net(), torch.randn(64, 32)
    with Monitor(net, every=1, probes=[GradientNorms(sample_rows=None, weight_every=1)]) as mon:
        net(x).pow(2).mean().backward()
    record = mon.history.records[-1]
    for name, p in net.named_parameters():
        assert record[(name, "grad_norm")] == pytest.approx(p.grad.norm().item(), rel=1e-5)
        assert record[(name, "grad_weight_ratio")] == pytest.approx((p.grad.norm() / p.norm()).item(), rel=1e-5)


def test_sampled_gradient_norm_is_the_documented_estimator(path: str) -> None:
    net, x = _net(), torch.randn(256, 32, generator=torch.Generator().manual_seed(2))
    with Monitor(net, every=1) as mon:  # default at every step: first 64 rows of matrices with more rows
        net(x).pow(2).mean().backward()
    record = mon.history.records[-1]
    for name, p in net.named_parameters():
        g = p.grad
        k = 64 if g.ndim == 2 and g.shape[0] > 64 else g.shape[0]
        estimate = math.sqrt(g.shape[0] / k) * g[:k].norm().item()
        assert record[(name, "grad_norm")] == pytest.approx(estimate, rel=1e-5)
        if k < g.shape[0]:  # the bound: batch means over 8 runs of 8 rows, as documented, computed here anew
            runs = np.array([g[i : i + 8].double().pow(2).sum().item() * 8 for i in range(0, 64, 8)])
            se = runs.std(ddof=1) / np.sqrt(8) * np.sqrt((g.shape[0] - k) / (g.shape[0] - 1))
            assert record[(name, "grad_norm_err")] == pytest.approx(0.5 * 2.365 * se / runs.mean(), rel=1e-4)
        else:
            assert (name, "grad_norm_err") not in record  # read whole: exact, no bound to state
        # and the estimate is close to the exact norm here (tolerance 15%: row norms of a random net vary)
        assert record[(name, "grad_norm")] == pytest.approx(g.norm().item(), rel=0.15)
        # the weight norm under the ratio is sampled the same way (weight rows are alike: within 2% here)
        w = math.sqrt(p.shape[0] / k) * p.detach()[:k].norm().item()
        assert record[(name, "grad_weight_ratio")] == pytest.approx(estimate / w, rel=1e-5)
        assert w == pytest.approx(p.detach().norm().item(), rel=0.02)


@pytest.mark.parametrize("sample_rows", [None, 64])
def test_update_ratio_with_optimizer(path: str, sample_rows: int | None) -> None:
    net, x = _net(), torch.randn(64, 32, generator=torch.Generator().manual_seed(3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    probe = probes.UpdateRatio(opt, sample_rows=sample_rows)
    weights = [[p.detach().clone() for p in net.parameters()]]
    with Monitor(net, every=3, probes=[probe]) as mon:  # steps 1 and 3 recorded, 2 and 4 not
        for _ in range(4):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
            weights.append([p.detach().clone() for p in net.parameters()])
    assert mon.history.steps == [1, 3]
    record = mon.history.records[-1]  # step 3: weights[2] → weights[3], with the buffers of step 1 reused
    for name, b, w in zip(dict(net.named_parameters()), weights[2], weights[3], strict=True):
        exact = ((w - b).norm() / w.norm()).item()
        # the documented estimator: the first 64 rows of matrices with more rows, else exact
        k = 64 if sample_rows and w.ndim == 2 and w.shape[0] > 64 else w.shape[0]
        estimate = ((w[:k] - b[:k]).norm() / w[:k].norm()).item()
        assert record[(name, "update_ratio")] == pytest.approx(estimate, rel=1e-4)
        # here within 15% of the exact ratio (the sampled gradient norm's tolerance, same net)
        assert record[(name, "update_ratio")] == pytest.approx(exact, rel=1e-4 if k == w.shape[0] else 0.15)


def test_update_ratio_when_the_optimizer_replaces_a_weight(path: str) -> None:
    """A weight replaced during the optimizer step: by a non-contiguous copy, the ratio is still taken (on
    the fused path the C snapshot is then compared with torch kernels); by one of another shape, the step
    has no update ratio and training goes on."""
    net, x = nn.Sequential(nn.Linear(8, 100), nn.Tanh(), nn.Linear(100, 3)), torch.randn(16, 8)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    weight, replace = net[0].weight, [lambda w: w.t().contiguous().t(), lambda w: w[:, :4].clone()]
    opt.register_step_post_hook(lambda *_: setattr(weight, "data", replace.pop(0)(weight.data)))  # runs first
    with Monitor(net, every=1, optimizer=opt) as mon:
        before = weight.detach().clone()
        net(x).pow(2).sum().backward()
        opt.step()
        assert not weight.is_contiguous()
        w = weight.detach()
        expected = ((w - before).norm() / w.norm()).item()
        assert mon.history.records[0][("0.weight", "update_ratio")] == pytest.approx(expected, rel=1e-4)
        opt.zero_grad()  # the old gradient's strides no longer match the weight's
        net(x).pow(2).sum().backward()
        opt.step()
    assert weight.shape == (100, 4)
    assert mon.history.steps == [1, 2] and not any(stat == "update_ratio" for _, stat in mon.history.records[1])


def _update_ratio(**kw: Any) -> probes.UpdateRatio:
    return probes.UpdateRatio(torch.optim.SGD(_net().parameters()), **kw)


@pytest.mark.parametrize("make", [probes.ActivationStats, GradientNorms, _update_ratio])
def test_sample_rows_must_be_positive_or_none(make: Any) -> None:
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InitlabError) as info:
            make(sample_rows=bad)
        assert str(info.value) == (
            'sample_rows must be a positive number of rows. Accepted: an int >= 1, None to read every row, or "auto". '
            f"Received: {bad!r}. Pass e.g. sample_rows=64, or None for exact statistics."
        )
    assert make(sample_rows=None).sample_rows is None


def test_activation_stats_read_every_row_with_sample_rows_none(path: str) -> None:
    net, x = _net(), torch.randn(64, 32, generator=torch.Generator().manual_seed(4))
    outs = _brute(net, x)
    with Monitor(net, every=1, probes=[probes.ActivationStats(sample_rows=None)]) as mon:
        net(x).sum().backward()
    record = mon.history.records[-1]
    assert record[("3", "mean")] == pytest.approx(outs["3"].mean().item(), rel=1e-5)
    assert record[("3", "dead")] == pytest.approx((outs["3"] <= 0).float().mean().item())


def test_module_reused_twice_is_recorded_twice(path: str) -> None:
    act = nn.Tanh()

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.act = nn.Linear(4, 4), nn.Linear(4, 2), act

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.act(self.a(self.act(x))))

    net = Twice()
    x = torch.randn(8, 4)
    with Monitor(net, every=1) as mon:
        net(x).sum().backward()
    record = mon.history.records[-1]
    assert record[("act", "mean")] == pytest.approx(torch.tanh(x).mean().item(), rel=1e-5)
    second = torch.tanh(net.a(torch.tanh(x))).detach()
    assert record[("act#2", "mean")] == pytest.approx(second.mean().item(), rel=1e-5)


def test_hooks_are_removed_on_exit_and_on_exceptions() -> None:
    net = _net()
    armed: list[bool] = []

    def fail_inside() -> None:
        with Monitor(net, every=1):
            armed.append(any(m._forward_hooks for m in net.modules()))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert armed == [True]
    assert not any(m._forward_hooks for m in net.modules())


def test_schedules_and_manual_steps() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    with Monitor(net, every=5) as mon:
        for _ in range(12):
            net(torch.randn(4, 4)).sum().backward()
    assert mon.history.steps == [1, 5, 10]
    with Monitor(net, every=lambda s: s % 2 == 0, auto_step=False) as mon:
        for _ in range(4):
            loss = net(torch.randn(4, 4)).sum()
            loss.backward()
            mon.step(loss)
    assert mon.history.steps == [2, 4]
    assert ("model", "loss") in mon.history.records[-1]
    assert [s for s in range(1, 1000) if log_schedule(2)(s)] == [1, 3, 10, 32, 100, 316]


def test_history_exports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    net = _net()
    with Monitor(net, every=1) as mon:
        for _ in range(2):
            loss = net(torch.randn(8, 32)).sum()
            mon.observe_loss(loss)
            loss.backward()
    rows = mon.history.to_records()
    assert {"step", "layer", "stat", "value"} == set(rows[0])
    path = mon.history.to_jsonl(tmp_path / "h.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(rows) and lines[-1]["stat"] == "loss"
    console = Console(file=io.StringIO(), width=200)
    console.print(mon.summary())
    text = console.file.getvalue()
    assert "initlab.Monitor: step 2, 0 finding(s)" in text and "grad_norm" in text
    printed = str(mon.summary())  # what README's print(mon.summary()) shows (it was <rich.table.Table object ...>)
    assert "initlab.Monitor: step 2, 0 finding(s)" in printed and "grad_norm" in printed and "object at" not in printed


def test_tensorboard_files_read_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from initlab.monitor import TensorBoardWriter

    # issue 24: tags initlab/<stat>/<layer> with layers by module path; a statistic that does not apply (dead
    # units after tanh, saturation after ReLU) is not written (it was written as 0.0)
    net = nn.Sequential(nn.Linear(32, 16), nn.Sequential(nn.ReLU(), nn.Linear(16, 16), nn.Tanh()), nn.Linear(16, 2))
    with Monitor(net, every=1) as mon:
        for _ in range(3):
            net(torch.randn(8, 32)).sum().backward()
    with TensorBoardWriter(tmp_path) as tb:
        assert tb.write(mon.history) == 3
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    scalars = events.Scalars("initlab/grad_norm/0.weight")
    assert [e.step for e in scalars] == [1, 2, 3]
    assert scalars[-1].value == pytest.approx(mon.history.records[-1][("0.weight", "grad_norm")], rel=1e-6)
    tags = set(events.Tags()["scalars"])
    assert {"initlab/dead/1.0", "initlab/saturated/1.2", "initlab/std/1.0", "initlab/std/1.2"} <= tags
    assert not {"initlab/saturated/1.0", "initlab/dead/1.2"} & tags
    assert all(tag.startswith("initlab/") for tag in tags)


def test_functional_activations_are_watched_at_the_pre_activations(path: str) -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 64), nn.Linear(64, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(torch.tanh(self.a(x)))

    net = Functional()
    with torch.no_grad():
        net.a.weight.mul_(50)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    with Monitor(net, every=1) as mon:
        net(x).sum().backward()
    pre = net.a(x).detach()[:ROWS]  # fx found tanh after layer a: |pre-activation| > 5 is saturated
    assert mon.history.records[-1][("a", "saturated")] == pytest.approx((pre.abs() >= 5).float().mean().item())


def test_output_changed_in_place_after_its_hook_is_never_reported_wrong(path: str) -> None:
    """An output overwritten later in the forward pass (here ``h.add_(100)``, which would shift its mean by
    100): the fused path has reduced it in its hook already; the torch path keeps a reference, so it leaves
    the layer out of that step and copies the output inside its hook from then on."""

    class Overwrites(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act, self.out = nn.Linear(8, 32), nn.LeakyReLU(0.1), nn.Linear(32, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.act(self.fc(x))
            expected.append(h.detach().clone()[:ROWS])
            y = self.out(h * 1.0)
            h.add_(100.0)  # nothing autograd needs: LeakyReLU saved its input, the product only a scalar
            return y

    torch.manual_seed(3)
    net, expected = Overwrites(), []
    mon = Monitor(net, every=1)
    expected.clear()  # the monitor ran the model once to read its structure (initlab.init.structure)
    with mon:
        for _ in range(2):
            net(torch.randn(32, 8)).sum().backward()
    first, second = mon.history.records
    if path == "fused":
        assert first[("act", "mean")] == pytest.approx(expected[0].mean().item(), rel=1e-5)
    else:
        assert ("act", "mean") not in first  # step 1: the overwritten output is not used
    assert second[("act", "mean")] == pytest.approx(expected[1].mean().item(), rel=1e-5)  # step 2: copied
    assert second[("act", "dead")] == pytest.approx((expected[1] <= 0).float().mean().item())


def test_functional_inplace_activation_is_watched_at_its_preactivation(path: str) -> None:
    """Without activation modules the weight layers' outputs are watched; ``F.relu(x, inplace=True)``
    overwrites them, so they are copied in the hook: right from the first step."""

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 64), nn.Linear(64, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(nn.functional.relu(self.a(x), inplace=True))

    torch.manual_seed(4)
    net, x = Functional(), torch.randn(32, 8)
    pre = net.a(x).detach()[:ROWS]
    with Monitor(net, every=1) as mon:
        net(x).sum().backward()
    record = mon.history.records[0]
    assert record[("a", "mean")] == pytest.approx(pre.mean().item(), rel=1e-5)
    assert record[("a", "dead")] == pytest.approx((pre <= 0).float().mean().item())
    # and the test can tell: had the overwritten tensor been read, the mean would be the ReLU output's
    assert pre.clamp_min(0).mean().item() != pytest.approx(pre.mean().item(), rel=0.1)


def test_outputs_are_let_go_at_the_end_of_the_forward_pass_and_on_close(path: str) -> None:
    """Held into the backward pass, outputs would be freed late (and the memory the backward pass takes
    instead costs page faults); on the torch path a forward pass that never reaches the model's output holds
    them until close, the fused path holds none at all."""
    net, x = _net(), torch.randn(8, 32)
    refs: list[weakref.ref[torch.Tensor]] = []
    net[1].register_forward_hook(lambda m, i, o: refs.append(weakref.ref(o)))
    mon = Monitor(net, every=1)
    with mon:
        probe = mon.probes[0]
        y = net(x)
        del y  # frees the graph, and with it autograd's reference to the Tanh output
        assert refs[0]() is None  # so nothing in the monitor keeps it alive
        net[:2](x)  # part of the model: its watched output is held, the forward pass has not ended
        assert len(probe._pending) == (1 if path == "torch" else 0)
    assert probe._pending == [] and probe._batches == [] and probe._done == []


def test_half_precision_outputs_and_a_dtype_change_between_steps() -> None:
    """Same layers and shapes, new dtype: the reused stacking plan is rebuilt; bfloat16 samples are reduced
    in float32 (tolerance: bfloat16 rounding of the outputs themselves, which the oracle shares)."""
    torch.manual_seed(0)
    net, x = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2)), torch.randn(16, 8)
    with Monitor(net, every=1) as mon:
        net(x).sum().backward()
        net.to(torch.bfloat16)
        net(x.bfloat16()).sum().backward()
    expected = torch.relu(net[0](x.bfloat16())).float()
    assert mon.history.records[1][("1", "mean")] == pytest.approx(expected.mean().item(), rel=1e-5)
    assert mon.history.records[1][("1", "std")] == pytest.approx(expected.std().item(), rel=1e-4)


def test_float64_outputs_are_reduced_in_float64(path: str) -> None:
    """A float64 model's statistics keep float64 precision (the result vector follows the samples' dtype):
    outputs near 1000 with a spread of ~1, where float32 sums would be off by ~1e-7 relative and the variance
    by far more; tolerance 1e-12 on the mean, 1e-9 on the std."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2)).double()
    with torch.no_grad():
        net[0].bias.fill_(1e3)
    x = torch.randn(32, 8, dtype=torch.float64)
    with Monitor(net, every=1) as mon:
        net(x).sum().backward()
    expected = torch.relu(net[0](x[:ROWS])).detach()
    assert mon.history.records[0][("1", "mean")] == pytest.approx(expected.mean().item(), rel=1e-12)
    assert mon.history.records[0][("1", "std")] == pytest.approx(expected.std().item(), rel=1e-9)


def test_scalar_parameter_gradient_norm(path: str) -> None:
    """A 0-d parameter (a learnable scale, as in Fixup) is read whole; its gradient norm is |grad|."""

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.scale = nn.Linear(4, 2), nn.Parameter(torch.tensor(0.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * self.scale

    torch.manual_seed(0)
    net = Scaled()
    with Monitor(net, every=1) as mon:
        net(torch.randn(8, 4)).pow(2).mean().backward()
    assert net.scale.grad is not None
    assert mon.history.records[0][("scale", "grad_norm")] == pytest.approx(net.scale.grad.abs().item(), rel=1e-6)
    assert mon.history.records[0][("scale", "grad_weight_ratio")] == pytest.approx(net.scale.grad.abs().item() / 0.5)


def test_steps_without_a_backward_pass_hold_nothing(path: str) -> None:
    """A frozen model's forward passes (grad enabled, output without grad) count as steps but cannot be
    recorded: what the hooks collected for them is dropped, not accumulated step after step."""
    net = _net()
    net.requires_grad_(False)
    with Monitor(net, every=1) as mon:
        for _ in range(5):
            net(torch.randn(4, 32))
        probe = mon.probes[0]
        assert mon.steps == 5 and probe._pending == [] and probe._batches == [] and probe._done == []
        assert mon.history.steps == []


def test_half_precision_saturation_uses_the_exact_level() -> None:
    """sigmoid(4.84) rounds to 0.99219 in bfloat16, below sigmoid(5) = 0.99331: not saturated. Compared in
    bfloat16, the level itself would round to 0.99219 and count it."""
    net = nn.Sequential(nn.Linear(1, 1), nn.Sigmoid(), nn.Linear(1, 1)).to(torch.bfloat16)
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.zero_()
    x = torch.full((4, 1), 4.84375, dtype=torch.bfloat16)  # exactly representable
    assert net[1](net[0](x))[0].item() == pytest.approx(0.99219, abs=1e-5)
    with Monitor(net, every=1) as mon:
        net(x).sum().backward()
    assert mon.history.records[0][("1", "saturated")] == 0.0


def test_fused_kernels_are_built() -> None:
    """setup.py builds them wherever a C compiler is (CI has one): without this, every "fused" case above would
    quietly test the torch path twice."""
    assert fused_kernels(), "initlab.monitor._fused was not built: reinstall with a C compiler (pip install -e .)"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_kernels_against_numpy(dtype: torch.dtype) -> None:
    """Both C functions on lengths around their 256-element blocks, with NaN, ±Inf and a zero count; tolerance
    1e-6 relative for float32 sums (blocks of 256 summed in float32), 1e-12 for float64."""
    from initlab.monitor import _fused

    rng = np.random.default_rng(0)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    for n in (0, 1, 7, 255, 256, 257, 1000, 4096 + 3):
        t = torch.from_numpy(rng.normal(0, 2, n)).to(dtype)
        x = t.double().numpy()
        s, ss, pos, above, below = _fused.sums(t.data_ptr(), n, dtype == torch.float64, 1.5, -0.5)
        assert (pos, above, below) == ((x > 0).sum(), (x >= 1.5).sum(), (x <= -0.5).sum())
        assert s == pytest.approx(x.sum(), rel=tol, abs=tol * n)
        assert ss == pytest.approx((x * x).sum(), rel=tol)
        assert _fused.sumsq([t.data_ptr(), 0], [n, 5], dtype == torch.float64) == [pytest.approx(ss, rel=tol), 0.0]
    t = torch.tensor([1.0, math.nan, 3.0, math.inf, -math.inf], dtype=dtype)
    s, ss, pos, above, below = _fused.sums(t.data_ptr(), 5, dtype == torch.float64, 2.0, -1.0)
    assert math.isnan(s) and math.isnan(ss) and (pos, above, below) == (3, 2, 1)  # NaN counts nowhere
    assert math.isinf(_fused.sumsq([t[3:].data_ptr()], [1], dtype == torch.float64)[0])
    with pytest.raises(ValueError, match="negative count"):
        _fused.sums(t.data_ptr(), -1, False, 0.0, 0.0)
    if dtype == torch.float32:  # squares beyond float32's range overflow on both paths, as torch's own norms do
        big = torch.full((8,), 1e20)
        assert _fused.sumsq([big.data_ptr()], [8], False) == [math.inf]
        assert torch._foreach_norm([big])[0].item() == math.inf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_snapshot_and_update_sums_against_numpy(dtype: torch.dtype) -> None:
    """snapshot copies segments one after another; update_sumsq compares them with the values now (same
    lengths and tolerances as above)."""
    from initlab.monitor import _fused

    rng, f64 = np.random.default_rng(1), dtype == torch.float64
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    counts = [0, 1, 7, 255, 256, 257, 1000, 4096 + 3]
    ts = [torch.from_numpy(rng.normal(0, 2, n)).to(dtype) for n in counts]
    flat = torch.empty(sum(counts), dtype=dtype)
    _fused.snapshot([t.data_ptr() for t in ts], counts, f64, flat.data_ptr())
    assert torch.equal(flat, torch.cat(ts))
    before = [t.double().numpy().copy() for t in ts]
    for t in ts:
        t.add_(torch.from_numpy(rng.normal(0, 0.01, t.numel())).to(dtype))
    out = _fused.update_sumsq([t.data_ptr() for t in ts], counts, f64, flat.data_ptr())
    for j, (t, b) in enumerate(zip(ts, before, strict=True)):
        x = t.double().numpy()
        # a float32 difference of values ~2 rounds at ~2e-7, i.e. ~2e-5 of a 0.01 step: tolerance 1e-4 there
        assert out[2 * j] == pytest.approx(((x - b) ** 2).sum(), rel=tol if f64 else 1e-4)
        assert out[2 * j + 1] == pytest.approx((x * x).sum(), rel=tol)
    with pytest.raises(ValueError, match="negative count"):
        _fused.snapshot([ts[1].data_ptr()], [-1], f64, flat.data_ptr())
    with pytest.raises(TypeError, match="takes 4 arguments"):
        _fused.update_sumsq([ts[1].data_ptr()], [1], f64)
    with pytest.raises(ValueError, match="a null buffer address"):
        _fused.update_sumsq([ts[1].data_ptr()], [1], f64, 0)
    with pytest.raises(ValueError, match="as many counts as addresses"):  # the check all three list calls share
        _fused.sumsq([ts[1].data_ptr()], [1, 1], f64)


def test_layers_on_both_paths_in_one_step_keep_call_order() -> None:
    """A non-contiguous output (a ReLU applied to a transposed tensor) takes the torch path while the others
    take the fused one: the record still lists the layers in call order, each matching brute force."""

    class Transposed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.r1, self.r2, self.t3, self.b = (
                nn.Linear(8, 32),
                nn.ReLU(),
                nn.ReLU(),
                nn.Tanh(),
                nn.Linear(32, 2),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.r1(self.a(x))
            h = self.r2((h - 0.1).t()).t()  # r2's output is a transposed (non-contiguous) tensor
            return self.b(self.t3(h * 2))

    torch.manual_seed(5)
    net, x = Transposed(), torch.randn(24, 8)
    h1 = torch.relu(net.a(x)).detach()
    h2 = torch.relu(h1 - 0.1)
    h3 = torch.tanh(h2 * 2)
    with Monitor(net, every=1) as mon:
        net(x).sum().backward()
    record = mon.history.records[0]
    assert list(mon.probes[0]._plans) == [("r2",)]  # r2, and only r2, went the torch path
    assert [layer for layer, stat in record if stat == "mean"] == ["r1", "r2", "t3"]
    for layer, h in (("r1", h1), ("r2", h2.t()), ("t3", h3)):  # r2's module output is the transposed one
        assert record[(layer, "mean")] == pytest.approx(h[:ROWS].mean().item(), rel=1e-5)
        assert record[(layer, "dead")] == pytest.approx((h[:ROWS] <= 0).float().mean().item() if layer != "t3" else 0)


def test_a_monitor_that_only_saw_no_grad_passes_says_it_recorded_nothing() -> None:
    # issue 23: used under torch.no_grad() it recorded nothing and said nothing
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    mon = Monitor(net, every=1).__enter__()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(4, 8))
    message = ("initlab.Monitor recorded nothing: the model ran 3 times, always under torch.no_grad() (or inference "
               "mode), where there are no gradients to watch.")  # fmt: skip
    with pytest.warns(UserWarning, match=re.escape(message)):
        mon.close()
    # evaluation passes beside real steps are normal: no warning then (warnings are errors in this suite)
    with Monitor(net, every=1) as mon:
        net(torch.randn(4, 8)).sum().backward()
        with torch.no_grad():
            net(torch.randn(4, 8))
    assert mon.steps == 1


@pytest.mark.parametrize("every", [2, 10])
def test_statistics_are_exact_when_not_every_step_is_recorded(path: str, every: int) -> None:
    # issue 35: samples only where the schedule records every step; at every=10 the values are exact
    net, x = _net(), torch.randn(256, 32, generator=torch.Generator().manual_seed(5))
    with Monitor(net, every=every) as mon:
        assert not mon.records_every_step
        for _ in range(every):
            net(x).pow(2).mean().backward()
    record = mon.history.records[-1]
    outs = _brute(net, x)
    for name, p in net.named_parameters():
        assert record[(name, "grad_norm")] == pytest.approx(p.grad.norm().item(), rel=1e-5)
        assert (name, "grad_norm_err") not in record
    layer = "1"  # the tanh's output
    assert record[(layer, "mean")] == pytest.approx(outs[layer].mean().item(), rel=1e-4, abs=1e-7)
    assert record[(layer, "std")] == pytest.approx(outs[layer].std().item(), rel=1e-4)


def test_a_sampled_norm_shows_its_error_bound_beside_it() -> None:
    net = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 4))
    with Monitor(net, every=1) as mon:
        net(torch.randn(64, 32)).pow(2).mean().backward()
    header = next(line for line in str(mon.summary()).splitlines() if "grad_norm" in line)
    assert header.index("grad_norm ") < header.index("grad_norm_err") < header.index("grad_weight_ratio")
