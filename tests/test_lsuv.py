"""LSUV and output biases from data (issue 25). Every std is measured here with our own hooks, in the mode
training uses (BatchNorm on batch statistics, Dropout off), on the batch LSUV used and on a second batch of the
same data. Tolerances: LSUV's own ``tol`` (0.1) on its batch; on a second batch of 512 examples the std of a
layer's output moves by sampling, so the band is widened by 0.05 (measured here: the 30-layer MLP's layers end
within 0.040 of the target on the second batch, the residual stream within 0.052)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import initlab as il

TOL, SECOND = 0.1, 0.15


def _data(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(512, *shape, generator=torch.Generator().manual_seed(seed))


def _output_stds(model: nn.Module, x: Tensor, kinds: tuple[type[nn.Module], ...]) -> dict[str, float]:
    """Each layer's output std on x, in train mode with Dropout off, without touching the model's state."""
    stds: dict[str, float] = {}

    def keep(name: str) -> object:
        def hook(module: nn.Module, inputs: object, output: Tensor) -> None:  # returns None: the output is kept
            stds.setdefault(name, float(output.std()))

        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if isinstance(m, kinds)]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()  # LSUV targets the std without dropout noise (the rule: deterministic measurement)
    with torch.no_grad():
        model(x)
    model.load_state_dict(state)
    for h in handles:
        h.remove()
    return stds


def _mlp_bn(depth: int = 30, width: int = 256) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(64 if i == 0 else width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(0.2)]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def test_every_layer_on_target_in_a_30_layer_mlp_with_batchnorm() -> None:
    model = _mlp_bn()
    x, other = _data((64,), 0), _data((64,), 1)
    report = il.lsuv(model, x, generator=torch.Generator().manual_seed(0))
    assert report.on_target == len(report.rows) == 31
    for batch, band in ((x, TOL), (other, SECOND)):
        stds = _output_stds(model, batch, (nn.Linear,))
        assert len(stds) == 31 and all(abs(s - 1.0) <= band for s in stds.values()), stds
    assert [r.name for r in report.rows][:2] == ["0.weight", "4.weight"]  # forward order, by the layer's output


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def _resnet(blocks: int = 14, width: int = 128) -> nn.Sequential:
    return nn.Sequential(nn.Linear(32, width), *[_Residual(width) for _ in range(blocks)], nn.Linear(width, 10))


def test_the_residual_stream_stays_in_the_band() -> None:
    x = _data((32,), 0)
    plain, streamed = _resnet(), _resnet()
    il.lsuv(plain, x, generator=torch.Generator().manual_seed(0))
    report = il.lsuv(streamed, x, stream=True, generator=torch.Generator().manual_seed(0))
    grown = list(_output_stds(plain, x, (_Residual,)).values())
    kept = list(_output_stds(streamed, x, (_Residual,)).values())
    assert len(kept) == len(report.stream) == 14
    assert grown[-1] > 3.0  # each branch at std 1, the sum grows like √(blocks + 1): the lsuv package's defect
    assert all(abs(s - 1.0) <= TOL for s in kept), kept  # stream=True: within target ± tol after every block
    assert kept == pytest.approx(report.stream, rel=1e-5)
    inner = [r for r in report.rows if not r.kind.endswith("(stream)")]
    assert len(inner) == 16 and all(r.converged for r in inner)  # the layers inside the branches: on target too
    assert sum(r.kind.endswith("(stream)") and r.converged for r in report.rows) == 14
    second = list(_output_stds(streamed, _data((32,), 1), (_Residual,)).values())
    assert all(abs(s - 1.0) <= SECOND for s in second)


def test_a_cnn_with_grouped_convs() -> None:
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1, groups=8),
                          nn.ReLU(), nn.Conv2d(32, 64, 3, groups=32), nn.ReLU(), nn.Flatten(),
                          nn.Linear(64 * 6 * 6, 10))  # fmt: skip
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    report = il.lsuv(model, x, generator=torch.Generator().manual_seed(0))
    assert report.on_target == 4
    stds = _output_stds(model, x, (nn.Conv2d, nn.Linear))
    assert all(abs(s - 1.0) <= TOL for s in stds.values()), stds


def test_an_lstm_is_scaled_on_its_input_projection() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.LSTM(32, 64, batch_first=True))
    x = torch.randn(64, 10, 16, generator=torch.Generator().manual_seed(0))
    report = il.lsuv(model, x, generator=torch.Generator().manual_seed(0))
    assert [r.name for r in report.rows] == ["0.weight", "1.weight_ih_l0"] and report.on_target == 2
    with torch.no_grad():
        projection = F.linear(model[0](x), model[1].weight_ih_l0)
    assert abs(float(projection.std()) - 1.0) <= TOL


def test_attention_projections() -> None:
    class Attend(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.attn = nn.Linear(8, 32), nn.MultiheadAttention(32, 4, batch_first=True)

        def forward(self, x: Tensor) -> Tensor:
            h = self.embed(x)
            return self.attn(h, h, h)[0]

    model = Attend()
    x = torch.randn(32, 6, 8, generator=torch.Generator().manual_seed(0))
    report = il.lsuv(model, x, generator=torch.Generator().manual_seed(0))
    assert [r.name for r in report.rows] == ["embed.weight", "attn.in_proj_weight[q]", "attn.in_proj_weight[k]",
                                             "attn.in_proj_weight[v]", "attn.out_proj.weight"]  # fmt: skip
    assert report.on_target == 5
    with torch.no_grad():
        assert abs(float(model(x).std()) - 1.0) <= TOL


def test_modes_buffers_and_rng_are_left_as_they_were() -> None:
    model = _mlp_bn(depth=4)
    model.eval()
    model[1].train()  # a mixed state, to be restored exactly
    modes = [m.training for m in model.modules()]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    rng = torch.get_rng_state()
    il.lsuv(model, _data((64,), 0), generator=torch.Generator().manual_seed(0))
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    assert torch.equal(torch.get_rng_state(), rng)


def test_initialize_lsuv_is_a_scheme_with_its_report() -> None:
    model = _mlp_bn(depth=3)
    report = il.initialize(model, "lsuv", data=(_data((64,), 0), torch.zeros(512, dtype=torch.long)),
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    weights = [r for r in report if r.name.endswith("weight") and r.kind == "Linear"]
    assert all(r.scheme == "lsuv (orthogonal)" and r.source.startswith("×") for r in weights)
    assert report.calibration is not None and report.calibration.on_target == 4
    for row, layer in zip(weights, [m for m in model.modules() if isinstance(m, nn.Linear)], strict=True):
        assert float(layer.weight.detach().std()) == pytest.approx(
            row.std, rel=0.02
        )  # the report's std is the tensor's


def test_a_layer_that_does_not_converge_is_named() -> None:
    with pytest.warns(UserWarning, match=r"lsuv: 2 layer\(s\) did not reach std 1.0 ± 0.1 in 0 passes: 0.weight, 2"):
        report = il.lsuv(nn.Sequential(nn.Linear(8, 64), nn.Tanh(), nn.Linear(64, 2)), _data((8,), 0) * 10,
                         max_iter=0, base="he_normal", generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert report.on_target == 0 and report.notes


def test_bad_inputs_are_pinned_errors() -> None:
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    with pytest.raises(il.InitlabError, match=r"lsuv needs a batch of at least 16 examples to measure a std within "
                       r"tolerance\. Received: \(8, 8\)\. Pass a larger batch"):  # fmt: skip
        il.lsuv(net, torch.randn(8, 8))
    with pytest.raises(il.InitlabError, match="lsuv found no weight layer the forward pass reaches"):
        il.lsuv(nn.Sequential(nn.BatchNorm1d(8), nn.ReLU()), torch.randn(32, 8))  # parameters, no weight layer
    with pytest.raises(il.InitlabError, match=r"the output of 0.weight is constant \(std 0.0\) on the batch"):
        il.lsuv(net, torch.zeros(32, 8))
    with pytest.raises(il.InitlabError, match=r"lsuv is computed from data: pass a batch\. Accepted: data=x"):
        il.initialize(net, "lsuv")
    with pytest.raises(il.InitlabError, match="lsuv and output_bias='prior' need data"):
        il.lsuv(net, "nope")


def test_output_bias_prior_brings_the_first_loss_to_the_prior() -> None:
    g = torch.Generator().manual_seed(0)
    x, u = torch.randn(1000, 20, generator=g), torch.rand(1000, generator=g)
    y = (u < 0.1).long() + (u < 0.03).long()  # 90% / 7% / 3%
    net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    report = il.initialize(net, "torch_default", data=(x, y), output_bias="prior",
                           generator=torch.Generator().manual_seed(1))  # fmt: skip
    freq = torch.bincount(y, minlength=3).double() / len(y)
    prior = float(-(freq * freq.log()).sum())  # the cross-entropy of predicting the class frequencies
    with torch.no_grad():
        first = float(F.cross_entropy(net(x), y))
    assert first == pytest.approx(prior, abs=0.02)  # small output weights: the bias is the prediction
    assert f"(the loss of predicting the prior: {prior:.4g})" in report.notes[-1]
    regression = nn.Sequential(nn.Linear(20, 1))
    target = 3.0 + torch.randn(1000, 1, generator=g)
    il.initialize(regression, "zeros", data=(x, target), output_bias="prior")
    assert float(regression[0].bias.detach()) == pytest.approx(float(target.mean()))
    with pytest.raises(il.InitlabError, match=r"class labels must lie in 0\.\.2"):
        il.initialize(net, "he_normal", data=(x, y + 1), output_bias="prior")
    assert math.isfinite(first)


def test_train_config_accepts_lsuv() -> None:
    from initlab.compare.train import TrainConfig, train

    result = train(TrainConfig(scheme="lsuv", depth=10, activation="tanh", epochs=1, monitor=False))
    assert not result.diverged and result.epochs[-1].test_accuracy > 0.5


def test_weight_normalized_layers_are_scaled_through_their_magnitude() -> None:
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential(weight_norm(nn.Linear(16, 64)), nn.Tanh(), weight_norm(nn.Linear(64, 8)))
    x = torch.randn(256, 16, generator=torch.Generator().manual_seed(0))
    report = il.lsuv(model, x, generator=torch.Generator().manual_seed(0))
    assert report.on_target == 2
    assert all(abs(s - 1.0) <= TOL for s in _output_stds(model, x, (nn.Linear,)).values())
