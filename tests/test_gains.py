"""Gains: torch's table value for value, and the numeric gain for anything else."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import initlab as il


@pytest.mark.parametrize(
    ("name", "param"),
    [("linear", None), ("conv2d", None), ("conv_transpose3d", None), ("sigmoid", None), ("tanh", None),
     ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)],
)  # fmt: skip
def test_table_is_torch(name: str, param: float | None) -> None:
    assert il.gain(name, param) == torch.nn.init.calculate_gain(name, param)


def test_numeric_relu_is_sqrt2() -> None:
    assert abs(il.gain("relu", method="numeric") - math.sqrt(2)) < 1e-6


def test_numeric_leaky_relu_closed_form() -> None:
    assert il.gain("leaky_relu", 0.3, method="numeric") == pytest.approx(math.sqrt(2 / 1.09), abs=1e-9)


@pytest.mark.parametrize("name", ["gelu", "silu", "swish", "elu", "softplus", "mish", "hardswish", "softsign"])
def test_numeric_gain_restores_unit_second_moment(name: str) -> None:
    # Monte Carlo check, seeded: E[(g·φ(z))²] = 1 within 0.5% on 4M samples (the MC std error is ~0.1%).
    z = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    act = il.activation(name)
    assert (il.gain(name) * act(z)).pow(2).mean().item() == pytest.approx(1.0, rel=5e-3)


def test_module_and_callable_agree_with_names() -> None:
    assert il.gain(nn.LeakyReLU(0.2)) == il.gain("leaky_relu", 0.2)
    assert il.gain(nn.GELU()) == il.gain("gelu")
    assert il.gain(nn.SiLU()) == il.gain("swish")
    assert il.gain(torch.nn.functional.gelu) == pytest.approx(il.gain("gelu"), rel=1e-12)


def test_table_method_refuses_unknown() -> None:
    with pytest.raises(il.InitlabError, match="torch's gain table has no entry for 'gelu'"):
        il.gain("gelu", method="table")
