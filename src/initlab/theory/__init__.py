"""Mean-field theory of signal propagation: ``meanfield`` (any activation, any grid) and ``propagate``
(through a concrete model)."""

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
