"""Mean-field theory of signal propagation: ``meanfield`` (any activation, any grid) and ``propagate``
(through a concrete model). Importing it registers the ``critical`` initializer (``critical.py``)."""

from initlab.theory import critical as _critical  # noqa: F401  (registers the scheme)
from initlab.theory.meanfield import (
    DepthScales,
    PhaseDiagram,
    c_fixed_point,
    chi1,
    cmap,
    critical_weight_var,
    depth_scales,
    fixed_point,
    layer_profile,
    phase,
    phase_diagram,
    qmap,
)

__all__ = [
    "DepthScales",
    "PhaseDiagram",
    "c_fixed_point",
    "chi1",
    "cmap",
    "critical_weight_var",
    "depth_scales",
    "fixed_point",
    "layer_profile",
    "phase",
    "phase_diagram",
    "qmap",
]
