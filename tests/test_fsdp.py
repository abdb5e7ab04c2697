"""Models that do not fit one process (issue 31): initialize on FSDP2-sharded models (DTensor parameters) with 2 and 4
real gloo ranks on CPU gives, gathered, the weights of the same call in one process, bit for bit, for every scheme
that needs no data, on an MLP, a CNN, a torch transformer and Hugging Face's GPT-2 (each built on the meta device
and materialized shard by shard); a model built on the meta device gives the weights of one built on the CPU; the
Monitor on a sharded model reads what it reads on one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import initlab as il
from _gloo import rank_of
from initlab.init.registry import get, scheme_names

SEED = 1234
SCHEMES = sorted({get(name).name for name in scheme_names() if not get(name).scheme.needs_data})  # aliases once


class _CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 10, 3, padding=1), nn.Conv2d(10, 6, 3, stride=2)
        self.head = nn.Linear(6 * 3 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))


def _build(kind: str) -> nn.Module:
    """An MLP with widths no rank count divides, a CNN, or a transformer (packed q/k/v, residual branches)."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(16, 33), nn.ReLU(), nn.Linear(33, 33), nn.Tanh(), nn.Linear(33, 5))
    if kind == "cnn":
        return _CNN()
    if kind == "gpt2":  # Hugging Face's: Conv1D weights stored (in, out), the table tied to the readout
        import transformers

        config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=50, n_positions=16,
                                         bos_token_id=0, eos_token_id=0)  # fmt: skip
        return transformers.GPT2LMHeadModel(config)
    layer = nn.TransformerEncoderLayer(32, 4, 48, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


KINDS = ("mlp", "cnn", "transformer", "gpt2")
EXAMPLES = {"mlp": (4, 16), "cnn": (2, 3, 8, 8), "transformer": (2, 5, 32)}


def _on_meta(kind: str) -> tuple[nn.Module, object]:
    """The model built on the meta device (a sharded model is then materialized shard by shard), and an input."""
    with torch.device("meta"):
        model = _build(kind)
    generator = torch.Generator().manual_seed(0)
    if kind == "gpt2":
        return model, {"input_ids": torch.randint(0, 50, (2, 8), generator=generator)}
    return model, torch.randn(EXAMPLES[kind], generator=generator)


def _single(kind: str, scheme: str, **how: object) -> dict[str, torch.Tensor]:
    model, example = _on_meta(kind)
    il.initialize(model, scheme, example=example, device="cpu", **how)  # type: ignore[arg-type]
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _units(model: nn.Module) -> list[nn.Module]:
    """What each gets its own ``fully_shard``, inner first: the transformer's blocks (not the modules inside them:
    attention reads its output projection's weight without calling it, so that weight must be gathered with the
    block's), or each layer of the MLP and the CNN. The root gets one after them."""
    blocks = [m for m in model.modules() if type(m).__name__ in ("TransformerEncoderLayer", "GPT2Block")]
    return blocks or [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    with rank_of(rank, world, init_file):
        mesh = init_device_mesh("cpu", (world,))
        gathered = {}
        for kind in KINDS:
            for scheme in SCHEMES:
                model, example = _on_meta(kind)
                for module in _units(model):
                    fully_shard(module, mesh=mesh)
                fully_shard(model, mesh=mesh)
                try:
                    il.initialize(model, scheme, example=example, seed=SEED, device="cpu")
                except il.InitlabError as refused:  # sparse on a conv: refused alike in one process
                    gathered[(kind, scheme)] = str(refused)
                    continue
                gathered[(kind, scheme)] = {n: p.full_tensor().clone() for n, p in model.named_parameters()}
        model, example = _on_meta("mlp")
        model[0].weight.requires_grad_(False)  # frozen, but built on meta: no values to keep, so drawn all the same
        fully_shard(model, mesh=mesh)
        il.initialize(model, "he_normal", example=example, seed=SEED, device="cpu")
        gathered[("mlp", "frozen on meta")] = {n: p.full_tensor().clone() for n, p in model.named_parameters()}
        model, example = _on_meta("mlp")
        fully_shard(model, mesh=mesh)
        model.to_empty(device="cpu")  # FSDP2's own way; device= does the same for a sharded model
        try:
            il.initialize(model, "lsuv", data=example)
        except il.InitlabError as refused:
            gathered[("mlp", "lsuv refused")] = str(refused)
        il.initialize(model, "orthogonal", example=example, generator=torch.Generator().manual_seed(7))
        gathered[("mlp", "sequential orthogonal")] = {n: p.full_tensor().clone() for n, p in model.named_parameters()}
        if rank == 0:
            torch.save(gathered, Path(out))


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_sharded_initialize_gives_the_single_process_weights_bit_for_bit(world: int, tmp_path: Path) -> None:
    out = tmp_path / "gathered.pt"
    mp.spawn(_worker, args=(world, str(tmp_path / "init"), str(out)), nprocs=world, join=True)
    gathered = torch.load(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: QR (orthogonal) may round differently with more threads, in one process
    try:
        _compare(gathered, world)
    finally:
        torch.set_num_threads(threads)


def _compare(gathered: dict, world: int) -> None:
    assert len(gathered) == len(KINDS) * len(SCHEMES) + 3 and len(SCHEMES) >= 20
    # lsuv re-runs each layer on its own input: refused on a sharded model, with the way round it
    assert "which a sharded model (FSDP2, DTensor parameters) cannot do" in gathered.pop(("mlp", "lsuv refused"))
    refused = {key for key, weights in gathered.items() if isinstance(weights, str)}
    assert refused <= {("cnn", "sparse"), ("gpt2", "critical")}  # a conv kernel; gelu_tanh has no critical point
    for (kind, scheme), weights in gathered.items():
        if isinstance(weights, str):
            with pytest.raises(il.InitlabError) as refusal:
                _single(kind, scheme, seed=SEED)
            assert str(refusal.value) == weights
            continue
        if scheme == "frozen on meta":
            expected = _single(kind, "he_normal", seed=SEED)
        elif scheme == "sequential orthogonal":  # generator= draws in sequence, here too the whole of each parameter
            expected = _single(kind, "orthogonal", generator=torch.Generator().manual_seed(7))
        else:
            expected = _single(kind, scheme, seed=SEED)
        assert weights.keys() == expected.keys()
        different = [name for name in expected if not torch.equal(weights[name], expected[name])]
        assert not different, f"{kind}, {scheme}, {world} ranks: {different}"


@pytest.mark.parametrize("kind", ["mlp", "cnn", "transformer"])  # GPT-2 and Llama: tests/test_zoo.py
def test_meta_built_models_initialize_like_cpu_built_ones(kind: str) -> None:
    on_meta = _single(kind, "he_normal", seed=SEED)
    built = _build(kind)  # on the CPU, drawn by torch's own reset_parameters first
    il.initialize(built, "he_normal", example=_on_meta(kind)[1], seed=SEED)
    assert all(torch.equal(p.detach(), on_meta[name]) for name, p in built.named_parameters())


def _batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + rank)
    return torch.randn(24, 16, generator=generator), torch.randint(0, 5, (24,), generator=generator)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return _build("mlp")


def _watch(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    with il.Monitor(model, every=2) as mon:  # every second step: exact statistics, no row samples
        for x, y in batches:
            nn.functional.cross_entropy(model(x), y).backward()
            model.zero_grad()
    return {f"{layer}|{stat}": value for (layer, stat), value in mon.history.records[-1].items()}


def _monitor_worker(rank: int, world: int, init_file: str, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    with rank_of(rank, world, init_file):
        mesh = init_device_mesh("cpu", (world,))
        model = _mlp()
        for module in _units(model):
            fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        record = _watch(model, [_batch(rank)] * 2)
        Path(out, f"rank{rank}.json").write_text(json.dumps(record))


@pytest.mark.slow
def test_the_monitor_on_a_sharded_model_reads_what_it_reads_unsharded(tmp_path: Path) -> None:
    # issue 31: each rank trains on its own batch; the activation statistics are reduced across ranks and the
    # gradient norms of the sharded parameters summed over their shards, so they equal one process's on both
    # batches together (FSDP averages the ranks' gradients: the mean loss over the concatenated batch)
    mp.spawn(_monitor_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    xs, ys = zip(*(_batch(r) for r in (0, 1)), strict=True)
    expected = _watch(_mlp(), [(torch.cat(xs), torch.cat(ys))] * 2)
    assert ranks[0].keys() == expected.keys() and any(k.endswith("grad_norm") for k in expected)
    for record in ranks:
        for key, value in expected.items():
            assert record[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
