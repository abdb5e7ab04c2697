"""Keyed initialization (issue 31, item 2, on one process): ``initialize(model, scheme, seed=...)`` derives each
parameter's random stream from the seed and the parameter's name alone, so the weights do not depend on the order
in which modules are defined or initialized, nor on whether the model was built on the meta device or on CPU;
``generator=`` keeps torch's sequential behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import initlab as il


class Net(nn.Module):
    """The same parameters by name, registered in either order."""

    def __init__(self, reverse: bool = False) -> None:
        super().__init__()
        parts = [("encoder", lambda: nn.Linear(16, 32)), ("lstm", lambda: nn.LSTM(32, 8)),
                 ("head", lambda: nn.Linear(8, 4))]  # fmt: skip
        for name, make in reversed(parts) if reverse else parts:
            setattr(self, name, make())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(torch.tanh(self.encoder(x)))[0])


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_weights_depend_on_the_seed_and_the_name_alone() -> None:
    forward, backward = Net(), Net(reverse=True)
    assert [n for n, _ in forward.named_parameters()] != [n for n, _ in backward.named_parameters()]
    il.initialize(forward, "he_normal", seed=1234, example=torch.randn(2, 5, 16))
    il.initialize(backward, "he_normal", seed=1234, example=torch.randn(2, 5, 16))
    assert _same(forward, backward)
    other = Net()
    il.initialize(other, "he_normal", seed=1235, example=torch.randn(2, 5, 16))
    assert not torch.equal(other.encoder.weight, forward.encoder.weight)
    # sequential mode draws in module order: the two orders give different weights (torch's own behaviour)
    g = torch.Generator
    il.initialize(forward, "he_normal", generator=g().manual_seed(0), example=torch.randn(2, 5, 16))
    il.initialize(backward, "he_normal", generator=g().manual_seed(0), example=torch.randn(2, 5, 16))
    assert not _same(forward, backward)


def test_every_gate_block_has_a_stream_of_its_own() -> None:
    model = Net()
    il.initialize(model, "glorot_normal", seed=7, example=torch.randn(2, 5, 16))
    blocks = model.lstm.weight_ih_l0.detach().chunk(4)  # i, f, g, o: drawn from four keys, not four copies
    assert all(not torch.equal(blocks[0], b) for b in blocks[1:])
    assert model.lstm.weight_ih_l0.std().item() == pytest.approx((2 / (32 + 8)) ** 0.5, rel=0.1)  # 1,024 draws


def test_a_model_built_on_meta_gets_the_same_weights_as_one_built_on_cpu() -> None:
    with torch.device("meta"):
        lazy = Net()
    lazy.to_empty(device="cpu")
    eager = Net()
    for model in (lazy, eager):
        il.initialize(model, "orthogonal", seed=99, example=torch.randn(2, 5, 16))
    assert _same(lazy, eager)


def test_seed_and_generator_together_are_refused() -> None:
    with pytest.raises(il.InitlabError, match=r"either seed= \(keyed by parameter name\) or generator="):
        il.initialize(Net(), "he_normal", seed=1, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("begin", "end"), [(0, 45), (7, 14), (3, 30), (20, 45), (44, 45), (13, 13)])
def test_any_run_of_entries_is_drawn_as_the_whole_tensor_holds_it(monkeypatch: pytest.MonkeyPatch, begin: int,
                                                                   end: int) -> None:  # fmt: skip
    # what lets a rank draw only its shard: keyed mode draws runs of CHUNK entries, each from a stream of its own;
    # a slice that starts or ends inside a run (a shard's edge) must hold what the whole tensor holds there
    from initlab.init import _formulas as f
    from initlab.init import _plan

    monkeypatch.setattr(_plan, "CHUNK", 7)  # 45 entries: six whole runs and a short last one

    def stream(key: str, like: torch.Tensor) -> torch.Generator:
        return torch.Generator().manual_seed(hash(key) % 2**31)

    plan = _plan.Plan(nn.Linear(9, 5), "weight", lambda t, g: None, "w", None, dist=f.Normal(0.0, 1.0), scale=0.5)
    whole = torch.empty(45)
    _plan._entries(plan, whole, 0, 45, stream)
    part = torch.empty(end - begin)
    _plan._entries(plan, part, begin, 45, stream)
    assert torch.equal(part, whole[begin:end]) and whole.std() > 0.2


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated")  # torch.compile's own imports
@pytest.mark.parametrize("wrap", [nn.DataParallel, torch.compile])
def test_a_wrapped_model_gets_the_weights_and_names_of_the_model_itself(wrap: object) -> None:
    # issue 31: DataParallel (and DDP) named every parameter "module.…", so keyed mode drew other weights than on the
    # model itself, and the report said "module.0.weight"
    plain, inner = (nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)) for _ in range(2))
    il.initialize(plain, "he_normal", seed=1)
    report = il.initialize(wrap(inner), "he_normal", seed=1)  # type: ignore[operator]
    assert [r.name for r in report.rows][:2] == ["0.weight", "0.bias"] and _same(plain, inner)
