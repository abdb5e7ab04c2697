"""The command line's boundary (issue 23): every expected failure is `Error: <what>. Accepted: ... <fix>` with exit
code 2 and no traceback; an unexpected one keeps its traceback and says it is a bug (exit 1). Each case below
gave a raw traceback and exit 1 before."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from initlab.cli._common import user_errors

CLI = [sys.executable, "-m", "initlab.cli.main"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False)


def _expect(proc: subprocess.CompletedProcess[str], start: str) -> None:
    text = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert text.startswith(f"Error: {start}"), text
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "runs.db"
    proc = _cli("run", "--depth", "2", "--width", "8", "--epochs", "1", "--max-steps", "2", "--store", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


def test_report_into_a_folder_or_under_a_file(store: Path, tmp_path: Path) -> None:
    _expect(_cli("report", str(store), "-o", str(tmp_path)), f"cannot use {tmp_path}: Is a directory.")
    # (as root a read-only folder is writable; a path under a file fails the same way for every user)
    _expect(_cli("report", str(store), "-o", str(store / "r.html")), f"cannot use {store}: File exists.")


def test_demo_out_is_an_existing_file(tmp_path: Path) -> None:
    existing = tmp_path / "file"
    existing.write_text("x")
    _expect(_cli("demo", "--quick", "--out", str(existing)), f"cannot use {existing}: File exists.")


def test_predict_plot_paths(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "p.png"
    _expect(_cli("predict", "--plot", str(missing)), f"cannot use {missing}: No such file or directory.")
    txt = _cli("predict", "--plot", str(tmp_path / "p.txt"))
    _expect(txt, f"cannot write a figure to {tmp_path / 'p.txt'}: its suffix names no image format. Accepted: ")
    assert " ".join(txt.stderr.split()).endswith(".png, .ps, .raw, .rgba, .svg, .svgz, .tif, .tiff, .webp. "
                                                 "Received: '.txt'. Name the file p.png, for example.")  # fmt: skip


def test_corrupt_gzip_data(tmp_path: Path) -> None:
    blob = gzip.compress(b"\x00" * 64)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(blob[:12] + b"\xff" * 20 + blob[32:])  # bad deflate data
    proc = _cli("run", "--data", "mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--store",
                str(tmp_path / "r.db"))  # fmt: skip
    _expect(proc, f"IDX file {tmp_path / 'train-images-idx3-ubyte.gz'} is not a readable (gzip) file")


def test_devices_and_sizes_that_cannot_be() -> None:
    _expect(_cli("run", "--device", "cuda", "--epochs", "1"), "device 'cuda' is not available on this machine.")
    _expect(_cli("init", "--width", "1000000000", "--depth", "1"),
            "a mlp of depth 1 and width 1000000000 would have 75,000,000,010 parameters (279 GiB as float32). "
            "Accepted: at most 2,147,483,648 parameters.")  # fmt: skip


def test_an_unexpected_error_is_a_bug_with_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def broken() -> None:
        raise RuntimeError("something initlab did not foresee")

    with pytest.raises(typer.Exit) as exit_info:
        broken()
    err = capsys.readouterr().err
    assert exit_info.value.exit_code == 1
    assert "Traceback" in err and "RuntimeError: something initlab did not foresee" in err
    assert "This is a bug in initlab, not a problem with your input" in " ".join(err.split())
