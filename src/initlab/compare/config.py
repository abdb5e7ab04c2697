"""Every knob of one training run, as one frozen, commented dataclass: :class:`TrainConfig`.

Torch-free on purpose, so that the command line can list the fields (``initlab run --help``) and reject a bad
value before any heavy import or any work starts; ``initlab.compare.train`` runs a config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from typing import Any

from initlab._errors import fail, unknown_name
from initlab.init import GAIN_SOURCES, RESIDUAL_RULES

__all__ = ["NORM_POSITIONS", "OPTIMIZERS", "PARAMETRIZATIONS", "TrainConfig"]

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
NORM_POSITIONS = ("pre", "post", "deepnorm")  # the transformer's: x + f(LN(x)), LN(x + f(x)), LN(α·x + f(x))
PARAMETRIZATIONS = ("standard", "mup", "completep", "depth_mup")
_INT64 = 2**63 - 1

RESIDUAL_INITS = ("none", *RESIDUAL_RULES)  # initialize(residual=...), and "none"


@dataclasses.dataclass(frozen=True)
class _Range:
    """A numeric field's accepted values: finite, from ``low`` to ``high`` (``open_high``: ``high`` excluded)."""

    low: float
    high: float
    open_high: bool = False

    def holds(self, value: float) -> bool:
        return (
            math.isfinite(value) and self.low <= value and (value < self.high if self.open_high else value <= self.high)
        )

    def text(self, kind: type) -> str:
        def show(x: float) -> str:
            return str(int(x)) if kind is int else f"{x:g}"

        upper = f"below {show(self.high)}" if self.open_high else f"at most {show(self.high)}"
        return f"{'an int' if kind is int else 'a finite number'} from {show(self.low)}, {upper}"


# The constraints of every numeric field, declared as data (scikit-learn's habit): Python, TOML files and the
# command line all go through __post_init__, so a bad value fails before any work starts, with one message.
_RANGES: dict[str, _Range] = {
    "depth": _Range(1, 10_000), "width": _Range(1, 65_536), "dropout": _Range(0, 1, open_high=True),
    "groups": _Range(1, 65_536), "lr": _Range(1e-12, 1e6), "momentum": _Range(0, 1, open_high=True),
    "weight_decay": _Range(0, 1e3), "epochs": _Range(1, 1_000_000), "max_steps": _Range(0, 10**12),
    "batch_size": _Range(1, 10**7), "clip_grad_norm": _Range(0, 1e12), "clip_grad_value": _Range(0, 1e12),
    "clip_weight": _Range(0, 1e12), "max_norm": _Range(0, 1e12), "seed": _Range(0, _INT64),
    "monitor_every": _Range(1, 10**12), "heads": _Range(1, 4096), "base_width": _Range(1, 65_536),
    "base_depth": _Range(1, 10_000),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every knob of a run. The run's id is a hash of these values, so equal configs are the same run."""

    # data and model
    data: str = "digits"  # a name initlab.compare.data.load knows
    data_dir: str = ""  # directory of IDX files (mnist, fashion-mnist)
    model: str = "mlp"  # mlp, cnn, rnn or transformer (a language model: data "text")
    depth: int = 5  # hidden layers
    width: int = 128  # hidden units (channels for cnn, hidden size for rnn)
    activation: str = "relu"
    norm: str = "none"  # none, batch or layer (remedy: BatchNorm)
    dropout: float = 0.0  # remedy: dropout
    weight_norm: bool = False  # remedy: weight normalization (Salimans & Kingma 2016)
    residual: bool = False  # remedy: residual connections
    groups: int = 1  # cnn only
    cell: str = "rnn"  # rnn only: rnn, lstm, gru
    norm_position: str = "pre"  # transformer only: pre, post or deepnorm (post-LN with DeepNet's α)
    heads: int = 4  # transformer only: attention heads (a divisor of width)
    tied: bool = False  # transformer only: the output layer shares the token embedding
    # initialization
    scheme: str = "he_normal"  # any name `initlab schemes` lists
    gain_from: str = "published"  # published: the scheme's own gain; activation: the following activation's (opt-in)
    residual_init: str = "none"  # one of RESIDUAL_INITS
    # or mup: µP (Yang et al. 2021) relative to base_width, lr per parameter; completep (Dey et al. 2025) or depth_mup
    # (Yang et al. 2023): residual branches ×(depth/base_depth)^-α, Adam's lr and ε per parameter (initlab.depth)
    parametrization: str = "standard"
    base_width: int = 64  # mup only: the width at which µP equals the standard parametrization
    base_depth: int = 2  # completep and depth_mup only: the depth at which they equal the standard parametrization
    # optimization
    optimizer: str = "sgd"  # sgd, momentum, rmsprop, adam, adamw
    lr: float = 0.1
    momentum: float = 0.9  # for "momentum" (and rmsprop's)
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant or cosine (over all steps)
    epochs: int = 20
    max_steps: int = 0  # stop after this many steps (0: no limit)
    batch_size: int = 64
    # remedies applied at each step
    clip_grad_norm: float = 0.0  # clip the global gradient norm to this (0: off)
    clip_grad_value: float = 0.0  # clip every gradient element to ±this (0: off)
    clip_weight: float = 0.0  # clip every weight to ±this after each step (0: off)
    max_norm: float = 0.0  # max-norm constraint on each unit's incoming weights (0: off)
    # bookkeeping
    seed: int = 0
    device: str = "cpu"
    monitor: bool = True
    monitor_every: int = 10
    snapshots: bool = False  # audit (theory vs one batch) and per-layer histograms at init and at the end

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name("optimizer", self.optimizer, OPTIMIZERS)
        if self.schedule not in ("constant", "cosine"):
            raise unknown_name("schedule", self.schedule, ("constant", "cosine"))
        if self.gain_from not in GAIN_SOURCES:
            raise unknown_name("gain_from", self.gain_from, GAIN_SOURCES)
        for field, names in (("residual_init", RESIDUAL_INITS), ("norm_position", NORM_POSITIONS),
                             ("parametrization", PARAMETRIZATIONS)):  # fmt: skip
            if getattr(self, field) not in names:
                raise unknown_name(field, getattr(self, field), names)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, accepted in _RANGES.items():
            value = getattr(self, name)
            if not accepted.holds(value):
                kind = type(defaults[name])
                raise fail(f"config field {name!r} is out of range", accepted=accepted.text(kind), received=value,
                           fix=f"Pass {name}={defaults[name]!r} (the default) or another accepted value.")  # fmt: skip

    @property
    def run_id(self) -> str:
        """A hash of the resolved config: the same point is the same run everywhere."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a dict (values may be strings, as on a command line), rejecting unknown keys and values
        of the wrong type with what is accepted."""
        types = typing.get_type_hints(cls)
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise unknown_name("config field", unknown[0], types)
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        return cls(**{k: _coerce(k, v, types[k], defaults[k]) for k, v in values.items()})


def _coerce(name: str, value: Any, kind: type, default: Any) -> Any:
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    text = str(value).strip().lower()
    try:
        if kind is bool:
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(text)
        return kind(value)
    except (TypeError, ValueError):
        article = "an" if kind.__name__[0] in "aeiou" else "a"
        example = f"e.g. {name}={default!r} (the default)"
        raise fail(f"config field {name!r} takes {article} {kind.__name__}", received=value,
                   fix=f"Give {name} {article} {kind.__name__} value, {example}.") from None  # fmt: skip
