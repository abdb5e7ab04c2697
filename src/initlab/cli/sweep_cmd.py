"""``initlab sweep``: run a grid spec on local cores or a Ray cluster into the store; resume; show status."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from initlab._errors import fail
from initlab.cli._common import Format, FormatOption, emit, stderr, stdout, user_errors

if TYPE_CHECKING:
    from initlab.compare.config import TrainConfig
    from initlab.compare.sweep.runner import Backend, Outcome, SweepSummary
    from initlab.compare.sweep.spec import SweepSpec


class BackendName(StrEnum):
    local = "local"
    ray = "ray"


@user_errors
def sweep_command(
    spec_path: Path | None = typer.Argument(None, metavar="SPEC", help="A TOML sweep spec ([base], [grid], ...)."),
    store: Path = typer.Option(Path("runs.db"), "--store", help="The SQLite run store."),
    backend: BackendName = typer.Option(BackendName.local, "--backend", help="local: a process pool; ray: Ray."),
    workers: int | None = typer.Option(None, "--workers", help="Runs at once (default: cores, or cluster CPUs)."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Join this Ray cluster (default: local)."),
    resume: bool = typer.Option(False, "--resume", help="Re-queue runs left running by a process that died."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed points again."),
    status: bool = typer.Option(False, "--status", help="Only print the store's run counts by status."),
    fmt: Format = FormatOption,
) -> None:
    """Run every point of a sweep spec that is not done in the store; --status prints counts by status."""
    from initlab.compare.store import Store

    if status:  # before the sweep's modules (and torch) load: a status query starts in a fraction of a second
        with Store(store, create=False) as db:
            emit(db.counts(), fmt) if fmt is Format.json else _print_counts(db.counts())
        return
    from initlab.compare.sweep.runner import run_sweep
    from initlab.compare.sweep.spec import load_spec

    if spec_path is None:
        raise fail("initlab sweep needs a SPEC file (or --status)", fix="Run: initlab sweep grid.toml --store runs.db")
    spec = load_spec(spec_path)
    pool = _backend(backend, workers, ray_address)
    with stopped_cleanly(f"initlab sweep {spec_path} --store {store}"), SweepProgress(spec, pool.workers) as display:
        summary = run_sweep(spec, store, pool, resume=resume, retry_failed=retry_failed, reporter=display)
    pool.close()
    _report(summary, store, fmt)
    if summary.failed:  # exit 0 only when every point is done (1: runs failed; their errors are in the store)
        raise typer.Exit(1)


@contextlib.contextmanager
def stopped_cleanly(again: str) -> Iterator[None]:
    """SIGTERM stops the driver as Ctrl-C does (it puts its claimed runs back in the queue); either way the
    command says what went back and how to finish, and exits 130 (SIGINT) or 143 (SIGTERM), never 0."""
    from initlab.compare.sweep.runner import Interrupted, Terminated, interrupt

    def on_signal(signum: int, frame: object) -> None:
        interrupt(Terminated if signum == signal.SIGTERM else KeyboardInterrupt)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except Interrupted as stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the message short
        name = "SIGTERM" if stop.why == "Terminated" else "SIGINT"
        stderr.print(f"Interrupted by {name}: {len(stop.released)} runs it had claimed are back in the queue"
                     f"{' (' + ', '.join(stop.released) + ')' if stop.released else ''}; none is left running. "
                     f"Finish the sweep with: {again}", highlight=False)  # fmt: skip
        raise typer.Exit(143 if name == "SIGTERM" else 130) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _backend(name: BackendName, workers: int | None, ray_address: str | None) -> Backend:
    if name is BackendName.ray:
        from initlab.compare.sweep.ray_backend import RayCluster

        return RayCluster(ray_address, workers)
    from initlab.compare.sweep.local import LocalPool

    return LocalPool(workers)


class SweepProgress:
    """An overall progress bar and one status line per worker on a terminal; one line per finished run otherwise."""

    def __init__(self, spec: SweepSpec, workers: int) -> None:
        self.spec, self.workers, self.done = spec, workers, 0
        self.live = sys.stderr.isatty()
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.progress = Progress(*columns, console=stderr, transient=True, disable=not self.live)
        self.total: TaskID | None = None
        self.slots: list[TaskID] = []

    def __enter__(self) -> SweepProgress:
        self.progress.start()
        self.total = self.progress.add_task(f"sweep {self.spec.name}", total=len(self.spec.points))
        self.slots = [self.progress.add_task(f"  worker {i + 1}: idle", total=None) for i in range(self.workers)]
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def started(self, slot: int, config: TrainConfig) -> None:
        self.progress.update(self.slots[slot], description=f"  worker {slot + 1}: {self.spec.label(config)}")

    def finished(self, slot: int, config: TrainConfig, outcome: Outcome) -> None:
        from initlab.compare.sweep.runner import Failure

        self.done += 1
        assert self.total is not None
        self.progress.update(self.total, advance=1)
        self.progress.update(self.slots[slot], description=f"  worker {slot + 1}: idle")
        if isinstance(outcome, Failure):
            line = f"FAILED {config.run_id} {self.spec.label(config)}: {outcome.error.strip().splitlines()[-1]}"
        else:
            acc = outcome.final.test_accuracy if outcome.final else float("nan")
            line = (f"done {config.run_id} {self.spec.label(config)}: test accuracy {acc:.3f}"
                    f"{' (diverged)' if outcome.diverged else ''}, {outcome.seconds:.1f} s")  # fmt: skip
        if self.live:
            self.progress.console.print(line, highlight=False, markup=False)
        else:
            stderr.print(f"[{self.done}] {line}", highlight=False, markup=False)


def _print_counts(counts: dict[str, int]) -> None:
    order = ["queued", "running", "done", "failed"]
    parts = [f"{k}: {counts.get(k, 0)}" for k in order] + [f"{k}: {v}" for k, v in counts.items() if k not in order]
    stdout.print(", ".join(parts) + f" (total {sum(counts.values())})", highlight=False)


def _report(summary: SweepSummary, store: Path, fmt: Format) -> None:
    from initlab.compare.store import Store

    payload = {"store": str(store), **vars(summary)}
    with Store(store) as db:
        payload["counts"] = db.counts()
    if fmt is Format.json:
        emit(payload, fmt)
        return
    stdout.print(f"sweep: {summary.points} points, {summary.done_before} already done, ran {summary.ran} "
                 f"({summary.diverged} diverged), {summary.failed} failed, {summary.taken_by_others} run by another "
                 f"sweep, in {summary.seconds:.1f} s → {store}", highlight=False)  # fmt: skip
    if summary.requeued:
        stdout.print(f"resumed {summary.requeued} runs left running by a process that is gone", highlight=False)
    if summary.stale:
        stdout.print(f"{summary.stale} runs are still marked running by a process that is gone: "
                     "run again with --resume to finish them", highlight=False)  # fmt: skip
    _print_counts(payload["counts"])
