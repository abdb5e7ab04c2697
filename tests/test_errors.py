"""The error texts users see, pinned: each says what was wrong, what is accepted and how to fix it."""

from __future__ import annotations

import re

import pytest
import torch

import initlab as il
from initlab import InitlabError


def test_rank_one_tensor_for_fan_based_scheme() -> None:
    with pytest.raises(InitlabError, match=re.escape(
            "fans need a weight of rank 2 or more, got rank 1. Accepted: a Linear (out, in), conv (out, in/groups, "
            "k...) or Keras (k..., in, out) weight. Received: (10,). A bias or other 1-D tensor has no fan: use "
            "zeros_/constant_/normal_ with an explicit std, or pass fans=Fans(fan_in, fan_out).")):  # fmt: skip
        il.he_normal_(torch.empty(10))


def test_bad_mode() -> None:
    with pytest.raises(InitlabError, match=re.escape(
            "unknown mode 'fan_inn'. Did you mean 'fan_in'? Accepted: fan_avg, fan_in, fan_out.")):  # fmt: skip
        il.variance_scaling_(torch.empty(3, 3), mode="fan_inn")  # type: ignore[arg-type]


def test_bad_distribution() -> None:
    with pytest.raises(InitlabError, match=re.escape(
            "unknown distribution 'gaussian'. Accepted: normal, truncated_normal, uniform.")):  # fmt: skip
        il.variance_scaling_(torch.empty(3, 3), distribution="gaussian")  # type: ignore[arg-type]


def test_negative_scale() -> None:
    with pytest.raises(InitlabError, match=re.escape(
            "scale must be a finite number > 0. Accepted: a finite positive float. Received: -2.0. "
            "Pass scale=1.0 or another positive number.")):  # fmt: skip
        il.variance_scaling_(torch.empty(3, 3), scale=-2.0)


def test_groups_not_dividing_channels() -> None:
    with pytest.raises(InitlabError, match=re.escape(
            "groups=3 does not divide the output channels (64). Accepted: a groups value that divides both "
            "in_channels and out_channels. Received: 3. "
            "Pass the layer's own groups (or the module as layer=).")):  # fmt: skip
        il.fans((64, 8, 3, 3), groups=3)


def test_identity_on_conv_names_dirac() -> None:
    with pytest.raises(InitlabError, match=re.escape("For conv kernels use dirac_")):
        il.identity_(torch.empty(4, 4, 3))


def test_unknown_activation() -> None:
    with pytest.raises(InitlabError, match=re.escape(
            "unknown activation 'rleu'. Did you mean 'relu' or 'relu6' or 'prelu'? "
            "See initlab.activation_names() for all names, or pass a callable.")):  # fmt: skip
        il.gain("rleu")


def test_impossible_truncation() -> None:
    with pytest.raises(InitlabError, match=re.escape("no normal truncated to [-1.0, 1.0] has std 0.9")):
        il.truncated_normal_(torch.empty(3), std=0.9, a=-1.0, b=1.0, bounds="absolute")


def test_not_a_tensor() -> None:
    with pytest.raises(InitlabError, match=re.escape("For NumPy arrays use initlab.numpy")):
        il.zeros_([1, 2, 3])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "message"),
    [({"scale": -1}, "scale must be a finite number > 0. Accepted: a finite positive float. Received: -1."),
     ({"mode": "fan_sideways"}, "unknown mode 'fan_sideways'. Accepted: fan_avg, fan_in, fan_out.")],
)  # fmt: skip
def test_bad_config_values_fail_when_read_not_when_called(config: dict[str, object], message: str) -> None:
    # issue 23: these configs were accepted by get() and failed only at the first call
    with pytest.raises(InitlabError, match=re.escape(message)):
        il.get({"class_name": "VarianceScaling", "config": config})
