"""``initlab schemes``: every initialization scheme with its formula and paper."""

from __future__ import annotations

from rich.table import Table

from initlab.cli._common import Format, FormatOption, emit, user_errors

GAIN_RULE = (
    "Every name keeps its published meaning (no activation gain for Glorot/Xavier and LeCun, √2 for "
    "He/Kaiming, torch's and Keras' defaults for their names); gain_from='activation' (--gain-from activation) opts "
    "into the gain of the activation after each layer."
)


@user_errors
def schemes_command(fmt: Format = FormatOption) -> None:
    """List every initialization scheme with its formula, its paper and its aliases."""
    from initlab.init.registry import schemes

    rows = [
        {
            "name": s.name,
            "class_name": s.class_name,
            "aliases": list(s.aliases),
            "formula": s.formula,
            "paper": s.paper,
            "parameters": dict(s.defaults),
            "published_gain": s.default_gain,
        }
        for s in schemes()
    ]
    if fmt is Format.json:
        emit(rows, fmt)
        return
    table = Table(title=f"initlab schemes ({len(rows)})", caption=GAIN_RULE)
    for col in ("name", "aliases", "formula", "paper"):
        table.add_column(col, overflow="fold")
    for s in schemes():
        table.add_row(s.name, ", ".join([s.class_name, *s.aliases]), s.formula, s.paper)
    emit(table, fmt)
