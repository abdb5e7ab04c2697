"""One process of a real gloo process group on the CPU, as the distributed tests' workers run (spawned by
``torch.multiprocessing``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import torch
import torch.distributed as dist


@contextlib.contextmanager
def rank_of(rank: int, world: int, init_file: str) -> Iterator[None]:
    """Join the group (one thread per rank), run the body, and leave: every rank done with all communication before
    any tears its group down, then out without interpreter finalization. A rank sometimes aborted in gloo
    ("terminate called without an active exception", SIGABRT) under `pytest -n 2`: 2 of ~67 runs without the
    barrier, 1 of 360 with it (2026-11-24); 0 in 400 runs with the exit as well: gloo's threads can still be
    joinable at C++ static destruction (pytorch/pytorch PR #179291 describes such a crash at finalization). Only on
    success: an exception in the body still reaches ``mp.spawn``, which reports it."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
