"""Plain result tables shared by initialization, prediction and audits: rows that print as rich tables.

A result is a list of dataclass rows plus a title; it converts to dicts and JSON for ``--format json`` and
renders with rich for people. One implementation serves every report type.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = ["Rows", "fmt"]


def fmt(value: Any) -> str:
    """Format a cell: floats in 4 significant digits, tuples compactly, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "×".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else str(value)
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclasses.dataclass
class Rows:
    """Base of every tabular result: ``rows`` of dataclasses, a ``title`` and the ``columns`` to show."""

    rows: list[Any]
    title: ClassVar[str] = ""
    columns: ClassVar[Sequence[str]] = ()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return self.rows[key]
        for row in self.rows:
            if getattr(row, "name", None) == key:
                return row
        raise KeyError(key)

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per row (JSON-safe values)."""
        return [{k: _plain(v) for k, v in dataclasses.asdict(r).items()} for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        """The whole result as a JSON-safe dict (rows plus any extra fields of the subclass)."""
        extra = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "rows"}
        return {**extra, "rows": self.to_records()}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    def table(self) -> Table:
        table = Table(title=self.title or None, show_lines=False)
        cols = list(self.columns) or [f.name for f in dataclasses.fields(self.rows[0])] if self.rows else []
        for col in cols:
            table.add_column(col, overflow="fold")
        for row in self.rows:
            table.add_row(*(fmt(getattr(row, c)) for c in cols))
        return table

    def __rich__(self) -> RenderableType:
        """The table, then the result's ``notes`` (if it has any), one per line."""
        notes = getattr(self, "notes", None) or []
        return Group(self.table(), *(Text(f"note: {n}") for n in notes)) if notes else self.table()

    def __str__(self) -> str:
        return render(self.__rich__())


def render(renderable: RenderableType) -> str:
    """A rich renderable as plain text, 160 columns wide: what ``print(result)`` shows."""
    buffer = io.StringIO()
    Console(file=buffer, width=160, color_system=None).print(renderable)
    return buffer.getvalue()
