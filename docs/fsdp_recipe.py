"""The recipe for a model that does not fit one process (issue 31): build it on the meta device, shard it with FSDP2,
initialize it (each rank draws only its shards; the weights are those of one process), then train it with the
Monitor (statistics reduced across ranks).

Run: .venv/bin/torchrun --nproc-per-node 2 docs/fsdp_recipe.py   (gloo on CPUs; use "nccl" and device="cuda" on GPUs)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

import initlab as il


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    with torch.device("meta"):  # no memory yet: the shape of the model only
        blocks = [nn.Sequential(nn.Linear(256, 256), nn.Tanh()) for _ in range(8)]
        model = nn.Sequential(*blocks, nn.Linear(256, 10))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    report = il.initialize(model, "critical", seed=0, device="cpu", example=torch.zeros(2, 256))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(rank)  # each rank its own batches
    with il.Monitor(model, every=5) as monitor:
        for _ in range(20):
            x, y = torch.randn(32, 256, generator=data), torch.randint(0, 10, (32,), generator=data)
            loss = nn.functional.cross_entropy(model(x), y)
            monitor.observe_loss(loss)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    first = report["0.0.weight"]
    if rank == 0:
        print(
            f"{world} ranks: {len(report.rows)} parameters initialized, 0.0.weight std {first.std:.4f} "
            f"({first.scheme}), {len(monitor.history.steps)} steps recorded, {len(monitor.findings)} finding(s)"
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
