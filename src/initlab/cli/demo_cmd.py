"""``initlab demo``: the curated sweep, nine measured claims and the report."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from initlab.cli._common import Format, FormatOption, emit, stdout, user_errors
from initlab.cli.sweep_cmd import SweepProgress, stopped_cleanly
from initlab.compare._demo_runs import CLAIM_IDS, DATASETS  # torch-free: the CLI's start-up stays light

CLAIMS = ", ".join(CLAIM_IDS)


@user_errors
def demo_command(
    quick: bool = typer.Option(False, "--quick", help="Fewer seeds, epochs and depths: about a minute."),
    data: str = typer.Option("digits", "--data", help=f"Data set: {', '.join(DATASETS)}."),
    data_dir: str = typer.Option(
        "",
        "--data-dir",
        help="Directory of IDX files (default for fashion-mnist: "
        "/usr/share/datasets/fashion-mnist, from Debian's dataset-fashion-mnist).",
    ),
    out: Path = typer.Option(Path("initlab-demo"), "--out", help="Directory for runs.db and report.html."),
    workers: int | None = typer.Option(None, "--workers", help="Runs at once (default: one per core)."),
    claims: str = typer.Option("", "--claims", help=f"Comma-separated claims to run (default: all): {CLAIMS}."),
    fmt: Format = FormatOption,
) -> None:
    """Train deep nets under many initializations and remedies, judge nine claims, and write the HTML report."""
    from initlab.compare.demo import demo_spec, run_demo
    from initlab.compare.sweep.local import LocalPool

    started = time.perf_counter()
    spec = demo_spec(quick, data, data_dir, claims or None)
    pool = LocalPool(workers)
    again = f"initlab demo{' --quick' if quick else ''} --data {data} --out {out}{f' --claims {claims}' * bool(claims)}"
    try:
        with stopped_cleanly(again), SweepProgress(spec, pool.workers) as display:
            result = run_demo(
                out, pool, quick=quick, data=data, data_dir=data_dir, reporter=display, claims=claims or None
            )
    finally:
        pool.close()
    if fmt is Format.json:
        emit(_as_json(result, len(spec.points), data, time.perf_counter() - started), fmt)
        return
    answer = Table(title="Which initialization for which activation (plain runs, equal footing)", title_justify="left")
    for col in ("activation", "depth, lr", "trained best", "score", "runner-up", "score ", "why (theory)"):
        answer.add_column(col, overflow="fold")
    for r in result.recommendations:
        answer.add_row(r.activation, f"{r.depth}, {r.lr}", r.best_label, r.best_text, r.runner_up, r.runner_up_text,
                       r.reason)  # fmt: skip
    stdout.print(answer)
    table = Table(title=f"initlab demo: {len(spec.points)} runs on {data}", title_justify="left")
    table.add_column("#")
    table.add_column("claim")
    table.add_column("verdict")
    table.add_column("measured", overflow="fold")
    for i, claim in enumerate(result.claims, 1):
        colour = {"reproduced": "green", "partly reproduced": "yellow", "not run": "dim"}.get(claim["verdict"], "red")
        table.add_row(str(i), claim["title"], f"[{colour}]{claim['verdict']}[/]", claim["summary"])
    stdout.print(table)
    split = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    stdout.print(f"store: {result.store}\nreport: {result.report.resolve()}\n"
                 f"({time.perf_counter() - started:.0f} s: {split})", highlight=False)  # fmt: skip


def _as_json(result: Any, runs: int, data: str, seconds: float) -> dict[str, Any]:
    """The demo's answer for programs: the same recommendations and claims the tables show, with their numbers."""
    recommendations = [{**dataclasses.asdict(r), "tied": r.tied, "best_text": r.best_text,
                        "runner_up_text": r.runner_up_text}
                       for r in result.recommendations]  # fmt: skip
    return {"data": data, "runs": runs, "store": str(result.store), "report": str(result.report.resolve()),
            "recommendations": recommendations, "claims": result.claims,
            "seconds": {**result.seconds, "total": round(seconds, 1)}}  # fmt: skip
