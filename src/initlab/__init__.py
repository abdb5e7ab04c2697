"""initlab: initialize deep networks correctly, predict and watch vanishing/exploding gradients.

The public surface is everything in ``__all__``; modules whose names start with ``_`` are private.
"""

from __future__ import annotations

from initlab import monitor, theory
from initlab._errors import InitlabError, TrainingDiverged
from initlab.compare.store import Store
from initlab.compare.train import RunResult, TrainConfig, train
from initlab.init import arrays as numpy
from initlab.init.activations import Activation, activation, activation_names
from initlab.init.fans import Fans, fans
from initlab.init.gains import gain
from initlab.init.model import InitReport, LayerInit, initialize
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
from initlab.monitor import Monitor
from initlab.theory.audit import AuditReport, audit
from initlab.theory.propagate import Prediction, predict

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "AuditReport",
    "Fans",
    "InitReport",
    "Initializer",
    "InitlabError",
    "LayerInit",
    "Monitor",
    "Prediction",
    "RunResult",
    "Store",
    "TrainConfig",
    "TrainingDiverged",
    "__version__",
    "activation",
    "activation_names",
    "audit",
    "constant_",
    "delta_orthogonal_",
    "dirac_",
    "fans",
    "gain",
    "get",
    "glorot_normal_",
    "glorot_uniform_",
    "he_normal_",
    "he_uniform_",
    "identity_",
    "initialize",
    "kaiming_normal_",
    "kaiming_uniform_",
    "lecun_normal_",
    "lecun_uniform_",
    "monitor",
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
    "xavier_normal_",
    "xavier_uniform_",
    "zeros_",
]
