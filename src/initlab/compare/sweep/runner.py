"""The sweep driver, shared by every backend: claim runs through the store, hand them out, write results back.

Workers only train; they never touch the SQLite file (on a Ray cluster they cannot see it). The driver keeps at
most ``backend.workers`` runs in flight, claims each one (an atomic queued → running change in the store) just
before handing it out, and writes each result in one transaction when it comes back. So two drivers on one store
never run the same point, a killed driver loses at most the runs it had in flight (left "running", re-queued by
``resume``), and a result is either wholly in the store or not at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import socket
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any, Protocol

from initlab._errors import InitlabError
from initlab.compare.data import Dataset, load
from initlab.compare.store import Store
from initlab.compare.sweep.spec import SweepSpec
from initlab.compare.train import RunResult, TrainConfig, check, train

__all__ = [
    "Backend",
    "Failure",
    "Interrupted",
    "Outcome",
    "SweepSummary",
    "Terminated",
    "execute",
    "owner",
    "owner_alive",
    "run_sweep",
]


@dataclasses.dataclass(frozen=True)
class Failure:
    """A run that raised: its id and the worker's traceback."""

    run_id: str
    error: str


Outcome = RunResult | Failure


@functools.lru_cache(maxsize=4)
def _data(name: str, data_dir: str) -> Dataset:
    return load(name, seed=0, data_dir=data_dir or None)  # one load per worker process, not one per run


def execute(config: dict[str, Any]) -> Outcome:
    """Train one point in a worker. A run that raises becomes a :class:`Failure`; a diverged run is a result."""
    cfg = TrainConfig.from_dict(config)
    try:
        return train(cfg, data=_data(cfg.data, cfg.data_dir))
    except Exception:  # recorded with its traceback; the sweep goes on
        return Failure(cfg.run_id, traceback.format_exc())


class Backend(Protocol):
    """Where runs execute: ``workers`` at a time, each submitted run's outcome as a Future."""

    workers: int

    def submit(self, config: TrainConfig) -> Future[Outcome]: ...

    def close(self, abort: bool = False) -> None: ...


class Reporter(Protocol):
    """What a progress display is told (the CLI shows it with rich)."""

    def started(self, slot: int, config: TrainConfig) -> None: ...

    def finished(self, slot: int, config: TrainConfig, outcome: Outcome) -> None: ...


@dataclasses.dataclass
class SweepSummary:
    """What one sweep invocation did."""

    points: int
    done_before: int  # already done in the store: skipped
    ran: int = 0
    failed: int = 0
    diverged: int = 0
    requeued: int = 0  # runs left 'running' by a dead process, put back in the queue by resume
    taken_by_others: int = 0  # claimed by another sweep process on the same store
    stale: int = 0  # runs still 'running' under an owner that is gone (resume re-queues them)
    seconds: float = 0.0


def owner() -> str:
    """This process, as recorded on the runs it claims: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(worker: str) -> bool:
    """Whether the process that claimed a run still runs. Owners on other hosts cannot be checked: assumed alive."""
    host, _, pid = worker.rpartition(":")
    if not host:
        return False  # no owner recorded
    if host != socket.gethostname():
        return True  # another machine's process: cannot be checked here
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_sweep(spec: SweepSpec, store_path: str | Path, backend: Backend, *, resume: bool = False,
              retry_failed: bool = False, reporter: Reporter | None = None) -> SweepSummary:  # fmt: skip
    """Run every point of ``spec`` that is not done in the store, on ``backend``; see the module docs. Every point
    is checked first (:func:`initlab.compare.train.check`): a bad point fails the sweep before any run starts."""
    started = time.perf_counter()
    for i, point in enumerate(spec.points, 1):
        try:
            check(point)
        except InitlabError as error:
            raise InitlabError(f"point {i} of {len(spec.points)} ({spec.label(point)}): {error}") from None
    with Store(store_path) as store:
        requeued = store.requeue_running(owner_alive) if resume else 0
        if retry_failed:
            store.retry_failed()
        store.add_many((p.run_id, p.to_dict()) for p in spec.points)
        status = store.status(p.run_id for p in spec.points)
        summary = SweepSummary(len(spec.points), sum(s == "done" for s in status.values()), requeued=requeued)
        queue = iter([p for p in spec.points if status[p.run_id] == "queued"])
        _drive(store, queue, backend, summary, reporter)
        summary.stale = sum(not owner_alive(r["worker"] or "") for r in store.runs("running"))
    summary.seconds = time.perf_counter() - started
    return summary


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the driver by the command line's handler so that it stops like Ctrl-C does."""


