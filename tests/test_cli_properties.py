"""Property-based checks of the command line's edge (issue 23), with hypothesis: each command is driven with
generated invalid values for its options and for TrainConfig fields given on the command line, in a run's TOML
file and in a sweep spec. Every case must exit 2 with stderr starting `Error:`, show no traceback, write no file
where it runs, and leave the run store it was pointed at (every command that takes one is) exactly as it was
(same rows, integrity check ok).

The values generated are of each option's type (numbers that break a rule: out of range, NaN, infinite); values
of another type (`--depth x`) are the option parser's usage errors, which also exit 2 without a traceback but are
formatted by typer/click (tests/test_cli.py checks one).
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import string
import tempfile
from pathlib import Path

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from initlab.cli.main import app
from initlab.compare.config import _RANGES, TrainConfig
from initlab.compare.store import Store

runner = CliRunner()
FIELDS = {f.name: f for f in TrainConfig.__dataclass_fields__.values()}
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _bad_numbers(field: str) -> st.SearchStrategy[float | int]:
    """Values of the field's type that its range refuses."""
    rule, kind = _RANGES[field], type(FIELDS[field].default)
    below = st.integers(max_value=int(rule.low) - 1) if kind is int else st.floats(max_value=rule.low, exclude_max=True)
    above = (st.integers(min_value=int(rule.high) + 1) if kind is int else
             st.floats(min_value=rule.high, exclude_min=not rule.open_high, allow_infinity=False))  # fmt: skip
    special = st.sampled_from([math.nan, math.inf, -math.inf]) if kind is float else st.nothing()
    return st.one_of(below, above, special)


BAD_FIELDS = st.sampled_from(sorted(_RANGES)).flatmap(lambda f: st.tuples(st.just(f), _bad_numbers(f)))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "runs.db"
    with Store(path) as db:
        db.add_many([("a1", {"depth": 3}), ("b2", {"depth": 4})])
    return path


def _snapshot(path: Path) -> tuple[list[str], str]:
    with sqlite3.connect(path) as con:
        return list(con.iterdump()), con.execute("PRAGMA integrity_check").fetchone()[0]


def _store_args(command: str, store: Path) -> list[str]:
    """How ``command`` is pointed at the store, if it reads or writes one (so that the store check can fail)."""
    if command == "report":
        return [str(store)]
    params = getattr(typer.main.get_command(app), "commands", {}).get(command)
    return ["--store", str(store)] if params is not None and any("--store" in p.opts for p in params.params) else []


