"""Sweeps (issue 7): spec expansion, the crash-safe driver, kill -9 and resume, two drivers, Ray vs local."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import initlab as il
from initlab.compare.store import Store
from initlab.compare.sweep import LocalPool, expand, load_spec, run_sweep
from initlab.compare.sweep.runner import owner_alive

SPEC = """
seeds = [0, 1]
[base]
epochs = {epochs}
depth = 3
width = 32
monitor_every = 5
[grid]
scheme = ["he_normal", "glorot_normal"]
activation = ["relu", "tanh"]
"""
CLI = [sys.executable, "-m", "initlab.cli.main", "sweep"]


def _spec(tmp_path: Path, epochs: int = 2) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(SPEC.format(epochs=epochs))
    return path


def _runs(db: Path) -> dict[str, tuple[str, int, int]]:
    """id → (status, attempts, metrics rows), read with plain sqlite3."""
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT r.id, r.status, r.attempts, (SELECT COUNT(*) FROM metrics m WHERE m.run_id = r.id) "
                           "FROM runs r").fetchall()  # fmt: skip
    return {i: (s, a, m) for i, s, a, m in rows}


def _statuses_so_far(db: Path) -> list[str]:
    """Each run's status in a store another process may still be creating (file made, tables not yet)."""
    try:
        return [s for s, _, _ in _runs(db).values()] if db.exists() else []
    except sqlite3.OperationalError:  # "no such table: runs" between the file's creation and the schema's
        return []


# -- spec ------------------------------------------------------------------------------------------------
def test_expansion_is_deterministic_and_ids_are_config_hashes(tmp_path: Path) -> None:
    a, b = load_spec(_spec(tmp_path)), load_spec(_spec(tmp_path))
    assert len(a.points) == 8 and [p.run_id for p in a.points] == [p.run_id for p in b.points]
    assert a.points[0] == il.TrainConfig(epochs=2, depth=3, width=32, monitor_every=5, scheme="he_normal",
                                         activation="relu", seed=0)  # fmt: skip
    assert [(p.scheme, p.activation, p.seed) for p in a.points[:3]] == [
        ("he_normal", "relu", 0), ("he_normal", "relu", 1), ("he_normal", "tanh", 0)]  # fmt: skip
    assert a.varying == ("activation", "scheme", "seed")


def test_include_adds_points_and_duplicates_collapse() -> None:
    spec = expand({"epochs": 1}, {"depth": [2, 3]}, include=[{"scheme": "zeros"}, {"depth": 2}])
    assert [(p.depth, p.scheme) for p in spec.points] == [(2, "he_normal"), (3, "he_normal"), (5, "zeros")]
    only = expand({"epochs": 1}, include=[{"depth": 2}, {"depth": 3}])
    assert [p.depth for p in only.points] == [2, 3]  # no [grid]: the base alone is not a point


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[grid]\ndepht = [1, 2]\n", "unknown TrainConfig field in [grid] 'depht'. Did you mean 'depth'? Accepted: "),
        (
            "[base]\nsheme = 'zeros'\n",
            "unknown TrainConfig field in [base] 'sheme'. Did you mean 'scheme' or 'seed' or 'schedule'?",
        ),
        (
            "[grid]\ndepth = []\n",
            "[grid] field 'depth' is an empty list, so the grid has no points. Give depth at "
            "least one value, or remove it from [grid].",
        ),
        (
            "[grid]\ndepth = 3\n",
            "[grid] field 'depth' must be a list of values. Received: 3. Write depth = [3] or move it to [base].",
        ),
        (
            "[gird]\ndepth = [3]\n",
            "unknown sweep spec section 'gird'. Did you mean 'grid'? Accepted: base, grid, include, name, seeds.",
        ),
        ("seeds = []\n", "seeds is an empty list. Give at least one seed, e.g. seeds = [0], or remove it."),
        ("[grid\n", "is not valid TOML"),
        ("[grid]\ndepth = ['deep']\n", "config field 'depth' takes an int. Received: 'deep'."),
    ],
)
def test_bad_specs_are_pinned_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(il.InitlabError, match=re.escape(message)):
        load_spec(path)


