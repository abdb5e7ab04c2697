"""µP (issue 26, item 4) against the `mup` package 1.0.0 (Microsoft's reference implementation, installed by the
Makefile): the same standard-parametrization weights go through `mup.set_base_shapes` + `MuReadout` +
`MuSGD`/`MuAdam` and through `initlab.mup`; the effective weights (a MuReadout weight W reads as W/m) and the
effective learning rates (a weight read as a·W trains as if its lr were ×a under Adam, ×a² under SGD) must agree
for every parameter of an MLP and of the transformer. Exact up to float rounding (rel 1e-6)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import mup as mup_pkg
import pytest
import torch
from torch import nn

import initlab as il
from initlab.compare.transformer import TransformerLM
from initlab.init.mup import mup


def mlp(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(12, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 5))


def transformer(width: int) -> TransformerLM:
    return TransformerLM(30, 16, width=width, depth=2, heads=4)


def _as_mup(model: nn.Module, readout: str) -> nn.Module:
    """The same model and weights with the readout Linear swapped for mup's MuReadout."""
    twin = copy.deepcopy(model)
    old = twin.get_submodule(readout)
    new = mup_pkg.MuReadout(old.in_features, old.out_features, bias=old.bias is not None)
    new.load_state_dict(old.state_dict())
    parent, _, child = readout.rpartition(".")
    setattr(twin.get_submodule(parent) if parent else twin, child, new)
    return twin


def _mup_lrs(model: nn.Module, optimizer: str, lr: float) -> dict[int, float]:
    make = mup_pkg.MuSGD if optimizer == "sgd" else mup_pkg.MuAdam
    groups = make(model.parameters(), lr=lr).param_groups
    return {id(p): g["lr"] for g in groups for p in g["params"]}


CASES = {"mlp": (mlp, "4"), "transformer": (transformer, "head")}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_mup_matches_the_mup_package(kind: str) -> None:
    build, readout = CASES[kind]
    torch.manual_seed(0)
    ours = build(256)  # SP weights: torch's defaults (nonzero biases, so the bias rescaling is checked too)
    theirs = _as_mup(ours, readout)
    base, delta = build(64), build(128)
    base_mup, delta_mup = (_as_mup(m, readout) for m in (base, delta))
    mup_pkg.set_base_shapes(theirs, base_mup, delta=delta_mup)
    plan = mup(ours, base, delta, zero_readout=False, zero_query=False)

    m = 256 / 64
    for name, p in ours.named_parameters():
        expected = dict(theirs.named_parameters())[name].detach()
        if name == f"{readout}.weight":
            expected = expected / m  # MuReadout reads its weight as W / width_mult
        torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=0, msg=name)
    for optimizer in ("sgd", "adam"):
        lrs = _mup_lrs(theirs, optimizer, 0.1)
        ours_lr = {n: g["lr"] for g in plan.param_groups(optimizer, 0.1) for n in g["names"]}
        for name, p in theirs.named_parameters():
            expected = lrs[id(p)]
            if name == f"{readout}.weight":  # the readout multiplier 1/m, folded into the lr
                expected *= (1 / m) ** (2 if optimizer == "sgd" else 1)
            assert ours_lr[name] == pytest.approx(expected, rel=1e-6), (optimizer, name)
    assert sum(len(g["params"]) for g in plan.param_groups("adam", 0.1)) == len(list(ours.parameters()))


def test_the_transformer_follows_the_papers_table() -> None:
    # Tensor Programs V, Table 3 (µP), relative to SP at base width 32 (m = 4): embeddings, biases and norm scales
    # are vector-like (SGD lr ×m, Adam ×1), q/k/v/output/MLP hidden (SGD ×1, Adam ×1/m), the readout output
    # (init ×1/√m or zero, lr ×1/m); attention logits 1/d (×√d_base/d); readout and query start at zero.
    model, base, delta = transformer(128), transformer(32), transformer(64)
    il.initialize(model, "he_normal", generator=torch.Generator().manual_seed(0))
    plan = mup(model, base, delta)
    roles = {p.name: p for p in plan}
    assert roles["token.weight"].role == roles["position.weight"].role == "vector"
    assert (roles["token.weight"].sgd_lr, roles["token.weight"].adam_lr) == (4.0, 1.0)
    for part in ("attention.query", "attention.key", "attention.value", "attention.output", "mlp.0", "mlp.2"):
        r = roles[f"blocks.1.{part}.weight"]
        assert (r.role, r.sgd_lr, r.adam_lr) == ("hidden", 1.0, 0.25), part
        assert roles[f"blocks.1.{part}.bias"].role == "vector"
    assert (roles["blocks.0.norm1.weight"].role, roles["blocks.0.norm1.weight"].sgd_lr) == ("vector", 4.0)
    head = roles["head.weight"]
    assert (head.role, head.init, head.sgd_lr, head.adam_lr) == ("output", 0.0, 0.25, 0.25)
    assert not model.head.weight.any()
    for block in model.blocks:
        assert not block.attention.query.weight.any() and block.attention.key.weight.any()
        assert block.attention.scale == pytest.approx(math.sqrt(8) / 32)  # d_head 32, base d_head 8
    assert base.blocks[0].attention.scale == pytest.approx(1 / math.sqrt(8))  # untouched: SP