def _refused(args: list[str], store: Path, before: tuple[list[str], str]) -> None:
    """Exit 2, `Error:` first, no traceback; nothing written where the command runs (its default store, report or
    demo folder would land there); and the store it was pointed at, if any, exactly as it was."""
    with tempfile.TemporaryDirectory() as cwd, contextlib.chdir(cwd):
        result = runner.invoke(app, args)
        written = sorted(p.name for p in Path(cwd).iterdir())
    assert result.exit_code == 2, (args, result.output, result.exception)
    assert result.stderr.startswith("Error:"), (args, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert written == [], (args, written)
    if str(store) in args:
        assert _snapshot(store) == before and before[1] == "ok"


def _toml(value: float | int) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


@SETTINGS
@given(BAD_FIELDS)
def test_run_options_and_toml_fields(store: Path, tmp_path: Path, bad: tuple[str, float | int]) -> None:
    field, value = bad
    before = _snapshot(store)
    option = "--" + field.replace("_", "-")
    _refused(["run", option, str(value), "--store", str(store)], store, before)
    config = tmp_path / "run.toml"
    config.write_text(f"[run]\n{field} = {_toml(value)}\n")
    _refused(["run", "--config", str(config), "--store", str(store)], store, before)
    spec = tmp_path / "grid.toml"
    other = "width" if field != "width" else "depth"  # the grid must not override the field under test
    spec.write_text(f"[base]\n{field} = {_toml(value)}\n[grid]\n{other} = [8]\n")
    _refused(["sweep", str(spec), "--store", str(store)], store, before)


@SETTINGS
@given(
    st.sampled_from(["--weight-var", "--bias-var", "--input-var", "--depth"]).flatmap(
        lambda option: st.tuples(
            st.just(option),
            st.integers(max_value=0) if option == "--depth" else st.one_of(
                st.floats(max_value=0.0).filter(lambda v: option != "--bias-var" or v != 0),  # 0 is a valid bias var
                st.sampled_from([math.nan, math.inf, -math.inf]),
            ),
        )
    )
)  # fmt: skip
def test_predict_options(store: Path, bad: tuple[str, float]) -> None:
    option, value = bad
    _refused(["predict", option, str(value)], store, _snapshot(store))  # predict takes no store: nothing written


@SETTINGS
@given(st.sampled_from(["init", "audit"]), st.sampled_from(["--depth", "--width", "--batch-size"]),
       st.integers(max_value=0))  # fmt: skip
def test_model_sizes(store: Path, command: str, option: str, value: int) -> None:
    if command == "init" and option == "--batch-size":
        option = "--depth"
    _refused([command, option, str(value)], store, _snapshot(store))


# -- values of the wrong type, unknown options, missing values: click's usage errors in initlab's form --------
def _typed_options() -> list[tuple[str, str, str]]:
    """(command, option, type) for every option whose value click parses: numbers and choices."""
    group = typer.main.get_command(app)
    return [(name, p.opts[0], p.bare_type()) for name, command in group.commands.items()  # type: ignore[attr-defined]
            for p in command.params if p.opts[0].startswith("--") and p.bare_type() in ("int", "float", "Format",
                                                                                          "BackendName")]  # fmt: skip


def _parses(text: str, kind: str) -> bool:
    parse = {"int": int, "float": float}.get(kind)
    if parse is None:
        return text in ("table", "json", "local", "ray")
    try:
        parse(text)
    except ValueError:
        return False
    return True


WORDS = st.text(alphabet=string.ascii_letters + string.digits + "._", min_size=1, max_size=8)


@SETTINGS
@given(st.sampled_from(_typed_options()).flatmap(
    lambda opt: st.tuples(st.just(opt), WORDS.filter(lambda w: not _parses(w, opt[2])))))  # fmt: skip
def test_values_of_the_wrong_type(store: Path, bad: tuple[tuple[str, str, str], str]) -> None:
    (command, option, _), value = bad
    _refused([command, *_store_args(command, store), option, value], store, _snapshot(store))


@SETTINGS
@given(st.sampled_from(sorted(_RANGES)), WORDS.filter(lambda w: not _parses(w, "float")))
def test_run_fields_of_the_wrong_type(store: Path, field: str, value: str) -> None:
    _refused(["run", "--" + field.replace("_", "-"), value, "--store", str(store)], store, _snapshot(store))


@SETTINGS
@given(st.sampled_from(["demo", "schemes", "init", "predict", "audit", "sweep", "report", "nosuchcommand"]),
       WORDS.map(lambda w: "--zz" + w))  # fmt: skip
def test_unknown_options_and_commands(store: Path, command: str, option: str) -> None:
    _refused([command, *_store_args(command, store), option, "1"], store, _snapshot(store))


def test_a_usage_error_names_the_fix(store: Path) -> None:
    before = _snapshot(store)
    result = runner.invoke(app, ["init", "--depth", "x"])
    assert result.stderr == ("Error: invalid value for '--depth': Input should be a valid integer, unable to parse "
                             "string as an integer. See `initlab init --help` for every option and the values it "
                             "accepts.\n")  # fmt: skip
    result = runner.invoke(app, ["nope"])
    assert result.stderr.startswith("Error: no such command 'nope'. Accepted commands: demo, schemes, init, predict, ")
    _refused(["predict", "--depth"], store, before)  # a value missing at the end


# -- the user's own model (issue 33): factories and config files that cannot be used -----------------------------
_NAMES = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12).filter(str.isidentifier)
BAD_MODELS = st.one_of(
    st.builds(lambda m, f: f"{m}_nowhere.{m}:{f}", _NAMES, _NAMES),  # a package that does not exist
    st.builds(lambda f: f"math:{f}_nowhere", _NAMES),  # a module without that function
    st.builds(lambda f: f"math:{f}", st.sampled_from(["sqrt", "floor"])),  # a function that fails without an argument
    st.builds(lambda p: f"hf:{p}_missing/config.json", _NAMES),  # a config file that is not there
)


@SETTINGS
@given(st.sampled_from(["init", "predict", "audit"]), BAD_MODELS,
       st.lists(st.builds(lambda k, v: f"{k}={v}", _NAMES, st.integers()), max_size=2))  # fmt: skip
def test_models_that_cannot_be_used(store: Path, command: str, model: str, pairs: list[str]) -> None:
    args = [command, "--model", model]
    for pair in pairs:
        args += ["--model-arg", pair]
    _refused(args, store, _snapshot(store))  # none of the three takes a store: nothing written
