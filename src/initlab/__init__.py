"""initlab: initialize deep networks correctly, predict and watch vanishing/exploding gradients.

The public surface is everything in ``__all__``; modules whose names start with ``_`` are private. Public names
load on first use (PEP 562), so ``import initlab`` and ``initlab --help`` do not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from initlab._errors import InitlabError, TrainingDiverged

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and readers
    from initlab import monitor, theory
    from initlab.compare.store import Store
    from initlab.compare.train import RunResult, TrainConfig, train
    from initlab.compare.transformer import TransformerLM
    from initlab.init import arrays as numpy
    from initlab.init.activations import Activation, activation, activation_names
    from initlab.init.coord_check import CoordCheck, coord_check
    from initlab.init.depth import Depth, depth
    from initlab.init.fans import Fans, fans
    from initlab.init.gains import gain
    from initlab.init.identify import IdentifyReport, identify
    from initlab.init.lsuv import LsuvReport
    from initlab.init.model import InitReport, LayerInit, initialize, lsuv
    from initlab.init.mup import Mup, mup
    from initlab.init.registry import Initializer, get, scheme_names, schemes
    from initlab.init.tensors import (
        constant_,
        delta_orthogonal_,
        dirac_,
        glorot_normal_,
        glorot_uniform_,
        he_normal_,
        he_uniform_,
        identity_,
        kaiming_normal_,
        kaiming_uniform_,
        lecun_normal_,
        lecun_uniform_,
        normal_,
        ones_,
        orthogonal_,
        small_random_,
        sparse_,
        torch_default_,
        truncated_normal_,
        uniform_,
        variance_scaling_,
        xavier_normal_,
        xavier_uniform_,
        zeros_,
    )
    from initlab.init.verify import VerifyReport, verify
    from initlab.monitor import Monitor
    from initlab.theory.audit import AuditReport, audit
    from initlab.theory.propagate import Prediction, predict

__version__ = "0.1.0"

_MODULES = {"monitor": "initlab.monitor", "theory": "initlab.theory", "numpy": "initlab.init.arrays"}
_WHERE = {
    **dict.fromkeys(("Activation", "activation", "activation_names"), "initlab.init.activations"),
    **dict.fromkeys(("AuditReport", "audit"), "initlab.theory.audit"),
    **dict.fromkeys(("Fans", "fans"), "initlab.init.fans"),
    **dict.fromkeys(("CoordCheck", "coord_check"), "initlab.init.coord_check"),
    **dict.fromkeys(("Depth", "depth"), "initlab.init.depth"),
    "gain": "initlab.init.gains",
    **dict.fromkeys(("InitReport", "LayerInit", "initialize", "lsuv"), "initlab.init.model"),
    "LsuvReport": "initlab.init.lsuv",
    **dict.fromkeys(("Mup", "mup"), "initlab.init.mup"),
    "TransformerLM": "initlab.compare.transformer",
    "Monitor": "initlab.monitor",
    **dict.fromkeys(("Initializer", "get", "scheme_names", "schemes"), "initlab.init.registry"),
    "Store": "initlab.compare.store",
    **dict.fromkeys(("Prediction", "predict"), "initlab.theory.propagate"),
    **dict.fromkeys(("RunResult", "TrainConfig", "train"), "initlab.compare.train"),
    **dict.fromkeys(("VerifyReport", "verify"), "initlab.init.verify"),
    **dict.fromkeys(("IdentifyReport", "identify"), "initlab.init.identify"),
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value: Any = importlib.import_module(_MODULES[name])
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"module 'initlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Activation",
    "AuditReport",
    "CoordCheck",
    "Depth",
    "Fans",
    "IdentifyReport",
    "InitReport",
    "Initializer",
    "InitlabError",
    "LayerInit",
    "LsuvReport",
    "Monitor",
    "Mup",
    "Prediction",
    "RunResult",
    "Store",
    "TrainConfig",
    "TrainingDiverged",
    "TransformerLM",
    "VerifyReport",
    "__version__",
    "activation",
    "activation_names",
    "audit",
    "constant_",
    "coord_check",
    "delta_orthogonal_",
    "depth",
    "dirac_",
    "fans",
    "gain",
    "get",
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "identify",
    "identity_",
    "initialize",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "lsuv",
    "monitor",
    "mup",
    "normal_",
    "numpy",
    "ones_",
    "orthogonal_",
    "predict",
    "scheme_names",
    "schemes",
    "small_random_",
    "sparse_",
    "theory",
    "torch_default_",
    "train",
    "truncated_normal_",
    "uniform_",
    "variance_scaling_",
    "verify",
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
# every tensor initializer (``he_normal_``, ``xavier_uniform_``, …) lives in initlab.init.tensors
_WHERE.update(dict.fromkeys((n for n in __all__ if n.endswith("_") and not n.startswith("_")), "initlab.init.tensors"))
