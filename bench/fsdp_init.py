"""Initializing a model that is sharded with FSDP2 (issue 31): peak resident memory per rank, and time, against torch's
own ``reset_parameters`` on the same sharded model, 2 gloo ranks on the CPU.

Run: .venv/bin/python bench/fsdp_init.py
Model: 12 ``Linear(4096, 8192)``/``Linear(8192, 4096)`` layers with ReLUs between (402.8M parameters, 1.61 GB in
fp32), built on the meta device, each layer and the root ``fully_shard``-ed over 2 ranks (each rank holds 0.81 GB of
shards). Each variant runs in fresh processes: torch's way (``to_empty``, then every module's ``reset_parameters``:
DTensor random ops), then initlab's (``initialize(model, "torch_default", seed=0, device="cpu")``, the same
distribution, keyed: each rank draws only the runs of entries its shards hold, the structure read off a stand-in on
the meta device). Memory: the rise of the peak resident set (``ru_maxrss``) over the resident set before
materialization, per rank, as a ratio to the whole model's size (goal <= 0.6). Time: seconds from the meta model to
initialized shards, the slower rank (goal <= 1.5x torch's).
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

LAYERS, WIDTH_IN, WIDTH_OUT = 12, 4096, 8192
WORLD = 2


def _model() -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(LAYERS):
        layers += [nn.Linear(WIDTH_IN if i % 2 == 0 else WIDTH_OUT, WIDTH_OUT if i % 2 == 0 else WIDTH_IN), nn.ReLU()]
    return nn.Sequential(*layers)


def _rss_now() -> float:
    """The resident set now, in bytes (Linux: /proc/self/statm, in pages)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _worker(rank: int, variant: str, init_file: str, out_dir: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    import initlab as il

    warnings.filterwarnings("ignore", "DTensor random operators may not have complete support")
    torch.set_num_threads(1)  # two ranks on two cores
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    mesh = init_device_mesh("cpu", (WORLD,))
    with torch.device("meta"):
        model = _model()
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    dist.barrier()
    before = _rss_now()
    start = time.perf_counter()
    if variant == "torch":
        model.to_empty(device="cpu")
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    else:
        il.initialize(model, "torch_default", seed=0, device="cpu", example=torch.zeros(2, WIDTH_IN))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    Path(out_dir, f"{variant}{rank}.txt").write_text(f"{seconds} {peak - before} {before} {peak}")
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    with torch.device("meta"):
        size = sum(p.numel() for p in _model().parameters()) * 4
    print(f"model: {size / 1e9:.2f} GB fp32, {WORLD} ranks ({size / WORLD / 1e9:.2f} GB of shards each)")
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as out:
        for variant in ("torch", "initlab"):
            mp.spawn(_worker, args=(variant, str(Path(out, f"{variant}.init")), out), nprocs=WORLD, join=True)
            rows = [Path(out, f"{variant}{r}.txt").read_text().split() for r in range(WORLD)]
            seconds, rise = max(float(r[0]) for r in rows), max(float(r[1]) for r in rows)
            results[variant] = (seconds, rise)
            print(f"{variant}: {seconds:.2f} s, peak resident rise per rank {rise / 1e9:.2f} GB = "
                  f"{rise / size:.2f} of the model")  # fmt: skip
    print(
        f"initlab / torch time: {results['initlab'][0] / results['torch'][0]:.2f} (goal <= 1.5); "
        f"initlab peak per rank / model: {results['initlab'][1] / size:.2f} (goal <= 0.6)"
    )


if __name__ == "__main__":
    main()
