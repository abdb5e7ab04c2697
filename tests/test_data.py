"""Data sets: the IDX reader's validation and error texts, synthetic sets, and small end-to-end fits."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import initlab as il
from initlab.compare.data import idx_dataset, load, read_idx
from initlab.compare.train import TrainConfig, train


def _write_idx(path: Path, array: np.ndarray, magic: int, *, gz: bool = False, cut: int = 0) -> Path:
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    raw = raw[: len(raw) - cut] if cut else raw
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def _fake_mnist(directory: Path, n: int = 40, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for split, m in (("train", n), ("t10k", n // 2)):
        _write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (m, 28, 28)), 0x803, gz=gz)
        _write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, m), 0x801, gz=gz)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    _fake_mnist(tmp_path, gz=gz)
    data = idx_dataset("mnist", tmp_path)
    assert data.in_shape == (1, 28, 28) and data.train_x.shape[0] == 40 and data.test_y.shape == (20,)
    assert abs(data.train_x.mean().item()) < 1e-5  # standardized with the training statistics
    assert load("mnist", data_dir=tmp_path).train_y.dtype == torch.int64


def test_truncated_idx_names_file_and_fix(tmp_path: Path) -> None:
    path = _write_idx(tmp_path / "t.idx", np.zeros((3, 4, 4)), 0x803, cut=5)
    expected = f"IDX file {path} has 59 bytes; its header (3, 4, 4) says 64. The file is truncated or corrupt"
    with pytest.raises(il.InitlabError, match=re.escape(expected + ": download it again.")):
        read_idx(path)


def test_corrupt_magic_and_missing_files(tmp_path: Path) -> None:
    path = _write_idx(tmp_path / "bad.idx", np.zeros(3), 0x12345678)
    with pytest.raises(il.InitlabError, match=re.escape(f"IDX file {path} has magic number 0x12345678. Accepted: "
                                                        "0x00000803 or 0x00000801.")):  # fmt: skip
        read_idx(path)
    with pytest.raises(il.InitlabError, match=re.escape(f"no train-images-idx3-ubyte[.gz] in {tmp_path}. MNIST and "
                                                        "Fashion-MNIST are four IDX files")):  # fmt: skip
        idx_dataset("mnist", tmp_path)
    not_gzip = tmp_path / "x.gz"
    not_gzip.write_bytes(b"plain bytes")
    with pytest.raises(il.InitlabError, match="is not a readable \\(gzip\\) file"):
        read_idx(not_gzip)
    with pytest.raises(
        il.InitlabError, match=re.escape("the mnist data set needs its IDX files. Pass --data-dir DIR.")
    ):
        load("mnist")


def test_unknown_data_set() -> None:
    with pytest.raises(il.InitlabError, match=re.escape("unknown data set 'digit'. Did you mean 'digits'?")):
        load("digit")


def test_synthetic_sets_shapes() -> None:
    assert load("xor").train_x.shape == (4, 2)
    assert load("spirals").in_shape == (2,) and load("teacher").classes == 10
    assert load("sequential-digits").in_shape == (8, 8)
    teacher_a, teacher_b = load("teacher"), load("teacher")
    assert torch.equal(teacher_a.train_y, teacher_b.train_y)


def test_xor_two_layer_tanh_separates_all_four_points() -> None:
    result = train(TrainConfig(data="xor", depth=2, width=8, activation="tanh", scheme="glorot_uniform",
                               optimizer="adam", lr=0.05, epochs=300, batch_size=4, monitor=False))  # fmt: skip
    assert result.final is not None and result.final.test_accuracy == 1.0


@pytest.mark.slow
def test_mnist1d_is_generated_offline() -> None:
    pytest.importorskip("mnist1d")
    data = load("mnist1d")
    assert data.in_shape == (40,) and data.train_x.shape[0] == 4000 and data.test_x.shape[0] == 1000
    assert set(data.train_y.unique().tolist()) == set(range(10))