class Interrupted(KeyboardInterrupt):
    """The driver was stopped (Ctrl-C or SIGTERM); ``released``: the runs it held, put back in the queue."""

    def __init__(self, released: list[str], why: str) -> None:
        super().__init__(f"{why}: {len(released)} claimed runs put back in the queue")
        self.released, self.why = released, why


def _drive(store: Store, queue: Iterator[TrainConfig], backend: Backend, summary: SweepSummary,
           reporter: Reporter | None) -> None:  # fmt: skip
    """Keep ``backend.workers`` claimed runs in flight until the queue is empty; write each result as it lands.
    If the driver is interrupted, the runs it holds go back to the queue."""
    me = owner()
    in_flight: dict[Future[Outcome], tuple[int, TrainConfig]] = {}
    try:
        while True:
            for slot in sorted(set(range(backend.workers)) - {s for s, _ in in_flight.values()}):
                with _one_step():  # a claim and its hand-over: an interrupt waits for the step's end
                    config = _claim_next(store, queue, me, summary)
                    if config is None:
                        break
                    in_flight[backend.submit(config)] = (slot, config)
                if reporter is not None:
                    reporter.started(slot, config)
            if not in_flight:
                return
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                slot, config = in_flight.pop(future)
                outcome = _outcome(future, config)
                _record(store, outcome, summary)
                if reporter is not None:
                    reporter.finished(slot, config, outcome)
    except BaseException as stop:
        held = store.release(me)
        backend.close(abort=True)
        if isinstance(stop, KeyboardInterrupt):  # Ctrl-C, or SIGTERM turned into Terminated by the command line
            raise Interrupted(held, type(stop).__name__) from stop
        raise


class _Step:
    """Whether the driver is inside a claim-and-hand-over step, and an interrupt that arrived during it."""

    active = False
    deferred: type[BaseException] | None = None


_STEP = _Step()


def interrupt(kind: type[BaseException]) -> None:
    """Raise ``kind`` in the driver now, or as soon as the claim-and-hand-over step in progress ends (what the
    command line's SIGINT and SIGTERM handlers call). Interrupting ``submit`` while it starts a worker process
    left that worker reading a half-written start-up pipe ("Ran out of input") and leaked its semaphores.
    (Blocking the signals instead is inherited by the workers the step starts, which then ignore terminate().)"""
    if _STEP.active:
        _STEP.deferred = kind
        return
    raise kind


@contextlib.contextmanager
def _one_step() -> Iterator[None]:
    _STEP.active = True
    try:
        yield
    finally:
        _STEP.active = False
        kind, _STEP.deferred = _STEP.deferred, None
        if kind is not None:
            raise kind


def _claim_next(store: Store, queue: Iterator[TrainConfig], me: str, summary: SweepSummary) -> TrainConfig | None:
    for config in queue:
        if store.claim(config.run_id, me):
            return config
        summary.taken_by_others += 1
    return None


def _outcome(future: Future[Outcome], config: TrainConfig) -> Outcome:
    try:
        return future.result()
    except Exception as error:  # the worker itself died (killed, out of memory) or the cluster lost the task
        return Failure(config.run_id, f"the worker running this point failed: {error!r}")


def _record(store: Store, outcome: Outcome, summary: SweepSummary) -> None:
    if isinstance(outcome, Failure):
        store.fail_run(outcome.run_id, outcome.error)
        summary.failed += 1
        return
    store.write(outcome)
    summary.ran += 1
    summary.diverged += int(outcome.diverged)
