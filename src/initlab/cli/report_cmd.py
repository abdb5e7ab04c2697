"""``initlab report``: the HTML report of a run store."""

from __future__ import annotations

from pathlib import Path

import typer

from initlab.cli._common import Format, FormatOption, emit, stdout, user_errors


@user_errors
def report_command(
    store: Path = typer.Argument(..., metavar="STORE", help="The SQLite run store a run, sweep or demo wrote."),
    out: Path = typer.Option(Path("report.html"), "-o", "--out", help="The HTML file to write."),
    fmt: Format = FormatOption,
) -> None:
    """Write a self-contained HTML report (images embedded, readable offline) built only from the store."""
    from initlab.compare.store import Store

    Store(store, create=False).close()  # the one check (and message) for a store that is not there
    from initlab.compare.report.html import build_report  # matplotlib and jinja load after the check

    path = build_report(store, out)
    if fmt is Format.json:
        emit({"report": str(path.resolve()), "store": str(store.resolve())}, fmt)
    else:
        stdout.print(f"report: {path}", highlight=False)
