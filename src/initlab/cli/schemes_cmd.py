"""``initlab schemes``: every initialization scheme with its formula and paper."""

from __future__ import annotations

from rich.table import Table

from initlab.cli._common import Format, FormatOption, emit, user_errors
from initlab.init.registry import schemes


@user_errors
def schemes_command(fmt: Format = FormatOption) -> None:
    """List every initialization scheme with its formula, its paper and its aliases."""
    rows = [
        {
            "name": s.name,
            "class_name": s.class_name,
            "aliases": list(s.aliases),
            "formula": s.formula,
            "paper": s.paper,
            "parameters": dict(s.defaults),
        }
        for s in schemes()
    ]
    if fmt is Format.json:
        emit(rows, fmt)
        return
    table = Table(title=f"initlab schemes ({len(rows)})")
    for col in ("name", "aliases", "formula", "paper"):
        table.add_column(col, overflow="fold")
    for s in schemes():
        table.add_row(s.name, ", ".join([s.class_name, *s.aliases]), s.formula, s.paper)
    emit(table, fmt)
