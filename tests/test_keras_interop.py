"""Keras 3 (torch backend) interop: every Keras initializer name draws Keras' distribution in initlab."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import initlab as il

keras = pytest.importorskip("keras")

SHAPE = (300, 400)  # a Keras Dense kernel: (in, out)
RANDOM = ["random_normal", "random_uniform", "truncated_normal", "variance_scaling", "glorot_uniform",
          "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal", "orthogonal"]  # fmt: skip


def _keras_values(name: str, seed: int) -> np.ndarray:
    init = keras.initializers.get({"class_name": keras.initializers.get(name).__class__.__name__,
                                   "config": {"seed": seed}})  # fmt: skip
    return init(SHAPE).detach().cpu().numpy().ravel()


@pytest.mark.parametrize("name", RANDOM)
def test_two_sample_ks_against_keras(name: str) -> None:
    ours = il.numpy.sample(name, SHAPE, np.random.default_rng(0), layout="keras").ravel()
    theirs = _keras_values(name, 1)
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3


@pytest.mark.parametrize("name", [*RANDOM, "zeros", "ones", "identity"])
def test_keras_serialized_configs_load(name: str) -> None:
    config = keras.initializers.serialize(keras.initializers.get(name))
    init = il.get(config)
    assert init.name == name
    expected = {k: v for k, v in config["config"].items() if k not in ("seed", "input_axes", "output_axes")}
    assert {k: init.params[k] for k in expected} == expected


def test_exact_ones_against_keras() -> None:
    for name in ("zeros", "ones", "identity"):
        ours = il.get(name)(torch.empty(SHAPE)).numpy()
        theirs = keras.initializers.get(name)(SHAPE).detach().cpu().numpy()
        np.testing.assert_array_equal(ours, theirs)
    ours = il.get({"class_name": "Constant", "config": {"value": 2.5}})(torch.empty(SHAPE)).numpy()
    np.testing.assert_array_equal(ours, keras.initializers.Constant(2.5)(SHAPE).detach().cpu().numpy())
