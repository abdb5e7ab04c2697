"""Shared test set-up."""

from __future__ import annotations

import os

# Keras 3 runs on the torch backend beside initlab; it reads this before its first import.
os.environ.setdefault("KERAS_BACKEND", "torch")

# Under pytest-xdist each worker is one process on a 2-core machine: one torch thread per worker, or
# OpenMP threads oversubscribe the cores and spin (measured: a 20 s test file took 590 s with -n 2).
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)
