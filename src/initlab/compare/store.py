"""The run store: SQLite (WAL mode), written run by run in transactions, read by reports and sweeps.

Tables: ``runs`` (id = hash of the resolved config, config JSON, status, timings, error), ``metrics`` (per
epoch), ``layer_stats`` (the monitor's tidy rows) and ``findings``. A run's results land in one transaction,
so a reader never sees half a run. The schema is versioned; a store of a newer or unknown schema is refused.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from initlab._errors import fail

if TYPE_CHECKING:  # a hint only: opening a store must not import torch (issue 35: `sweep --status` took 2.2 s)
    from initlab.compare.train import RunResult

__all__ = ["SCHEMA_VERSION", "Store"]

SCHEMA_VERSION = 2  # 2: runs.attempts (how many times a run was claimed)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, config TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'queued',
    created REAL NOT NULL, started REAL, finished REAL, seconds REAL, steps INTEGER,
    diverged INTEGER, error TEXT, worker TEXT, attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id), epoch INTEGER NOT NULL, train_loss REAL, train_accuracy REAL,
    test_loss REAL, test_accuracy REAL, seconds REAL, PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS layer_stats (
    run_id TEXT NOT NULL REFERENCES runs(id), step INTEGER NOT NULL, layer TEXT NOT NULL, stat TEXT NOT NULL,
    value REAL
);
CREATE INDEX IF NOT EXISTS layer_stats_run ON layer_stats(run_id);
CREATE TABLE IF NOT EXISTS findings (
    run_id TEXT NOT NULL REFERENCES runs(id), step INTEGER, layer TEXT, kind TEXT, message TEXT,
    evidence TEXT, remedies TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    run_id TEXT NOT NULL REFERENCES runs(id), position INTEGER NOT NULL, layer TEXT, kind TEXT,
    predicted_var REAL, measured_var REAL, predicted_grad REAL, measured_grad REAL
);
CREATE TABLE IF NOT EXISTS histograms (
    run_id TEXT NOT NULL REFERENCES runs(id), phase TEXT NOT NULL, layer TEXT NOT NULL, kind TEXT NOT NULL,
    edges TEXT NOT NULL, counts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measures (
    run_id TEXT NOT NULL REFERENCES runs(id), name TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS comparisons (
    claim TEXT PRIMARY KEY, title TEXT NOT NULL, verdict TEXT NOT NULL, summary TEXT NOT NULL,
    evidence TEXT NOT NULL, run_ids TEXT NOT NULL
);
"""
_RUN_TABLES = ("metrics", "layer_stats", "findings", "audit", "histograms", "measures")


