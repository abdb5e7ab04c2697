"""Mean-field theory of signal propagation: ``meanfield`` (the maps and their fixed points, any activation),
``critical`` (the edge of chaos and the ``critical`` scheme, registered on import), ``diagram`` (a whole grid),
``propagate`` (through a concrete model), ``schemes`` (a scheme's trainable depth) and ``audit``."""

from initlab.theory.critical import critical_weight_var
from initlab.theory.diagram import PhaseDiagram, phase_diagram
from initlab.theory.meanfield import (
    DepthScales,
    c_fixed_point,
    chi1,
    cmap,
    depth_scales,
    fixed_point,
    layer_profile,
    phase,
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
