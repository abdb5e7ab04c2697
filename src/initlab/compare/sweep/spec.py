"""A sweep spec: a grid of TrainConfigs from a TOML file, expanded deterministically.

.. code-block:: toml

    seeds = [0, 1]              # every point once per seed (default: base's seed)

    [base]                      # TrainConfig fields shared by every point
    epochs = 5

    [grid]                      # lists crossed in the order written
    scheme = ["he_normal", "glorot_normal"]
    depth = [5, 20]

    [[include]]                 # extra single points, each on top of [base]
    scheme = "zeros"

Without ``[grid]``, the points are the ``[[include]]`` ones (or ``[base]`` alone if there are none).
Each point's id is :attr:`TrainConfig.run_id`, a hash of its resolved config, so the same point is the same run
in every backend and every resume.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from initlab._errors import fail, unknown_name
from initlab.compare.config import TrainConfig

__all__ = ["SweepSpec", "expand", "load_spec"]

_SECTIONS = ("base", "grid", "include", "seeds", "name")
_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """The expanded points of a sweep, in a fixed order, and the fields that vary between them."""

    name: str
    points: tuple[TrainConfig, ...]

    @functools.cached_property
    def varying(self) -> tuple[str, ...]:
        """TrainConfig fields that differ between points (what a label should show)."""
        dicts = [p.to_dict() for p in self.points]
        return tuple(f for f in _FIELDS if len({repr(d[f]) for d in dicts}) > 1)

    def label(self, config: TrainConfig) -> str:
        """A short name of one point: its values of the varying fields.

        >>> spec = expand({"epochs": 1}, {"depth": [2, 3]})
        >>> spec.label(spec.points[1])
        'depth=3'
        """
        values = config.to_dict()
        return " ".join(f"{f}={values[f]}" for f in self.varying) or config.run_id


def _check_fields(where: str, values: Mapping[str, Any]) -> None:
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise unknown_name(f"TrainConfig field in {where}", unknown[0], _FIELDS)


def expand(base: Mapping[str, Any], grid: Mapping[str, Sequence[Any]] | None = None,
           include: Iterable[Mapping[str, Any]] = (), seeds: Sequence[int] | None = None,
           name: str = "sweep") -> SweepSpec:  # fmt: skip
    """Cross ``grid`` over ``base``, add the ``include`` points, repeat for every seed; drop duplicates.

    >>> spec = expand({"epochs": 1}, {"scheme": ["he_normal", "zeros"], "depth": [2, 3]}, seeds=[0, 1])
    >>> len(spec.points), spec.varying
    (8, ('depth', 'scheme', 'seed'))
    """
    grid = dict(grid or {})
    _check_fields("[base]", base)
    _check_fields("[grid]", grid)
    for key, values in grid.items():
        if not isinstance(values, list | tuple):
            raise fail(f"[grid] field {key!r} must be a list of values", received=values,
                       fix=f"Write {key} = [{values!r}] or move it to [base].")  # fmt: skip
        if not values:
            raise fail(f"[grid] field {key!r} is an empty list, so the grid has no points",
                       fix=f"Give {key} at least one value, or remove it from [grid].")  # fmt: skip
    include = list(include)
    for extra in include:
        _check_fields("[[include]]", extra)
    points = [{**base, **extra} for extra in include]
    if grid or not include:  # a spec of only [base] is one point; only [[include]]: just those points
        crossed = [{**base, **dict(zip(grid, c, strict=True))} for c in itertools.product(*grid.values())]
        points = crossed + points
    if seeds is not None:
        if not seeds:
            raise fail("seeds is an empty list", fix="Give at least one seed, e.g. seeds = [0], or remove it.")
        points = [{**p, "seed": s} for p in points for s in seeds]
    configs: dict[str, TrainConfig] = {}
    for point in points:
        config = TrainConfig.from_dict(point)
        configs.setdefault(config.run_id, config)
    return SweepSpec(name, tuple(configs.values()))


def load_spec(path: str | Path) -> SweepSpec:
    """Read and expand a sweep spec file (see the module docs for the format)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise fail(f"sweep spec {path} does not exist", fix="Pass the path of a TOML sweep spec.") from None
    except tomllib.TOMLDecodeError as error:
        raise fail(f"sweep spec {path} is not valid TOML: {error}", fix="Fix the TOML syntax.") from None
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise unknown_name("sweep spec section", unknown[0], _SECTIONS)
    include = data.get("include", [])
    if isinstance(include, dict):
        include = [include]
    return expand(data.get("base", {}), data.get("grid", {}), include, data.get("seeds"), data.get("name", path.stem))
