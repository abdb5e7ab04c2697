"""Training loop and run store (the foundation of issue 6)."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import pytest

import initlab as il
from initlab.compare.store import Store
from initlab.compare.train import TrainConfig, train


@pytest.mark.slow
def test_digits_relu_he_reaches_95_percent() -> None:
    result = train(TrainConfig(depth=5, width=128, activation="relu", scheme="he_normal", optimizer="sgd",
                               lr=0.1, epochs=20))  # fmt: skip
    assert max(e.test_accuracy for e in result.epochs) >= 0.95
    assert not result.diverged and result.findings == []


def test_same_seed_same_curve() -> None:
    config = TrainConfig(depth=3, width=32, epochs=2, dropout=0.1)
    a, b = train(config), train(config)
    assert [e.train_loss for e in a.epochs] == [e.train_loss for e in b.epochs]
    assert [e.test_accuracy for e in a.epochs] == [e.test_accuracy for e in b.epochs]


def test_divergence_is_a_result() -> None:
    result = train(TrainConfig(depth=4, width=32, lr=1e4, epochs=3))
    assert result.diverged
    assert result.findings[0].kind == "nan"


def test_remedies_run() -> None:
    for config in (TrainConfig(depth=3, width=32, epochs=1, norm="batch", clip_grad_norm=1.0, optimizer="adam",
                               lr=1e-3, max_norm=2.0, schedule="cosine"),
                   TrainConfig(depth=3, width=32, epochs=1, residual=True, residual_init="zero_last",
                               weight_norm=True, clip_weight=0.5, clip_grad_value=0.1, optimizer="rmsprop",
                               lr=1e-3),
                   TrainConfig(model="rnn", cell="lstm", depth=1, width=32, epochs=1, optimizer="adam",
                               lr=1e-2)):  # fmt: skip
        result = train(config)
        assert result.epochs and not result.diverged


def test_bad_config_errors() -> None:
    with pytest.raises(il.InitlabError, match=re.escape("unknown optimizer 'adma'. Did you mean 'adam'")):
        TrainConfig(optimizer="adma")
    with pytest.raises(il.InitlabError, match=re.escape("unknown config field 'lrr'. Did you mean 'lr'?")):
        TrainConfig.from_dict({"lrr": 0.1})


def test_store_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(depth=3, width=32, epochs=2, monitor_every=5)
    result = train(config)
    with Store(tmp_path / "runs.db") as store:
        assert store.add(result.run_id, config.to_dict())
        assert not store.add(result.run_id, config.to_dict())
        assert store.claim(result.run_id) and not store.claim(result.run_id)
        store.write(result)
        assert store.counts() == {"done": 1}
        assert [m["epoch"] for m in store.metrics(result.run_id)] == [1, 2]
        assert store.runs()[0]["config"] == config.to_dict()
        stats = store.layer_stats(result.run_id, "grad_norm")
        assert stats and all(s[2] == "grad_norm" for s in stats)


def test_store_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.commit()
    with pytest.raises(il.InitlabError, match="is an SQLite file but not an initlab run store"):
        Store(other)
    newer = tmp_path / "newer.db"
    Store(newer).close()
    with sqlite3.connect(newer) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(il.InitlabError, match=re.escape("has run-store schema version 99; this initlab reads "
                                                        "version 2. Upgrade initlab")):  # fmt: skip
        Store(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(il.InitlabError, match="is not an initlab run store"):
        Store(junk)


def test_reader_never_sees_half_a_run(tmp_path: Path) -> None:
    result = train(TrainConfig(depth=3, width=32, epochs=3, monitor_every=1))
    path = tmp_path / "runs.db"
    Store(path).close()
    seen: list[tuple[int, int]] = []
    done = threading.Event()

    def read() -> None:
        with Store(path) as reader:
            while not done.is_set():
                runs = reader.runs("done")
                if runs:
                    seen.append((len(reader.metrics(runs[0]["id"])), len(reader.layer_stats(runs[0]["id"]))))

    thread = threading.Thread(target=read)
    thread.start()
    with Store(path) as writer:
        writer.write(result)
    done.set()
    thread.join()
    assert all(s == (3, len(result.layer_stats)) for s in seen)


def test_a_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    old = tmp_path / "v1.db"
    with sqlite3.connect(old) as db:  # the version-1 layout: runs without the attempts column
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, config TEXT NOT NULL, status TEXT NOT NULL DEFAULT "
                   "'queued', created REAL NOT NULL, started REAL, finished REAL, seconds REAL, steps INTEGER, "
                   "diverged INTEGER, error TEXT, worker TEXT)")  # fmt: skip
        db.execute("INSERT INTO runs (id, config, status, created) VALUES ('a', '{}', 'queued', 0)")
    with Store(old) as store:
        assert store.claim("a", "me")
        assert store.runs()[0]["attempts"] == 1
    with sqlite3.connect(old) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)


def test_snapshots_land_in_the_store(tmp_path: Path) -> None:
    result = train(TrainConfig(depth=3, width=16, epochs=1, activation="tanh", snapshots=True))
    with Store(tmp_path / "s.db") as store:
        store.write(result)
        audit, histograms = store.audit(result.run_id), store.histograms(result.run_id)
        assert [r["layer"] for r in audit] == [r["name"] for r in result.audit] and len(audit) >= 6
        assert all(r["measured_var"] > 0 for r in audit if r["kind"] == "Linear")
        phases = {(h["phase"], h["kind"]) for h in histograms}
        assert phases == {("init", "activation"), ("init", "gradient"), ("end", "activation"), ("end", "gradient")}
        for h in histograms:  # every example of the 256-row probe batch lands in a bin
            assert len(h["edges"]) == len(h["counts"]) + 1 and sum(h["counts"]) == 256 * 16
        assert store.measures(result.run_id) == {"distinct_units": 1.0, "init_mismatches": 0.0}
    assert train(TrainConfig(depth=3, width=16, epochs=1)).histograms == []  # off by default
