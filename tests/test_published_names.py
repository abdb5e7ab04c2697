"""Names keep their published meaning when a whole model is initialized (issue 21).

``initialize(model, name)`` must draw, layer by layer, what Keras' initializer of that name draws for the same
kernel and what torch's function of that name draws with its defaults, whatever activation follows: the
activation-aware gain is the explicit opt-in ``gain_from="activation"``. Each check compares the sample std of
initlab's weight with the sample std of Keras' or torch's own draw for that layer; the tolerance is 5 standard
errors of the difference of two sample stds (√(2/n) · σ · a distribution factor, about 1.5% on the smallest
layer here), seeded.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

import initlab as il

keras = pytest.importorskip("keras")

ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh}
KERAS_NAMES = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal"]
TORCH_FUNCTIONS = {
    "xavier_uniform": torch.nn.init.xavier_uniform_,
    "xavier_normal": torch.nn.init.xavier_normal_,
    "kaiming_uniform": torch.nn.init.kaiming_uniform_,
    "kaiming_normal": torch.nn.init.kaiming_normal_,
}


def _mlp(act: str) -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 256), ACTS[act](), nn.Linear(256, 256), ACTS[act](), nn.Linear(256, 10))


def _cnn(act: str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), ACTS[act](), nn.Conv2d(64, 64, 3, padding=1), ACTS[act](),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))  # fmt: skip


MODELS = {"relu mlp": lambda: _mlp("relu"), "tanh mlp": lambda: _mlp("tanh"), "relu cnn": lambda: _cnn("relu"),
          "tanh cnn": lambda: _cnn("tanh")}  # fmt: skip


def _weights(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in net.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def _keras_shape(w: torch.Tensor) -> tuple[int, ...]:
    # Dense (in, out); Conv2D (kh, kw, in, out): the same fans as torch's (out, in, kh, kw)
    return (w.shape[1], w.shape[0]) if w.ndim == 2 else (*w.shape[2:], w.shape[1], w.shape[0])


def _close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    a, b = ours.double().std().item(), theirs.double().std().item()
    tolerance = 5 * math.sqrt(2 / ours.numel()) * b  # ~√(1/(2n)) per sample std, two samples, 5 errors
    assert abs(a - b) <= tolerance, f"initlab std {a:.5g}, reference {b:.5g} (tolerance {tolerance:.2g})"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", KERAS_NAMES)
def test_model_level_std_equals_keras(name: str, model: str) -> None:
    net = MODELS[model]()
    il.initialize(net, name, generator=torch.Generator().manual_seed(0))
    for i, w in enumerate(_weights(net)):
        theirs = keras.initializers.get({"class_name": keras.initializers.get(name).__class__.__name__,
                                         "config": {"seed": i}})(_keras_shape(w))  # fmt: skip
        _close(w.detach(), torch.as_tensor(theirs.detach().cpu().numpy()))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", TORCH_FUNCTIONS)
def test_model_level_std_equals_torch_defaults(name: str, model: str) -> None:
    net, reference = MODELS[model](), MODELS[model]()
    il.initialize(net, name, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    for ours, theirs in zip(_weights(net), _weights(reference), strict=True):
        TORCH_FUNCTIONS[name](theirs)  # torch's defaults: gain 1; a=0, fan_in, leaky_relu -> √2
        _close(ours.detach(), theirs.detach())


def test_the_opt_in_reproduces_the_activation_aware_gains() -> None:
    # gain_from="activation" is the behaviour initialize had before issue 21: each layer's scheme gain is the gain
    # of the activation that follows it (√2 before ReLU, 5/3 before tanh, 1 before the linear output).
    net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 10))
    report = il.initialize(net, "glorot_normal", gain_from="activation", generator=torch.Generator().manual_seed(0))
    rows = [r for r in report if r.name.endswith("weight")]
    assert [round(r.gain, 4) for r in rows] == [round(math.sqrt(2), 4), round(5 / 3, 4), 1.0]
    assert [r.source for r in rows] == ["activation (module)", "activation (module)", "activation (none)"]
    for row, w in zip(rows, _weights(net), strict=True):
        expected = row.gain * math.sqrt(2 / (row.fan_in + row.fan_out))
        assert row.std == pytest.approx(expected, rel=1e-12)
        assert w.std().item() == pytest.approx(expected, rel=0.05)


def test_published_gains_are_reported_with_their_source() -> None:
    report = il.initialize(_mlp("tanh"), "he_normal", generator=torch.Generator().manual_seed(0))
    rows = [r for r in report if r.name.endswith("weight")]
    assert {(round(r.gain, 4), r.source) for r in rows} == {(round(math.sqrt(2), 4), "published")}
    assert report.notes == []  # tanh is not ReLU-like: no exact statement to make here (the audit makes one)


def test_a_poorly_matched_published_gain_gets_a_note_naming_the_opt_in() -> None:
    report = il.initialize(_mlp("relu"), "glorot_normal")
    assert report.notes == [
        "glorot_normal keeps its published gain: its 2 layers before relu have a forward gain of 1 where relu "
        "needs 1.41, so the signal's variance is multiplied by 0.50 per layer. initialize(model, 'glorot_normal', "
        "gain_from='activation') scales by relu's gain."
    ]
    assert "note: glorot_normal keeps its published gain" in str(report)
    assert il.initialize(_mlp("relu"), "he_normal").notes == []


def test_unknown_gain_policy() -> None:
    with pytest.raises(il.InitlabError, match=re.escape("unknown gain_from 'actvation'. Did you mean 'activation'")):
        il.initialize(_mlp("relu"), "he_normal", gain_from="actvation")