def test_mup_refuses_what_it_cannot_do() -> None:
    tied = TransformerLM(30, 16, width=64, depth=1, heads=4, tied=True)
    with pytest.raises(il.InitlabError, match=r"weight is tied to an embedding.*Build the model with an untied"):
        mup(tied, TransformerLM(30, 16, width=32, depth=1, heads=4, tied=True))
    attention = nn.Sequential(nn.MultiheadAttention(64, 4))
    with pytest.raises(il.InitlabError, match=r"nn\.MultiheadAttention fixes 1/√d"):
        mup(attention, nn.Sequential(nn.MultiheadAttention(32, 4)))
    with pytest.raises(il.InitlabError, match=r"the model and its base .* must have the same parameters"):
        mup(mlp(64), nn.Sequential(nn.Linear(12, 32)))
    with pytest.raises(il.InitlabError, match="unknown optimizer 'lion'"):
        mup(mlp(64), mlp(32)).param_groups("lion", 0.1)


Build = Callable[[int], nn.Module]


def _standard_and_mup(net: Build, scheme: str, base: int, delta: int) -> tuple[Build, Build]:
    """The coordinate check's two builders: ``net(width)`` initialized by ``scheme``, and the same under µP relative
    to widths ``base`` and ``delta``."""

    def standard(width: int) -> nn.Module:
        model = net(width)
        il.initialize(model, scheme)
        return model

    def mu(width: int) -> nn.Module:
        model = standard(width)
        model.mup = il.mup(model, net(base), net(delta))  # type: ignore[assignment]
        return model

    return standard, mu


def test_coord_check_passes_mup_and_fails_the_standard_parametrization() -> None:
    """The coordinate check of Tensor Programs V over widths 64 → 2048 (an MLP, Adam at lr 1e-2, 4 steps, 2 seeds):
    under µP every role's mean |x| is flat in width (|slope| <= 0.15 at every step); under the standard
    parametrization the readout's grows with width once Adam has updated it (slope >= 0.3)."""

    def mlp(width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))

    standard, mu = _standard_and_mup(mlp, "kaiming_normal", 64, 128)

    g = torch.Generator().manual_seed(0)
    data = (torch.randn(64, 32, generator=g), torch.randint(0, 10, (64,), generator=g))
    widths = [64, 128, 256, 512, 1024, 2048]
    sp = il.coord_check(standard, data, widths=widths, optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-2))
    assert sp.passed("hidden") is False and min(sp.slopes("readout")[1:]) >= 0.3, sp
    mup_check = il.coord_check(mu, data, widths=widths,
                               optimizer=lambda m: torch.optim.Adam(m.mup.param_groups("adam", 1e-2)))  # fmt: skip
    assert mup_check.ok and len(mup_check.slopes("readout")) == 3, mup_check  # step 1: the zero readout gives 0
    assert max(abs(s) for s in mup_check.slopes("hidden") + mup_check.slopes("readout")) <= 0.15
    figure = mup_check.figure()
    assert [ax.get_title() for ax in figure.axes] == ["hidden", "readout"]
    with pytest.raises(il.InitlabError, match="coord_check scales one size: pass widths= or depths="):
        il.coord_check(mu, data, widths=[64], depths=[2, 4])


def test_coord_check_measures_attention_logits_flat_under_mup_and_growing_under_the_standard() -> None:
    """initlab's transformer over widths 32 → 512 (4 heads, Xavier init, Adam at lr 1e-2, 4 steps, 2 seeds): the
    attention logits (q·kᵀ × scale of every scaled_dot_product_attention call) grow with width under the standard
    parametrization's 1/√d scaling once Adam has updated the queries and keys (measured slope 0.58 and 0.65 at
    steps 3 and 4); under µP (1/d scaling, zero queries) they do not grow (measured -0.42, -0.33: the random part
    shrinks as d^-½ by design, and the check judges this role only against growth)."""
    ids = torch.randint(0, 50, (16, 16), generator=torch.Generator().manual_seed(0))

    def lm(width: int) -> nn.Module:
        return TransformerLM(50, 16, width=width, depth=2, heads=4)

    standard, mu = _standard_and_mup(lm, "xavier_uniform", 32, 64)

    widths = [32, 64, 128, 256, 512]
    sp = il.coord_check(
        standard, (ids, ids), widths=widths, optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=1e-2)
    )
    assert min(sp.slopes("attention logits")[2:]) >= 0.3 and not sp.passed("attention logits"), sp
    mu_check = il.coord_check(mu, (ids, ids), widths=widths,
                              optimizer=lambda m: torch.optim.Adam(m.mup.param_groups("adam", 1e-2)))  # fmt: skip
    assert len(mu_check.slopes("attention logits")) == 2, mu_check  # steps 1-2: zero queries give zero logits
    assert mu_check.passed("attention logits") and max(mu_check.slopes("attention logits")) <= 0.15, mu_check
    assert max(abs(s) for s in mu_check.slopes("hidden") + mu_check.slopes("stream")) <= 0.15, mu_check
