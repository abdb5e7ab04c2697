"""Watch training: per-layer statistics at almost no cost, findings in plain words, and what to try."""

from initlab.monitor.core import Monitor, Schedule, linear_schedule, log_schedule
from initlab.monitor.detectors import REMEDIES, Finding, Thresholds
from initlab.monitor.history import History
from initlab.monitor.probes import ActivationStats, GradientNorms, LossProbe, Probe, UpdateRatio, fused_kernels

__all__ = [
    "REMEDIES",
    "ActivationStats",
    "Finding",
    "GradientNorms",
    "History",
    "LossProbe",
    "Monitor",
    "Probe",
    "Schedule",
    "TensorBoardWriter",
    "Thresholds",
    "UpdateRatio",
    "fused_kernels",
    "linear_schedule",
    "log_schedule",
]


def __getattr__(name: str) -> object:
    # TensorBoard is an optional extra: import it only when asked for.
    if name == "TensorBoardWriter":
        from initlab.monitor.export import TensorBoardWriter

        return TensorBoardWriter
    raise AttributeError(name)
