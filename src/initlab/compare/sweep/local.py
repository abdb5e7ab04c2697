"""The local backend: a spawn process pool, one run per worker at a time, threads split so cores are not
oversubscribed. Workers exit on their own when the driver dies (even by ``kill -9``)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

import torch

from initlab._errors import fail
from initlab.compare.sweep.runner import Outcome, execute
from initlab.compare.train import TrainConfig

__all__ = ["LocalPool"]


def _init_worker(threads: int, driver: int) -> None:
    torch.set_num_threads(threads)
    threading.Thread(target=_exit_with, args=(driver,), daemon=True, name="initlab-orphan-watch").start()


def _exit_with(driver: int) -> None:
    """An orphaned worker would train on for nobody: leave as soon as the driver is gone."""
    while os.getppid() == driver:
        time.sleep(0.5)
    os._exit(1)


class LocalPool:
    """``workers`` processes (default: one per core), each with ``threads`` torch threads (default: ``cores //
    workers``, so the workers together do not oversubscribe the cores).

    >>> LocalPool(0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    initlab._errors.InitlabError: workers must be at least 1. Received: 0. Pass --workers 1 or more ...
    """

    def __init__(self, workers: int | None = None, threads: int | None = None) -> None:
        cores = os.cpu_count() or 1
        self.workers = cores if workers is None else workers
        if self.workers < 1:
            raise fail("workers must be at least 1", received=self.workers,
                       fix="Pass --workers 1 or more (default: one per core).")  # fmt: skip
        self.threads = threads if threads is not None else max(1, cores // self.workers)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker, initargs=(self.threads, os.getpid()))  # fmt: skip

    def submit(self, config: TrainConfig) -> Future[Outcome]:
        return self._pool.submit(execute, config.to_dict())

    def close(self, abort: bool = False) -> None:
        """Shut the pool down; with ``abort``, also stop the runs in flight (the driver released them in the
        store, so nobody would read their results)."""
        # Only this pool's processes (there is no public handle before Python 3.14's terminate_workers). They are
        # stopped first and the pool then shut down in order: closing the pool's pipes first made workers still
        # starting up print tracebacks ("Ran out of input") and left semaphores to the resource tracker.
        processes = list((getattr(self._pool, "_processes", None) or {}).values()) if abort else []
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
