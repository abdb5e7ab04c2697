"""Fans for every layer type and layout, including the cases torch gets wrong."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import initlab as il
from initlab import Fans


def _torch_fans(w: torch.Tensor) -> tuple[int, int]:
    return torch.nn.init._calculate_fan_in_and_fan_out(w)


def test_linear_matches_torch() -> None:
    layer = nn.Linear(30, 20)
    assert il.fans(layer.weight, layer=layer) == Fans(30, 20, 1)
    assert _torch_fans(layer.weight) == (30, 20)


def test_grouped_conv_fixes_torch_fan_out() -> None:
    conv = nn.Conv2d(64, 128, 3, groups=8)
    ours = il.fans(conv.weight, layer=conv)
    assert ours == Fans(8 * 9, 16 * 9, 9)
    assert _torch_fans(conv.weight)[1] == 128 * 9  # pytorch#23854: groups times too large


def test_depthwise_conv() -> None:
    conv = nn.Conv2d(32, 32, 5, groups=32)
    assert il.fans(conv.weight, layer=conv) == Fans(25, 25, 25)


def test_conv_transpose_reads_its_layout() -> None:
    deconv = nn.ConvTranspose2d(16, 48, 4, groups=2)  # weight (16, 24, 4, 4)
    assert tuple(deconv.weight.shape) == (16, 24, 4, 4)
    assert il.fans(deconv.weight, layer=deconv) == Fans(8 * 16, 24 * 16, 16)
    assert il.fans(deconv.weight, layer="conv_transpose", groups=2) == Fans(128, 384, 16)


@pytest.mark.parametrize(("module", "gates"), [(nn.LSTM(10, 20), 4), (nn.GRU(10, 20), 3), (nn.RNN(10, 20), 1)])
def test_recurrent_fans_are_per_gate(module: nn.Module, gates: int) -> None:
    assert module.weight_ih_l0.shape[0] == gates * 20
    assert il.fans(module.weight_ih_l0, layer=module) == Fans(10, 20, 1)
    assert il.fans(module.weight_hh_l0, layer=module) == Fans(20, 20, 1)


def test_embedding_is_a_lookup() -> None:
    emb = nn.Embedding(1000, 64)
    assert il.fans(emb.weight, layer=emb) == Fans(1, 64, 1)


def test_keras_layouts() -> None:
    assert il.fans((30, 20), layout="keras") == Fans(30, 20, 1)
    assert il.fans((3, 3, 16, 32), layout="keras") == Fans(144, 288, 9)
    assert il.fans((3, 3, 16, 2), layer="depthwise", layout="keras") == Fans(9, 18, 9)
    assert il.fans((10, 80), layer="lstm", layout="keras") == Fans(10, 20, 1)


def test_explicit_axes_follow_jax() -> None:
    # JAX variance_scaling(in_axis=-2, out_axis=-1): receptive field = everything else.
    assert il.fans((5, 3, 16, 32), in_axes=[2], out_axes=[3]) == Fans(16 * 15, 32 * 15, 15)
    assert il.fans((4, 6, 8), in_axes=[0, 1], out_axes=[-1]) == Fans(24, 8, 1)


@settings(max_examples=60, deadline=None)
@given(
    dims=st.integers(1, 3),
    groups=st.integers(1, 4),
    in_per=st.integers(1, 5),
    out_per=st.integers(1, 5),
    k=st.integers(1, 4),
    transpose=st.booleans(),
)
def test_conv_fans_property(dims: int, groups: int, in_per: int, out_per: int, k: int, transpose: bool) -> None:
    cls = [nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d][
        dims - 1 + 3 * transpose
    ]
    layer = cls(in_per * groups, out_per * groups, k, groups=groups)
    fans = il.fans(layer.weight, layer=layer)
    rf = k**dims
    assert fans == Fans(in_per * rf, out_per * rf, rf)
    if groups == 1 and not transpose:
        assert (fans.fan_in, fans.fan_out) == _torch_fans(layer.weight)
    # The same kernel in Keras' channels-last layout has the same fans.
    if not transpose:
        keras_shape = (*layer.weight.shape[2:], layer.weight.shape[1], layer.weight.shape[0])
        assert il.fans(keras_shape, layout="keras", groups=groups) == fans


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=2, max_size=5))
def test_any_shape_has_positive_fans_and_rf_divides_both(shape: list[int]) -> None:
    fans = il.fans(shape)
    assert fans.fan_in >= 1 and fans.fan_out >= 1
    assert fans.fan_in % fans.receptive_field == 0 and fans.fan_out % fans.receptive_field == 0


def test_fan_mode() -> None:
    assert Fans(100, 300).of("fan_avg") == 200.0
    with pytest.raises(il.InitlabError, match="unknown fan mode 'fan_max'"):
        Fans(1, 1).of("fan_max")
