"""Contract tests every registered scheme must pass (scikit-learn's check_estimator habit)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

import initlab as il
from initlab import InitlabError

# A shape each scheme is defined on: conv-only schemes get a conv kernel, 2-D-only ones a matrix.
SHAPE = {"delta_orthogonal": (16, 8, 3, 3), "dirac": (16, 8, 3, 3)}
ALL = [s.name for s in il.schemes()]


def _shape(name: str) -> tuple[int, ...]:
    return SHAPE.get(name, (64, 48))


@pytest.mark.parametrize("name", ALL)
def test_fills_in_place_and_returns_the_tensor(name: str) -> None:
    w = torch.full(_shape(name), float("nan"))
    out = il.get(name)(w, generator=torch.Generator().manual_seed(0))
    assert out is w
    assert torch.isfinite(w).all()


@pytest.mark.parametrize("name", ALL)
def test_reproducible_with_generator(name: str) -> None:
    a = il.get(name)(torch.empty(_shape(name)), generator=torch.Generator().manual_seed(7))
    b = il.get(name)(torch.empty(_shape(name)), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_config_round_trip(name: str) -> None:
    init = il.get(name, seed=3)
    config = init.get_config()
    again = il.Initializer.from_config(config)
    assert again.get_config() == config
    assert torch.equal(init(torch.empty(_shape(name))), again(torch.empty(_shape(name))))


@pytest.mark.parametrize("name", ALL)
def test_zero_element_tensor_is_a_silent_no_op(name: str) -> None:
    w = torch.empty(0, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert il.get(name)(w) is w
    assert il.numpy.sample(name, (0, 5)).shape == (0, 5)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(name: str, dtype: torch.dtype) -> None:
    w = il.get(name)(torch.empty(_shape(name), dtype=dtype), generator=torch.Generator().manual_seed(0))
    assert w.dtype == dtype
    assert torch.isfinite(w).all()
    ref = il.get(name)(torch.empty(_shape(name)), generator=torch.Generator().manual_seed(0))
    assert w.float().std().item() == pytest.approx(ref.std().item(), rel=0.02, abs=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_numpy_is_reproducible_and_typed(name: str) -> None:
    a = il.numpy.sample(name, _shape(name), np.random.default_rng(1), dtype=np.float64)
    b = il.numpy.sample(name, _shape(name), np.random.default_rng(1), dtype=np.float64)
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, b)


def test_seeded_initializer_differs_between_calls_but_replays() -> None:
    # Keras returns identical values on every call of a seeded initializer; initlab advances its generator.
    first = il.get("he_normal", seed=5)
    a, b = first(torch.empty(4, 4)), first(torch.empty(4, 4))
    assert not torch.equal(a, b)
    again = il.get("he_normal", seed=5)
    assert torch.equal(again(torch.empty(4, 4)), a)


def test_every_alias_and_class_name_resolves() -> None:
    for name in il.scheme_names():
        assert il.get(name).name in ALL
    assert il.get("KaimingUniform").name == "he_uniform"
    assert il.get("xavier-uniform").name == "glorot_uniform"


def test_keras_serialized_config_is_accepted() -> None:
    config = {
        "module": "keras.initializers",
        "class_name": "VarianceScaling",
        "registered_name": None,
        "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal", "seed": None},
    }
    init = il.get(config)
    assert init.params == {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}
    assert init.get_config()["config"]["distribution"] == "untruncated_normal"  # issue 24: was written as "normal"


def test_callable_is_wrapped() -> None:
    init = il.get(torch.nn.init.ones_)
    assert init(torch.empty(3)).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(InitlabError, match="has no config"):
        init.get_config()


def test_unknown_name_error_text() -> None:
    n = len(il.schemes())
    with pytest.raises(InitlabError, match=re.escape(
            f"unknown initializer 'he_unifrom'. Did you mean 'he_uniform' or 'uniform' or 'lecun_uniform'? "
            f"See `initlab schemes` for all {n} names.")):  # fmt: skip
        il.get("he_unifrom")


def test_unknown_parameter_error_text() -> None:
    with pytest.raises(InitlabError, match=re.escape(
            "scheme 'he_normal' has no parameter 'stddev'. Accepted: gain, mode.")):  # fmt: skip
        il.get("he_normal", stddev=1.0)


def test_a_function_initializer_draws_its_arrays_from_rng() -> None:
    # regression (issue 35): FunctionInitializer.numpy ignored rng, so no seed reproduced its arrays
    init = il.get(torch.nn.init.normal_)
    state = torch.random.get_rng_state()
    first = init.numpy((8, 8), rng=np.random.default_rng(0))
    assert np.array_equal(first, init.numpy((8, 8), rng=np.random.default_rng(0)))
    assert not np.array_equal(first, init.numpy((8, 8), rng=np.random.default_rng(1)))
    assert torch.equal(state, torch.random.get_rng_state())  # torch's global generator left as it was
