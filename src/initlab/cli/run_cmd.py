"""``initlab run``: one training run from a TOML file and/or ``--field value`` options, into the store."""

from __future__ import annotations

import dataclasses
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from initlab._errors import fail
from initlab.cli._common import Format, FormatOption, emit, stderr, stdout, user_errors
from initlab.compare.config import TrainConfig

if TYPE_CHECKING:
    from initlab.compare.train import EpochMetrics, RunResult

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
OPTIONS = ", ".join("--" + f.replace("_", "-") for f in FIELDS)
HELP = (
    "Train one configuration and store its results. Every TrainConfig field is an option, "
    f"written --field VALUE (or --field=VALUE): {OPTIONS}."
)


@user_errors
def run_command(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", help="A TOML file of TrainConfig fields."),
    store: Path = typer.Option(Path("runs.db"), "--store", help="The SQLite run store to write."),
    fmt: Format = FormatOption,
) -> None:
    values: dict[str, Any] = _read_toml(config) if config is not None else {}
    values.update(_parse_options(ctx.args))
    cfg = TrainConfig.from_dict(values)
    result = _train_with_progress(cfg)
    from initlab.compare.store import Store

    with Store(store) as db:
        db.write(result)
    _report(result, store, fmt)


run_command.__doc__ = HELP


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise fail(f"config file {path} does not exist", fix="Pass the path of a TOML file of TrainConfig fields.") \
            from None  # fmt: skip
    except tomllib.TOMLDecodeError as error:
        raise fail(f"config file {path} is not valid TOML: {error}", fix="Fix the TOML syntax.") from None
    return dict(data.get("run", data))


def _parse_options(args: list[str]) -> dict[str, str]:
    """``--depth 20 --scheme=he_normal`` → {"depth": "20", "scheme": "he_normal"}."""
    values, i = {}, 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--"):
            raise fail(f"unexpected argument {token!r}", accepted="--field VALUE pairs", fix=HELP)
        key, _, value = token[2:].partition("=")
        if not value:
            if i + 1 >= len(args):
                raise fail(f"option {token} needs a value", fix=f"Write {token} VALUE.")
            value, i = args[i + 1], i + 1
        values[key.replace("-", "_")] = value
        i += 1
    return values


def _train_with_progress(cfg: TrainConfig) -> RunResult:
    from initlab.compare.train import train

    if not sys.stderr.isatty():
        return train(cfg)
    from rich.progress import Progress

    with Progress(console=stderr, transient=True) as progress:
        task = progress.add_task(f"run {cfg.run_id}", total=cfg.epochs)

        def advance(m: EpochMetrics) -> None:
            progress.update(task, advance=1, description=f"epoch {m.epoch}: test acc {m.test_accuracy:.3f}")

        return train(cfg, on_epoch=advance)


def _report(result: RunResult, store: Path, fmt: Format) -> None:
    final = result.final
    summary = {
        "run_id": result.run_id, "store": str(store), "epochs": len(result.epochs), "steps": result.steps,
        "train_loss": final.train_loss if final else None, "test_accuracy": final.test_accuracy if final else None,
        "diverged": result.diverged, "seconds": round(result.seconds, 3),
        "findings": [{"step": f.step, "layer": f.layer, "kind": f.kind, "message": f.message} for f in result.findings],
    }  # fmt: skip
    bits = result.measures.get("test_bits_per_char")  # a language model's score
    if bits is not None:
        summary["test_bits_per_char"] = bits
    if fmt is Format.json:
        emit(summary, fmt)
        return
    score = f"test accuracy {summary['test_accuracy']:.3f}" + (f", {bits:.3f} bits per character" if bits else "")
    stdout.print(f"run {result.run_id}: {summary['epochs']} epochs, train loss {summary['train_loss']:.4g}, "
                 f"{score}, diverged {result.diverged} → {store}")  # fmt: skip
    for f in result.findings:
        stdout.print(f"• {f}")
