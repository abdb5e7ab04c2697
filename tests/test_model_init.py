"""initialize(): per-layer rules, activation detection, recurrent and residual rules."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

import initlab as il
from initlab.compare.models import ModelSpec, build


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_opt_in_gain_follows_the_activation_after_each_layer() -> None:
    # gain_from="activation" (issue 21: the default keeps kaiming_normal's published √2 everywhere)
    net = nn.Sequential(nn.Linear(256, 512), nn.Tanh(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    report = il.initialize(net, "kaiming_normal", generator=_gen(), gain_from="activation")
    rows = {r.name: r for r in report}
    assert rows["0.weight"].gain == pytest.approx(5 / 3)
    assert rows["2.weight"].gain == pytest.approx(math.sqrt(2))
    assert rows["4.weight"].activation == "linear"
    # The weights carry those gains: std = gain / sqrt(fan_in), within 2% on >= 5,000 values.
    assert net[0].weight.std().item() == pytest.approx(5 / 3 / 16, rel=0.02)
    assert net[2].weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.02)
    assert net[4].weight.std().item() == pytest.approx(1 / math.sqrt(512), rel=0.02)
    assert all(bool((m.bias == 0).all()) for m in (net[0], net[2], net[4]))


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 64)
        self.b = nn.Linear(64, 64)
        self.out = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.a(x))
        x = F.leaky_relu(self.b(x), 0.2)
        return self.out(x)


def test_functional_activations_are_seen() -> None:
    # issue 30: the structure's forward pass sees torch.tanh and F.leaky_relu(h, 0.2) with its slope
    report = il.initialize(Functional(), "he_normal", generator=_gen(), gain_from="activation")
    assert (report["a.weight"].activation, report["a.weight"].source) == ("tanh", "activation (function)")
    assert report["b.weight"].activation == "leaky_relu"
    assert report["b.weight"].gain == pytest.approx(math.sqrt(2 / 1.04))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.act = nn.Sigmoid()
        self.b = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace this
            x = x * 2
        return self.b(self.act(self.a(x)))


def test_python_control_flow_and_the_override() -> None:
    # torch.fx cannot trace Untraceable; the structure's forward pass runs it as Python does
    report = il.initialize(Untraceable(), "glorot_uniform", gain_from="activation")
    assert (report["a.weight"].activation, report["a.weight"].source) == ("sigmoid", "activation (module)")
    report = il.initialize(Untraceable(), "glorot_uniform", activation={"a": "tanh"}, gain_from="activation")
    assert (report["a.weight"].activation, report["a.weight"].source) == ("tanh", "activation (override)")
    with pytest.raises(il.InitlabError, match=re.escape("unknown layer 'c'")):
        il.initialize(Untraceable(), activation={"c": "tanh"})


def test_grouped_conv_uses_true_fans() -> None:
    net = nn.Sequential(nn.Conv2d(64, 64, 3, groups=64), nn.ReLU())
    report = il.initialize(net, "glorot_normal", generator=_gen())
    assert (report["0.weight"].fan_in, report["0.weight"].fan_out) == (9, 9)


def test_embedding_padding_row_is_zero() -> None:
    emb = nn.Embedding(100, 16, padding_idx=0)
    il.initialize(emb, "lecun_normal", generator=_gen())
    assert emb.weight[0].abs().sum() == 0
    assert emb.weight[1:].std().item() == pytest.approx(1.0, rel=0.1)


def test_lstm_gates() -> None:
    lstm = nn.LSTM(10, 32, num_layers=2)
    il.initialize(lstm, "glorot_uniform", generator=_gen())
    for block in lstm.weight_hh_l1.chunk(4):
        torch.testing.assert_close(block @ block.T, torch.eye(32), atol=1e-5, rtol=0)
    bias = lstm.bias_ih_l0.chunk(4)
    assert bias[1].eq(1).all() and bias[0].eq(0).all() and lstm.bias_hh_l0.eq(0).all()
    # input weights per gate block: glorot over (in=10, out=32), not over the stacked 128 rows
    limit = math.sqrt(6 / (10 + 32))
    assert lstm.weight_ih_l0.abs().max().item() <= limit
    assert lstm.weight_ih_l0.abs().max().item() > 0.95 * limit


def test_norm_layers_and_attention() -> None:
    net = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU())
    with torch.no_grad():
        net[1].weight.fill_(3.0)
    il.initialize(net)
    assert net[1].weight.eq(1).all() and net[1].bias.eq(0).all()
    mha = nn.MultiheadAttention(32, 4)
    report = il.initialize(mha, "xavier_uniform", generator=_gen())
    assert report["in_proj_weight"].fan_in == 32 and report["in_proj_weight"].fan_out == 32
    assert mha.in_proj_bias.eq(0).all()


def test_residual_zero_last_makes_blocks_identity() -> None:
    net = build(ModelSpec("mlp", depth=4, width=16, residual=True, norm="batch"), (8,), 3)
    il.initialize(net, "he_normal", residual="zero_last", generator=_gen())
    x = torch.randn(5, 16)
    block = net[4]  # a Residual block: Linear, BatchNorm, ReLU
    block.eval()
    torch.testing.assert_close(block(x), x + torch.relu(torch.zeros(5, 16)))


def test_fixup_scales_inner_layers() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(64, 64), nn.Linear(64, 64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.b(torch.relu(self.a(x)))

    net = nn.Sequential(*[Block() for _ in range(16)])
    il.initialize(net, "he_normal", residual="fixup", generator=_gen())
    # L = 16 branches of m = 2 layers: scale 16^(-1/2) = 0.25 on He's std sqrt(2/64)
    assert net[0].a.weight.std().item() == pytest.approx(0.25 * math.sqrt(2 / 64), rel=0.05)
    assert net[0].b.weight.abs().sum() == 0


def test_weight_norm_parametrization_is_respected() -> None:
    layer = parametrizations.weight_norm(nn.Linear(400, 300))
    il.initialize(nn.Sequential(layer, nn.ReLU()), "he_normal", generator=_gen())
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.03)


def test_torch_default_reproduces_torch_bias_rule() -> None:
    net = nn.Linear(100, 50)
    il.initialize(net, "torch_default", generator=_gen())
    assert 0.05 < net.bias.abs().max().item() <= 0.1
    il.initialize(net, "torch_default", bias=0.0)
    assert net.bias.eq(0).all()


def test_same_seed_same_weights() -> None:
    a = build(ModelSpec("cnn", depth=3, width=8, groups=2), (1, 8, 8), 10)
    b = build(ModelSpec("cnn", depth=3, width=8, groups=2), (1, 8, 8), 10)
    il.initialize(a, "orthogonal", generator=_gen(5))
    il.initialize(b, "orthogonal", generator=_gen(5))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_delta_orthogonal_on_a_cnn_falls_back_for_linear() -> None:
    net = build(ModelSpec("cnn", depth=2, width=8), (1, 8, 8), 10)
    report = il.initialize(net, "delta_orthogonal", generator=_gen())
    schemes = {r.kind: r.scheme for r in report if r.name.endswith("weight")}
    assert schemes == {"Conv2d": "delta_orthogonal", "Linear": "orthogonal"}


def test_report_serializes() -> None:
    report = il.initialize(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), generator=_gen())
    data = report.to_dict()
    assert data["scheme"] == "he_normal" and data["rows"][0]["shape"] == [3, 3]
    assert "0.weight" in str(report)


def test_unknown_residual_rule() -> None:
    with pytest.raises(il.InitlabError, match=re.escape("unknown residual rule 'zero'")):
        il.initialize(nn.Linear(2, 2), residual="zero")


def test_zero_last_with_weight_norm_stays_finite() -> None:
    # regression: zeroing a weight-normed layer through its weight made v = 0 and w = 0/0 = NaN
    net = build(ModelSpec("mlp", depth=3, width=16, residual=True, weight_norm=True), (8,), 3)
    il.initialize(net, "he_normal", residual="zero_last", generator=_gen())
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert torch.isfinite(net(torch.randn(4, 8))).all()
    assert net[3].body[0].weight.abs().sum() == 0


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(1000, 64)
        self.out = nn.Linear(64, 1000)
        self.out.weight = self.emb.weight  # tied input and output embedding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(x))


def test_tied_weights_are_initialized_once_and_reported_once_with_every_name() -> None:
    # issue 23: the shared tensor was initialized twice and the report stated a std the tensor did not have
    model = _Tied()
    report = il.initialize(model, "he_normal", generator=_gen())
    rows = [r for r in report if "weight" in r.name]
    assert [r.name for r in rows] == ["emb.weight = out.weight"]
    assert model.emb.weight.std().item() == pytest.approx(rows[0].std, rel=0.02)  # 64,000 values: ~0.3% error
    assert model.out.weight is model.emb.weight


def test_models_initialize_cannot_handle_are_errors_not_silence() -> None:
    with pytest.warns(DeprecationWarning, match="torch.jit.script"):  # torch 2.13 deprecates it; users still have it
        scripted = torch.jit.script(nn.Linear(4, 4))
    with pytest.raises(il.InitlabError, match=re.escape(
            "initialize cannot reach the layers of a TorchScript module (they are compiled, not nn.Linear and "
            "friends). Accepted: an nn.Module. Received: 'RecursiveScriptModule'. Initialize the model first, then "
            "script it: initlab.initialize(model, ...); torch.jit.script(model).")):  # fmt: skip
        il.initialize(scripted, "he_normal")
    with pytest.raises(il.InitlabError, match=re.escape("the model has no parameters to initialize.")):
        il.initialize(nn.Sequential(nn.ReLU(), nn.Flatten()), "he_normal")


def test_parameters_without_a_rule_are_named_in_a_note() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.full((4,), 3.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) * self.scale

    model = Scaled()
    with pytest.warns(UserWarning, match=re.escape("initlab.initialize: 1 parameter is in modules initialize has no "
                                                   "rule for and left as they were: scale.")):  # fmt: skip
        report = il.initialize(model, "he_normal", generator=_gen())
    assert report.notes == ["1 parameter is in modules initialize has no rule for and left as they were: scale."]
    assert bool((model.scale == 3.0).all())


@pytest.mark.parametrize(("scheme", "bias"), [("sparse", None), ("he_normal", "orthogonal")])
def test_a_refused_initialize_leaves_the_model_as_it_was(scheme: str, bias: str | None) -> None:
    # issue 30 (plan, then draw): sparse_ cannot fill the conv, orthogonal cannot fill a bias; the Linear before
    # them was drawn before the refusal, now nothing is drawn until every plan has been checked
    model = nn.Sequential(nn.Linear(6, 8), nn.Unflatten(1, (2, 4)), nn.Conv1d(2, 3, 3))
    before = {name: t.clone() for name, t in model.state_dict().items()}
    with pytest.raises(il.InitlabError, match="needs a"):
        il.initialize(model, scheme, bias=bias, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(before[name], t) for name, t in model.state_dict().items())
