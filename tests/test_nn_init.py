"""initlab.nn.init against torch.nn.init (issue 24): the same names and signatures, bit-identical values under
the same generator where torch is right, and the stated differences where it is not."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from scipy import stats
from torch import nn

import initlab as il
from initlab.nn import init

SEEDED = [  # (name, args, kwargs) drawn from a generator
    ("uniform_", (-0.3, 0.7), {}),
    ("normal_", (0.1, 2.0), {}),
    ("trunc_normal_", (0.0, 1.0, -2.0, 2.0), {}),
    ("trunc_normal_", (0.0, 0.02, -0.04, 0.04), {}),
    ("xavier_uniform_", (1.3,), {}),
    ("xavier_normal_", (), {}),
    ("kaiming_uniform_", (), {"a": math.sqrt(5)}),
    ("kaiming_uniform_", (), {"mode": "fan_out", "nonlinearity": "relu"}),
    ("kaiming_normal_", (0.2, "fan_in", "leaky_relu"), {}),
    ("orthogonal_", (1.5,), {}),
]
SHAPES = [(64, 32), (16, 8, 3, 3), (5, 300)]


def test_every_public_name_of_torch_is_here_with_torch_signature() -> None:
    assert sorted(init.__all__) == sorted(torch.nn.init.__all__)
    # the deprecated aliases (no trailing _) are (*args, **kwargs) wrappers in torch; ours show the real signature
    for name in [n for n in torch.nn.init.__all__ if n.endswith("_") or n == "calculate_gain"] + [
        "_calculate_fan_in_and_fan_out", "_calculate_correct_fan"]:  # fmt: skip
        theirs = inspect.signature(getattr(torch.nn.init, name)).parameters
        ours = inspect.signature(getattr(init, name)).parameters
        # torch's parameters, in torch's order and kinds, with torch's defaults; additions only keyword-only
        assert [(p.name, p.kind, p.default) for p in theirs.values()] == [
            (p.name, p.kind, p.default) for p in ours.values() if p.kind is not p.KEYWORD_ONLY or p.name in theirs
        ], name


@pytest.mark.parametrize(("name", "args", "kwargs"), SEEDED)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bit_identical_to_torch_under_the_same_generator(
    name: str, args: tuple, kwargs: dict, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    ours = getattr(init, name)(torch.empty(shape, dtype=dtype), *args, **kwargs,
                               generator=torch.Generator().manual_seed(7))  # fmt: skip
    theirs = getattr(torch.nn.init, name)(torch.empty(shape, dtype=dtype), *args, **kwargs,
                                          generator=torch.Generator().manual_seed(7))  # fmt: skip
    assert torch.equal(ours, theirs)


def test_generator_is_positional_as_in_torch() -> None:
    # issue 24: `generator` was keyword-only, so `uniform_(t, 0, 1, gen)` raised
    ours = init.uniform_(torch.empty(100), 0, 1, torch.Generator().manual_seed(3))
    assert torch.equal(ours, torch.nn.init.uniform_(torch.empty(100), 0, 1, torch.Generator().manual_seed(3)))


def test_global_seed_draws_as_torch_does() -> None:
    # sparse_ without a generator: torch's own draws, zeroed rows included (global RNG)
    torch.manual_seed(11)
    ours = init.sparse_(torch.empty(30, 20), 0.3)
    torch.manual_seed(11)
    assert torch.equal(ours, torch.nn.init.sparse_(torch.empty(30, 20), 0.3))


def test_fills_and_deterministic_ones_match() -> None:
    for name, args in [("constant_", (0.37,)), ("ones_", ()), ("zeros_", ()), ("eye_", ()), ("dirac_", ())]:
        shape = (6, 4, 3) if name == "dirac_" else (5, 7)
        assert torch.equal(getattr(init, name)(torch.randn(shape), *args),
                           getattr(torch.nn.init, name)(torch.randn(shape), *args)), name  # fmt: skip
    assert torch.equal(init.dirac_(torch.randn(6, 2, 3, 3), 3), torch.nn.init.dirac_(torch.randn(6, 2, 3, 3), 3))


@pytest.mark.parametrize(("nonlinearity", "param"), [("linear", None), ("conv_transpose3d", None), ("sigmoid", None),
                         ("tanh", None), ("relu", None), ("leaky_relu", None), ("leaky_relu", 0), ("leaky_relu", 0.2),
                         ("leaky_relu", 10), ("selu", None)])  # fmt: skip
def test_calculate_gain_is_torch_for_torch_names(nonlinearity: str, param: float | None) -> None:
    assert init.calculate_gain(nonlinearity, param) == torch.nn.init.calculate_gain(nonlinearity, param)  # type: ignore[arg-type]


def test_calculate_gain_knows_more_activations_and_refuses_bad_input() -> None:
    assert init.calculate_gain("gelu") == il.gain("gelu")  # torch raises for gelu; initlab computes 1/√E[φ²]
    for bad in (True, [1], {"a": "b"}):
        with pytest.raises(ValueError, match="negative_slope of leaky_relu must be a number"):
            init.calculate_gain("leaky_relu", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown nonlinearity 'rleu'.*Did you mean 'relu'"):
        init.calculate_gain("rleu")


def test_private_fan_helpers_are_torch() -> None:
    for shape in [(3, 5), (8, 4, 3, 3), (2, 6, 5)]:
        t = torch.empty(shape)
        assert init._calculate_fan_in_and_fan_out(t) == torch.nn.init._calculate_fan_in_and_fan_out(t)
        for mode in ("fan_in", "fan_out", "FAN_IN"):
            assert init._calculate_correct_fan(t, mode) == torch.nn.init._calculate_correct_fan(t, mode)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rank 2 or more"):
        init._calculate_fan_in_and_fan_out(torch.empty(4))
    with pytest.raises(ValueError, match="unknown mode 'fan_sideways'"):
        init._calculate_correct_fan(torch.empty(4, 4), "fan_sideways")


def test_errors_are_value_errors_as_in_torch() -> None:
    cases = [(init.eye_, (torch.empty(3),)), (init.dirac_, (torch.empty(2, 2, 1, 1, 1, 1),)),
             (init.dirac_, (torch.empty(4, 2, 3), 3)), (init.xavier_uniform_, (torch.empty(4),)),
             (init.kaiming_normal_, (torch.empty(()),)), (init.sparse_, (torch.empty(3, 3, 3), 0.5)),
             (init.orthogonal_, (torch.empty(5),))]  # fmt: skip
    for fn, args in cases:
        with pytest.raises(il.InitlabError) as caught:  # torch raises ValueError here; InitlabError is one
            fn(*args)
        assert isinstance(caught.value, ValueError), fn.__name__
    with pytest.raises(ValueError, match=r"dirac needs a conv weight \(out, in, k...\) of rank 3 to 5"):
        init.dirac_(torch.empty(2, 2, 1, 1, 1, 1))  # issue 24: a 6-D tensor was filled


def test_zero_element_tensors_warn_like_torch() -> None:
    for fn in (init.kaiming_uniform_, init.kaiming_normal_):
        with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
            assert fn(torch.empty(0, 3)).shape == (0, 3)


def test_deprecated_aliases_warn_and_draw() -> None:
    for old in ("uniform", "normal", "constant", "eye", "dirac", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                "kaiming_normal", "orthogonal", "sparse"):  # fmt: skip
        args = {"constant": (0.5,), "sparse": (0.1,)}.get(old, ())
        shape = (4, 2, 3) if old == "dirac" else (6, 6)
        with pytest.warns(FutureWarning, match=f"nn.init.{old} is now deprecated in favor of nn.init.{old}_"):
            getattr(init, old)(torch.empty(shape), *args)


# -- where torch is wrong -------------------------------------------------------------------------------------
def test_layer_gives_grouped_conv_fans() -> None:
    # pytorch#23854: from the tensor alone a depthwise conv's fan_out is out·k², not (out/groups)·k²
    conv = nn.Conv2d(64, 64, 3, groups=64)
    seeded = torch.Generator().manual_seed(0)
    w = init.kaiming_normal_(torch.empty_like(conv.weight), mode="fan_out", nonlinearity="relu", generator=seeded,
                             layer=conv)  # fmt: skip
    expected = math.sqrt(2.0) / math.sqrt(9)  # fan_out of a depthwise 3×3 conv: 1 output per group × 9 taps
    assert w.std().item() == pytest.approx(expected, rel=0.1)  # 576 values: std within 10% (4 SE)
    torch_fans = init.kaiming_normal_(torch.empty_like(conv.weight), mode="fan_out", nonlinearity="relu",
                                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch_fans.std().item() == pytest.approx(math.sqrt(2.0) / math.sqrt(64 * 9), rel=0.1)  # torch's fans


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_orthogonal_in_half_precision(dtype: torch.dtype) -> None:
    with pytest.raises(NotImplementedError):  # pytorch#9315: torch's QR is not implemented in half precision
        torch.nn.init.orthogonal_(torch.empty(6, 10, dtype=dtype))
    q = init.orthogonal_(torch.empty(6, 10, dtype=dtype), 2.0, torch.Generator().manual_seed(0)).float()
    assert torch.allclose(q @ q.T, 4.0 * torch.eye(6), atol=0.05)  # rounded once to 8 (bf16) or 11 bits


def test_sparse_with_a_generator_is_reproducible() -> None:
    # torch draws the zeroed rows from the global RNG even when a generator is given
    a = init.sparse_(torch.empty(20, 10), 0.5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(99)
    b = init.sparse_(torch.empty(20, 10), 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and ((a == 0).sum(0) == 10).all()


def test_trunc_normal_keeps_torch_semantics() -> None:
    # torch's meaning: absolute bounds, std of the parent normal (KS against scipy's truncnorm, p > 1e-3)
    t = init.trunc_normal_(
        torch.empty(20_000, dtype=torch.float64), 0.5, 2.0, -1.0, 3.0, torch.Generator().manual_seed(0)
    )
    assert t.min() >= -1.0 and t.max() <= 3.0
    assert stats.kstest(t.numpy(), "truncnorm", args=(-0.75, 1.25, 0.5, 2.0)).pvalue > 1e-3


def test_import_swap_is_the_only_change() -> None:
    from initlab.nn import init as swapped

    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 2))
    for m in model:
        if isinstance(m, nn.Linear):
            swapped.kaiming_uniform_(m.weight, nonlinearity="relu")
            swapped.zeros_(m.bias)
    assert all(not m.bias.any() for m in model if isinstance(m, nn.Linear))


# initlab's own names whose torch twin is spelled otherwise
_TWINS = {"trunc_normal_": "truncated_normal_", "eye_": "identity_"}


@pytest.mark.parametrize("name", [n for n in torch.nn.init.__all__ if n.endswith("_")])
def test_every_il_twin_of_a_torch_function_takes_torch_positional_arguments(name: str) -> None:
    # issue 35: il.xavier_normal_(t, 1.0, g) raised TypeError although tensors.py calls it a drop-in for torch's
    theirs = list(inspect.signature(getattr(torch.nn.init, name)).parameters.values())
    ours = getattr(il, _TWINS.get(name, name), None)
    if ours is None:
        pytest.skip(f"initlab has no top-level twin of {name}")
    positional = [p for p in inspect.signature(ours).parameters.values() if p.kind is not p.KEYWORD_ONLY]
    assert [(p.name, p.default) for p in theirs] == [(p.name, p.default) for p in positional[: len(theirs)]]
    if "generator" in (p.name for p in theirs):  # and a call in torch's positional form works, as with keywords
        args = [torch.empty(64, 32)] + [p.default for p in theirs[1:-1]]
        if name == "sparse_":
            args[1] = 0.5
        by_position = ours(*args, torch.Generator().manual_seed(0))
        by_keyword = ours(args[0].clone(), *args[1:], generator=torch.Generator().manual_seed(0))
        assert torch.equal(by_position, by_keyword)


def test_every_il_initializer_takes_the_generator_last_among_positionals() -> None:
    # torch's rule: `generator` is the last positional parameter everywhere
    for name in [n for n in il.__all__ if n.endswith("_") and not n.startswith("_") and n != "variance_scaling_"]:
        params = list(inspect.signature(getattr(il, name)).parameters.values())
        positional = [p.name for p in params if p.kind is not p.KEYWORD_ONLY]
        if "generator" in (p.name for p in params):
            assert positional[-1] == "generator", name
