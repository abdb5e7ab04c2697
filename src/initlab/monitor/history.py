"""The monitor's history: one row per recorded step × layer × statistic, kept compactly per step."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from initlab._tables import fmt, render

__all__ = ["History"]


class History:
    """Recorded statistics. ``records[i]`` maps (layer, statistic) to its value at ``steps[i]``."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.records: list[dict[tuple[str, str], float]] = []
        self.inapplicable: set[tuple[str, str]] = set()  # (layer, stat) recorded as 0 that means nothing there

    def applies(self, layer: str, stat: str) -> bool:
        """Whether a statistic means something for a layer (``dead`` after tanh does not); a layer called twice
        per step (``fc#2``) follows the layer."""
        return (layer.split("#")[0], stat) not in self.inapplicable

    def add(self, step: int, record: dict[tuple[str, str], float]) -> None:
        self.steps.append(step)
        self.records.append(record)

    def add_late(self, step: int, names: Sequence[tuple[str, str]], values: Sequence[float]) -> None:
        """Statistics that become known after the step was recorded (update ratios)."""
        if self.steps and self.steps[-1] == step:
            self.records[-1].update(zip(names, values, strict=True))

    def state_dict(self) -> dict[str, list[Any]]:
        """The recorded steps in plain lists (``[layer, stat, value]`` per statistic), for a checkpoint."""
        records = [[[layer, stat, value] for (layer, stat), value in r.items()] for r in self.records]
        return {"steps": list(self.steps), "records": records}

    def load_state_dict(self, state: dict[str, list[Any]]) -> None:
        """Continue from a :meth:`state_dict`: its steps replace what was recorded."""
        self.steps = list(state["steps"])
        self.records = [{(layer, stat): value for layer, stat, value in r} for r in state["records"]]

    def __len__(self) -> int:
        return sum(len(r) for r in self.records)

    def to_records(self) -> list[dict[str, Any]]:
        """The tidy table: ``{"step", "layer", "stat", "value"}`` per row (NaN/Inf as strings)."""
        return [{"step": step, "layer": layer, "stat": stat, "value": _json(value)}
                for step, record in zip(self.steps, self.records, strict=True)
                for (layer, stat), value in record.items()]  # fmt: skip

    def to_jsonl(self, path: str | Path) -> Path:
        """Write one JSON object per row."""
        out = Path(path)
        with out.open("w") as fh:
            for row in self.to_records():
                fh.write(json.dumps(row) + "\n")
        return out

    def series(self, layer: str, stat: str) -> tuple[list[int], list[float]]:
        """The steps and values of one statistic of one layer.

        >>> h = History(); h.add(1, {("fc", "mean"): 0.5}); h.add(2, {("fc", "mean"): 0.25})
        >>> h.series("fc", "mean")
        ([1, 2], [0.5, 0.25])
        """
        pairs = [(s, r[(layer, stat)]) for s, r in zip(self.steps, self.records, strict=True) if (layer, stat) in r]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def summary_table(self, findings: Sequence[Any] = ()) -> Table:
        """The last recorded value of each statistic, one row per layer."""
        table = Table(title=f"initlab.Monitor: step {self.steps[-1] if self.steps else 0}, "
                            f"{len(findings)} finding(s)")  # fmt: skip
        if not self.records:
            return table
        last = self.records[-1]
        stats = list(dict.fromkeys(stat for _, stat in last))
        layers = list(dict.fromkeys(layer for layer, _ in last))
        table.add_column("layer")
        for stat in stats:
            table.add_column(stat, justify="right")
        for layer in layers:
            table.add_row(layer, *(fmt(self._shown(layer, s, last.get((layer, s)))) for s in stats))
        return table

    def _shown(self, layer: str, stat: str, value: float | None) -> float | None:
        """What a table cell shows: None ("-") where the statistic means nothing for the layer, and for a ratio to
        a zero norm (a zero-initialized bias: the probes record it as NaN, undefined)."""
        if not self.applies(layer, stat) or (stat.endswith("_ratio") and value is not None and math.isnan(value)):
            return None
        return value


class Summary:
    """What :meth:`initlab.Monitor.summary` returns: a rich table that also prints as text with ``print()``
    (it printed ``<rich.table.Table object ...>``, issue 23)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def __rich__(self) -> Table:
        return self.table

    def __str__(self) -> str:
        return render(self.table)


def _json(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
