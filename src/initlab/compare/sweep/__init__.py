"""Sweeps: a grid of runs from a TOML spec, run on local cores or a Ray cluster, crash-safe through the store."""

from initlab.compare.sweep.local import LocalPool
from initlab.compare.sweep.runner import Backend, Failure, SweepSummary, run_sweep
from initlab.compare.sweep.spec import SweepSpec, expand, load_spec

__all__ = ["Backend", "Failure", "LocalPool", "SweepSpec", "SweepSummary", "expand", "load_spec", "run_sweep"]