def test_cli_bad_spec_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[grid]\ndepth = []\n")
    proc = subprocess.run([*CLI, str(path), "--store", str(tmp_path / "s.db")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Error: [grid] field 'depth' is an empty list" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([*CLI, "--store", str(tmp_path / "s.db")], capture_output=True, text=True)
    assert proc.returncode == 2 and "initlab sweep needs a SPEC file (or --status)" in proc.stderr


# -- the driver ------------------------------------------------------------------------------------------
def test_local_sweep_records_failures_and_skips_what_is_done(tmp_path: Path) -> None:
    spec = expand({"epochs": 1, "width": 16}, {"depth": [2]},
                  include=[{"data": "mnist", "data_dir": str(tmp_path / "nowhere")}])  # fmt: skip
    db = tmp_path / "runs.db"
    pool = LocalPool(2)
    first = run_sweep(spec, db, pool)
    second = run_sweep(spec, db, pool)
    pool.close()
    assert (first.ran, first.failed, first.done_before) == (1, 1, 0)
    assert (second.ran, second.failed, second.done_before) == (0, 0, 1)  # a failed run is not retried unasked
    with Store(db) as store:
        failed = store.runs("failed")
        assert len(failed) == 1 and "Traceback" in failed[0]["error"] and "mnist" in failed[0]["error"]
        assert store.counts() == {"done": 1, "failed": 1}


def test_resume_requeues_only_runs_of_dead_owners(tmp_path: Path) -> None:
    spec = expand({"epochs": 1, "depth": 2, "width": 16}, {"seed": [0, 1]})
    db = tmp_path / "runs.db"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = os.uname().nodename
    with Store(db) as store:
        for point, worker in zip(spec.points, [f"{host}:{dead.stdout.strip()}", f"{host}:{os.getpid()}"], strict=True):
            store.add(point.run_id, point.to_dict())
            assert store.claim(point.run_id, worker)
    assert not owner_alive(f"{host}:{dead.stdout.strip()}") and owner_alive(f"{host}:{os.getpid()}")
    pool = LocalPool(1)
    summary = run_sweep(spec, db, pool, resume=True)
    pool.close()
    assert (summary.requeued, summary.ran) == (1, 1)  # the live owner's run is left to it
    assert sorted(s for s, _, _ in _runs(db).values()) == ["done", "running"]


@pytest.mark.slow
def test_kill_9_then_resume_runs_every_point_exactly_once(tmp_path: Path) -> None:
    spec, db = _spec(tmp_path, epochs=12), tmp_path / "runs.db"
    proc = subprocess.Popen([*CLI, str(spec), "--store", str(db), "--workers", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and _statuses_so_far(db).count("done") < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must notice and leave on their own
    proc.wait()
    killed = _runs(db)
    done = [i for i, (s, _, _) in killed.items() if s == "done"]
    assert 2 <= len(done) < 8, killed
    assert all(m == 0 for s, _, m in killed.values() if s != "done")  # no partial metrics rows
    assert all(m == 12 for s, _, m in killed.values() if s == "done")
    resumed = subprocess.run([*CLI, str(spec), "--store", str(db), "--workers", "2", "--resume", "--format", "json"],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    after = _runs(db)
    assert sorted(after) == sorted(p.run_id for p in load_spec(spec).points)  # no run lost, none added
    assert all(s == "done" and m == 12 for s, _, m in after.values())
    assert summary["done_before"] == len(done) and summary["ran"] == 8 - len(done)
    for run_id in done:  # finished before the kill: never run again
        assert after[run_id][1] == 1
    interrupted = [i for i, (s, _, _) in killed.items() if s == "running"]
    assert summary["requeued"] == len(interrupted) <= 2
    assert all(after[i][1] == 2 for i in interrupted)  # claimed once before the kill, once on resume


@pytest.mark.slow
def test_two_concurrent_sweeps_run_every_point_once(tmp_path: Path) -> None:
    spec, db = _spec(tmp_path, epochs=6), tmp_path / "runs.db"
    Store(db).close()  # both drivers open an existing store
    procs = [subprocess.Popen([*CLI, str(spec), "--store", str(db), "--workers", "1", "--format", "json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outputs]
    summaries = [json.loads(out) for out, _ in outputs]
    assert sum(s["ran"] for s in summaries) == 8
    runs = _runs(db)
    assert len(runs) == 8 and all(r == ("done", 1, 6) for r in runs.values())  # one claim per point


def test_status_prints_counts(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with Store(db) as store:
        store.add("a", {"depth": 1})
    proc = subprocess.run([*CLI, "--status", "--store", str(db), "--format", "json"], capture_output=True, text=True)
    assert proc.returncode == 0 and json.loads(proc.stdout) == {"queued": 1}
    proc = subprocess.run([*CLI, "--status", "--store", str(db)], capture_output=True, text=True)
    assert "queued: 1, running: 0, done: 0, failed: 0 (total 1)" in proc.stdout


def test_status_of_a_missing_store_is_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    # regression (issue 35, asked in an earlier round too): --status created an empty typo.db and printed total 0
    db = tmp_path / "typo.db"
    proc = subprocess.run([*CLI, "--status", "--store", str(db)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    message = " ".join(proc.stderr.split())
    assert re.search(r"^Error: run store .*typo\.db does not exist\. Create one with initlab run, initlab sweep SPEC "
                     r"or initlab demo \(each writes runs\.db\), or pass the path of the \.db file one of them wrote\.",
                     message), message  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# -- Ray -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ray_backend_matches_the_local_pool(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from initlab.compare.sweep.ray_backend import RayCluster

    spec = load_spec(_spec(tmp_path))
    pool = LocalPool(2)
    run_sweep(spec, tmp_path / "local.db", pool)
    pool.close()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_sweep(spec, tmp_path / "ray.db", RayCluster())
    finally:
        ray.shutdown()
    assert summary.ran == 8
    with Store(tmp_path / "local.db") as local, Store(tmp_path / "ray.db") as remote:
        for point in spec.points:
            ours, theirs = ([{k: v for k, v in m.items() if k != "seconds"} for m in db.metrics(point.run_id)]
                            for db in (local, remote))  # fmt: skip
            assert len(ours) == 2 and ours == theirs  # identical per seed, not merely close


def test_an_interrupted_driver_puts_its_runs_back_in_the_queue(tmp_path: Path) -> None:
    class Interrupt:
        def started(self, slot: int, config: il.TrainConfig) -> None:
            pass

        def finished(self, slot: int, config: il.TrainConfig, outcome: object) -> None:
            raise KeyboardInterrupt  # Ctrl-C after the first result landed

    spec = expand({"epochs": 1, "depth": 2, "width": 16}, {"seed": [0, 1, 2, 3]})
    db = tmp_path / "runs.db"
    pool = LocalPool(2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, db, pool, reporter=Interrupt())
    statuses = sorted(s for s, _, _ in _runs(db).values())
    assert statuses == ["done", "queued", "queued", "queued"]  # the other run in flight was released, not lost
    pool = LocalPool(2)
    assert run_sweep(spec, db, pool).ran == 3  # no --resume needed: nothing was left 'running'
    pool.close()


def test_every_point_is_checked_before_the_first_run(tmp_path: Path) -> None:
    # issue 23: `[[include]] scheme = "nope"` used to fail as a run (exit 0); now the sweep refuses before any
    # run starts, names the point, and leaves an existing store exactly as it was.
    path = tmp_path / "grid.toml"
    path.write_text(SPEC.format(epochs=1) + '[[include]]\nscheme = "nope"\n')
    db = tmp_path / "runs.db"
    with Store(db) as store:  # an existing store with its own rows
        store.add_many([("x1", {"depth": 1})])
    before = _runs(db)
    proc = subprocess.run([*CLI, str(path), "--store", str(db)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2, proc.stderr
    assert " ".join(proc.stderr.split()) == (
        "Error: point 9 of 10 (activation=relu scheme=nope seed=0): unknown "
        f"initializer 'nope'. See `initlab schemes` for all {len(il.schemes())} names."
    )
    assert "Traceback" not in proc.stderr and _runs(db) == before


def test_a_bad_base_value_is_exit_2_and_a_failed_point_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(SPEC.format(epochs=1).replace("depth = 3", "depth = -4"))
    proc = subprocess.run([*CLI, str(path), "--store", str(tmp_path / "a.db")], capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert proc.returncode == 2 and "config field 'depth' is out of range" in proc.stderr
    # a point that fails while it runs (its data files are missing) is recorded, and the exit code says so
    path.write_text(f'[base]\nepochs = 1\ndepth = 2\nwidth = 8\ndata = "mnist"\ndata_dir = "{tmp_path / "none"}"\n')
    proc = subprocess.run([*CLI, str(path), "--store", str(tmp_path / "b.db"), "--workers", "1"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "1 failed" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_requeues_what_the_sweep_claimed_and_says_how_to_finish(
    tmp_path: Path, sig: signal.Signals, code: int, name: str
) -> None:
    # issue 23: SIGTERM left claimed runs "running" (with a leaked-semaphore warning), SIGINT exited silently
    spec, db = _spec(tmp_path, epochs=20), tmp_path / "runs.db"
    with subprocess.Popen([*CLI, str(spec), "--store", str(db), "--workers", "2"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "running" not in _statuses_so_far(db):
            time.sleep(0.1)  # a bounded poll for the state to reach, not a wait that makes a timing pass
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    text = " ".join(err.split())
    assert proc.returncode == code, err
    assert f"Interrupted by {name}: " in text and "none is left running" in text, err
    assert f"Finish the sweep with: initlab sweep {spec} --store {db}" in text
    assert "leaked semaphore" not in err and "Traceback" not in err
    assert "running" not in {s for s, _, _ in _runs(db).values()}
    finished = subprocess.run([*CLI, str(spec), "--store", str(db), "--workers", "2"], capture_output=True, text=True,
                              check=False)  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert {s for s, _, _ in _runs(db).values()} == {"done"} and len(_runs(db)) == 8