class Store:
    """A run store in one SQLite file. Safe for one writer and many readers at once (WAL).

    >>> import tempfile, os
    >>> store = Store(os.path.join(tempfile.mkdtemp(), "runs.db"))
    >>> store.counts()
    {}
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():  # a query must not leave an empty store behind (issue 35)
            raise fail(f"run store {self.path} does not exist",
                       fix="Create one with initlab run, initlab sweep SPEC or initlab demo (each writes runs.db), "
                           "or pass the path of the .db file one of them wrote.")  # fmt: skip
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._check_schema()
        except sqlite3.DatabaseError as error:
            message = f"{self.path} is not an initlab run store ({error})"
            raise fail(message, fix="Pass a new file name, or the .db file a previous run or sweep wrote.") from None

    def _check_schema(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise fail(f"{self.path} is an SQLite file but not an initlab run store (no meta table)",
                       fix="Pass a new file name for the store.")  # fmt: skip
        with self._transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] == "1":  # version 1 lacked runs.attempts; upgrade in place
                db.execute("ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
                db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise fail(f"{self.path} has run-store schema version {row[0]}; this initlab reads version "
                           f"{SCHEMA_VERSION}", fix="Upgrade initlab, or write to a new store file.")  # fmt: skip

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------------
    def add(self, run_id: str, config: dict[str, Any]) -> bool:
        """Queue a run; False if it is already in the store (any status)."""
        return self.add_many([(run_id, config)]) == 1

    def add_many(self, runs: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Queue runs in one transaction (those already in the store keep their status); returns how many were new."""
        now = time.time()
        with self._transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO runs (id, config, status, created) VALUES (?, ?, 'queued', ?)",
                           [(i, json.dumps(c, sort_keys=True), now + k * 1e-6)  # keeps the given order
                            for k, (i, c) in enumerate(runs)])  # fmt: skip
            return db.total_changes - before

    def claim(self, run_id: str, worker: str = "") -> bool:
        """Atomically move a queued run to running, owned by ``worker``; False if another process got it first."""
        with self._transaction() as db:
            cur = db.execute("UPDATE runs SET status='running', started=?, worker=?, attempts=attempts+1 "
                             "WHERE id=? AND status='queued'", (time.time(), worker, run_id))  # fmt: skip
            return cur.rowcount == 1

    def release(self, worker: str) -> list[str]:
        """Put every run ``worker`` claimed and did not finish back in the queue (an interrupted sweep); returns
        their ids. By owner, not by a list the driver keeps: a signal between a claim and the driver's bookkeeping
        must not leave a run 'running'."""
        with self._transaction() as db:
            held = [i for (i,) in db.execute("SELECT id FROM runs WHERE status='running' AND worker=?", (worker,))]
            db.execute("UPDATE runs SET status='queued', started=NULL, worker=NULL WHERE status='running' AND "
                       "worker=?", (worker,))  # fmt: skip
            return held

    def write(self, result: RunResult) -> None:
        """Store a finished run — metrics, layer statistics, findings and status — in one transaction."""
        with self._transaction() as db:
            raw: Any = result.config  # a TrainConfig, or a Keras fit's mapping (initlab.keras.Monitor)
            config = raw.to_dict() if hasattr(raw, "to_dict") else dict(raw)
            db.execute("INSERT OR IGNORE INTO runs (id, config, status, created) VALUES (?, ?, 'queued', ?)",
                       (result.run_id, json.dumps(config, sort_keys=True), time.time()))  # fmt: skip
            for table in _RUN_TABLES:
                db.execute(f"DELETE FROM {table} WHERE run_id=?", (result.run_id,))
            db.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(result.run_id, e.epoch, e.train_loss, e.train_accuracy, e.test_loss, e.test_accuracy,
                             e.seconds) for e in result.epochs])  # fmt: skip
            stats = [(result.run_id, r["step"], r["layer"], r["stat"], r["value"] if isinstance(r["value"], float)
                      else None) for r in result.layer_stats]  # fmt: skip
            db.executemany("INSERT INTO layer_stats VALUES (?, ?, ?, ?, ?)", stats)
            db.executemany("INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(result.run_id, f.step, f.layer, f.kind, f.message, json.dumps(f.evidence),
                             json.dumps(f.remedies)) for f in result.findings])  # fmt: skip
            db.executemany("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [(result.run_id, i, r["name"], r["kind"], r["predicted_var"], r["measured_var"],
                             r["predicted_grad"], r["measured_grad"]) for i, r in enumerate(result.audit)])  # fmt: skip
            db.executemany("INSERT INTO histograms VALUES (?, ?, ?, ?, ?, ?)",
                           [(result.run_id, h["phase"], h["layer"], h["kind"], json.dumps(h["edges"]),
                             json.dumps(h["counts"])) for h in result.histograms])  # fmt: skip
            db.executemany("INSERT INTO measures VALUES (?, ?, ?)",
                           [(result.run_id, k, v) for k, v in result.measures.items()])  # fmt: skip
            db.execute("UPDATE runs SET status='done', finished=?, seconds=?, steps=?, diverged=?, error=NULL, "
                       "attempts=MAX(attempts, 1) WHERE id=?",
                       (time.time(), result.seconds, result.steps, int(result.diverged), result.run_id))  # fmt: skip

    def compare(self, claim: str, title: str, verdict: str, summary: str, evidence: dict[str, Any],
                run_ids: list[str]) -> None:  # fmt: skip
        """Record a measured comparison between runs (a demo claim), replacing an earlier one of that name."""
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO comparisons VALUES (?, ?, ?, ?, ?, ?)",
                       (claim, title, verdict, summary, json.dumps(evidence), json.dumps(run_ids)))  # fmt: skip

    def fail_run(self, run_id: str, error: str) -> None:
        """Record a run that raised (with its traceback); the sweep goes on."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET status='failed', finished=?, error=? WHERE id=?", (time.time(), error, run_id))

    def requeue_running(self, is_alive: Callable[[str], bool] = lambda worker: False) -> int:
        """Put runs left 'running' by owners that are no longer alive back in the queue; returns how many.

        ``is_alive(worker)`` tells whether the owner recorded by :meth:`claim` still runs (default: none does).
        """
        with self._transaction() as db:
            stale = [(i,) for i, w in db.execute("SELECT id, worker FROM runs WHERE status='running'").fetchall()
                     if not is_alive(w or "")]  # fmt: skip
            db.executemany("UPDATE runs SET status='queued', started=NULL, worker=NULL WHERE id=?", stale)
            return len(stale)

    def retry_failed(self) -> int:
        """Put failed runs back in the queue; returns how many."""
        with self._transaction() as db:
            return db.execute("UPDATE runs SET status='queued', error=NULL WHERE status='failed'").rowcount

    def status(self, run_ids: Iterable[str]) -> dict[str, str]:
        """The status of each of ``run_ids`` that is in the store."""
        ids = list(run_ids)
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT id, status FROM runs WHERE id IN ({marks})", chunk).fetchall())
        return found

    # -- reading ---------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Number of runs by status."""
        return dict(self._db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())

    def runs(self, status: str | None = None) -> list[dict[str, Any]]:
        """Runs (optionally of one status) with their config decoded."""
        query, args = "SELECT * FROM runs", tuple[str, ...]()
        if status is not None:
            query, args = query + " WHERE status=?", (status,)
        rows = self._dicts(query + " ORDER BY created, id", args)
        for row in rows:
            row["config"] = json.loads(row["config"])
        return rows

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        return self._dicts("SELECT * FROM metrics WHERE run_id=? ORDER BY epoch", (run_id,))

    def findings(self, run_id: str) -> list[dict[str, Any]]:
        cur = self._db.execute("SELECT step, layer, kind, message, evidence, remedies FROM findings WHERE run_id=?",
                               (run_id,))  # fmt: skip
        return [{"step": s, "layer": la, "kind": k, "message": m, "evidence": json.loads(e),
                 "remedies": json.loads(r)} for s, la, k, m, e, r in cur.fetchall()]  # fmt: skip

    def _dicts(self, query: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        cur = self._db.execute(query, args)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def audit(self, run_id: str) -> list[dict[str, Any]]:
        """Predicted vs measured per-layer variance at initialization, in the model's order."""
        return self._dicts("SELECT layer, kind, predicted_var, measured_var, predicted_grad, measured_grad FROM audit "
                           "WHERE run_id=? ORDER BY position", (run_id,))  # fmt: skip

    def histograms(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._dicts("SELECT phase, layer, kind, edges, counts FROM histograms WHERE run_id=? ORDER BY rowid",
                           (run_id,))  # fmt: skip
        for row in rows:
            row["edges"], row["counts"] = json.loads(row["edges"]), json.loads(row["counts"])
        return rows

    def measures(self, run_id: str) -> dict[str, float]:
        return dict(self._db.execute("SELECT name, value FROM measures WHERE run_id=?", (run_id,)).fetchall())

    def comparisons(self) -> list[dict[str, Any]]:
        rows = self._dicts("SELECT * FROM comparisons ORDER BY rowid", ())  # in the order they were judged
        for row in rows:
            row["evidence"], row["run_ids"] = json.loads(row["evidence"]), json.loads(row["run_ids"])
        return rows

    def layer_stats(self, run_id: str, stat: str | None = None) -> list[tuple[int, str, str, float | None]]:
        query = "SELECT step, layer, stat, value FROM layer_stats WHERE run_id=?"
        args: tuple[Any, ...] = (run_id,)
        if stat is not None:
            query, args = query + " AND stat=?", (run_id, stat)
        return list(self._db.execute(query + " ORDER BY step", args).fetchall())
