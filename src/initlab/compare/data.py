"""Data sets, in memory as tensors and batched by index (small models are never input-bound).

* ``digits`` (the embedded default): scikit-learn's ``load_digits`` (1,797 8×8 images, 10 classes), shipped
  inside scikit-learn, so nothing is downloaded. Fixed stratified 80/20 split.
* ``mnist`` and ``fashion-mnist``: IDX files (gzipped or not) under ``data_dir``; for Fashion-MNIST also the
  Debian package's directory (``apt-get install dataset-fashion-mnist``).
* ``mnist1d``: generated offline by its PyPI package (the ``mnist1d`` extra), 4,000 + 1,000 examples of 40.
* synthetic: ``xor`` (the four points), ``spirals`` (two interleaved spirals), ``teacher`` (labels from a
  random deep tanh network).
* ``sequential-digits``: digits presented row by row, (N, 8, 8) sequences for recurrent models.
* ``text``: character-level language modelling on the English help texts that ship with CPython itself
  (``pydoc_data.topics``, 465,048 characters, 103 distinct): windows of 64 characters, each position's target
  the next character; the last 10% of the text is held out. Scores: loss and bits per character.

Images are standardized per pixel with the training split's statistics and kept as ``(N, 1, H, W)``.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from initlab._errors import fail, unknown_name

__all__ = ["DATASETS", "Dataset", "batches", "load"]


@dataclass(frozen=True)
class Dataset:
    """A classification data set split into train and test tensors. For language modelling (``text``) ``x`` and
    ``y`` are ``(N, T)`` token ids, ``y`` the next token at every position, and ``classes`` the vocabulary."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: int

    @property
    def in_shape(self) -> tuple[int, ...]:
        """The shape of one example."""
        return tuple(self.train_x.shape[1:])

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch of shuffled training batches (the last, smaller one included)."""
        return batches(self.train_x, self.train_y, batch_size, generator)


def batches(x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of ``(x, y)`` in shuffled batches, indexed in memory (no per-sample DataLoader)."""
    order = torch.randperm(x.shape[0], generator=generator)
    for start in range(0, order.numel(), batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[Tensor, Tensor]:
    mean, std = train.mean(0), train.std(0)
    std[std == 0] = 1.0
    return (torch.from_numpy((train - mean) / std).float(), torch.from_numpy((test - mean) / std).float())


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def digits(seed: int = 0, data_dir: str | Path | None = None) -> Dataset:
    """scikit-learn's 8×8 digits, a fixed stratified 80/20 split (``seed`` 0), standardized per pixel."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.images.astype(np.float64), bunch.target.astype(np.int64)
    train, test = _stratified_split(y, 0.2, seed)
    train_x, test_x = _standardize(x[train], x[test])
    return Dataset("digits", train_x[:, None], torch.from_numpy(y[train]), test_x[:, None],
                   torch.from_numpy(y[test]), 10)  # fmt: skip


IDX_IMAGES, IDX_LABELS = 0x00000803, 0x00000801
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = {
    "train_x": ("train-images-idx3-ubyte", IDX_IMAGES),
    "train_y": ("train-labels-idx1-ubyte", IDX_LABELS),
    "test_x": ("t10k-images-idx3-ubyte", IDX_IMAGES),
    "test_y": ("t10k-labels-idx1-ubyte", IDX_LABELS),
}


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read an IDX file (MNIST's format: big-endian magic 0x00000801 labels / 0x00000803 images, the dims,
    then unsigned bytes), gzipped or not, checking magic, dimensions and length.

    Raises:
        InitlabError: a missing, truncated or corrupt file, naming the file, what was expected and the fix.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise fail(f"IDX file {path} does not exist", fix=_HOW_TO_GET) from None
    except (OSError, EOFError, zlib.error) as error:  # zlib.error: a gzip header over corrupt deflate data
        raise fail(f"IDX file {path} is not a readable (gzip) file: {error}", fix=_HOW_TO_GET) from None
    if len(raw) < 4:
        raise fail(f"IDX file {path} is truncated: {len(raw)} bytes, not even a header", fix=_HOW_TO_GET)
    (found,) = struct.unpack(">I", raw[:4])
    accepted = (IDX_IMAGES, IDX_LABELS) if magic is None else (magic,)
    if found not in accepted:
        raise fail(f"IDX file {path} has magic number {found:#010x}",
                   accepted=" or ".join(f"{m:#010x}" for m in accepted), fix=_HOW_TO_GET)  # fmt: skip
    ndim = found & 0xFF
    if len(raw) < 4 + 4 * ndim:
        raise fail(f"IDX file {path} is truncated inside its header", fix=_HOW_TO_GET)
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim + math.prod(dims)
    if len(raw) != expected:
        raise fail(f"IDX file {path} has {len(raw)} bytes; its header {dims} says {expected}",
                   fix="The file is truncated or corrupt: download it again. " + _HOW_TO_GET)  # fmt: skip
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


_HOW_TO_GET = ("MNIST and Fashion-MNIST are four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte"
               "[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in the directory given with "
               "--data-dir; Fashion-MNIST also comes from `apt-get install dataset-fashion-mnist`.")  # fmt: skip


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.exists():
            return candidate
    raise fail(f"no {stem}[.gz] in {directory}", fix=_HOW_TO_GET)


def idx_dataset(name: str, directory: str | Path) -> Dataset:
    """MNIST-format images and labels from the four IDX files in ``directory``."""
    directory = Path(directory)
    arrays = {key: read_idx(_find(directory, stem), magic) for key, (stem, magic) in _IDX_FILES.items()}
    train_x, test_x = _standardize(arrays["train_x"].astype(np.float64), arrays["test_x"].astype(np.float64))
    for split in ("train", "test"):
        if arrays[f"{split}_x"].shape[0] != arrays[f"{split}_y"].shape[0]:
            raise fail(f"{directory}: {split} images and labels differ in number", fix=_HOW_TO_GET)
    return Dataset(name, train_x[:, None], torch.from_numpy(arrays["train_y"].astype(np.int64)), test_x[:, None],
                   torch.from_numpy(arrays["test_y"].astype(np.int64)), 10)  # fmt: skip


def mnist(seed: int = 0, data_dir: str | Path | None = None) -> Dataset:
    if data_dir is None:
        raise fail("the mnist data set needs its IDX files", fix="Pass --data-dir DIR. " + _HOW_TO_GET)
    return idx_dataset("mnist", data_dir)


def fashion_mnist(seed: int = 0, data_dir: str | Path | None = None) -> Dataset:
    return idx_dataset("fashion-mnist", data_dir if data_dir is not None else FASHION_DIR)


def mnist1d(seed: int = 0, data_dir: str | Path | None = None) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated offline by the ``mnist1d`` package with its default arguments."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise fail("the mnist1d data set needs the mnist1d package", fix="pip install 'initlab[mnist1d]'") from None
    args = get_dataset_args()
    args.seed = 42 + seed
    d = make_dataset(args)
    train_x, test_x = _standardize(np.asarray(d["x"], np.float64), np.asarray(d["x_test"], np.float64))
    return Dataset("mnist1d", train_x, torch.as_tensor(d["y"]).long(), test_x, torch.as_tensor(d["y_test"]).long(),
                   10)  # fmt: skip


def xor(seed: int = 0, data_dir: str | Path | None = None) -> Dataset:
    """The four XOR points (±1 coordinates), the same set for training and testing."""
    x = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1, 0])
    return Dataset("xor", x, y, x.clone(), y.clone(), 2)


def spirals(seed: int = 0, data_dir: str | Path | None = None, n: int = 1000) -> Dataset:
    """Two interleaved spirals with a little noise: not linearly separable, needs depth."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * 3 * math.pi + 0.5
    label = torch.arange(n) % 2
    sign = 1 - 2 * label.float()
    x = torch.stack([sign * t * torch.cos(t), sign * t * torch.sin(t)], 1) / (3 * math.pi)
    x = x + 0.02 * torch.randn(n, 2, generator=g)
    cut = int(0.8 * n)
    return Dataset("spirals", x[:cut], label[:cut], x[cut:], label[cut:], 2)


def teacher(seed: int = 0, data_dir: str | Path | None = None, n: int = 4000, d: int = 32) -> Dataset:
    """Labels from a random 4-layer tanh 'teacher' network on Gaussian inputs (10 classes)."""
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(n, d, generator=g)
    h = x
    for _ in range(4):
        h = torch.tanh(h @ (torch.randn(d, d, generator=g) * math.sqrt(2.0 / d)))
    y = (h @ torch.randn(d, 10, generator=g)).argmax(1)
    cut = int(0.8 * n)
    return Dataset("teacher", x[:cut], y[:cut], x[cut:], y[cut:], 10)


def sequential_digits(seed: int = 0, data_dir: str | Path | None = None) -> Dataset:
    """``digits`` as sequences of 8 rows of 8 pixels, shape (N, 8, 8), for recurrent models."""
    d = digits(seed)
    return Dataset("sequential-digits", d.train_x[:, 0], d.train_y, d.test_x[:, 0], d.test_y, d.classes)


TEXT_CONTEXT = 64  # characters per training window


def text(seed: int = 0, data_dir: str | Path | None = None, context: int = TEXT_CONTEXT) -> Dataset:
    """Character-level language modelling on CPython's own help texts (``pydoc_data.topics``): real English prose
    with code examples, offline and identical wherever this Python runs. The topics are joined in sorted order;
    the first 90% is cut into non-overlapping windows of ``context + 1`` characters (inputs: the first
    ``context``, targets: the same shifted by one), the last 10% likewise for the held-out split.

    >>> d = text()
    >>> d.train_x.shape, d.classes, d.decode(d.train_x[0, :10])
    (torch.Size([6539, 64]), 103, 'The "asser')
    >>> bool((d.train_y[:, :-1] == d.train_x[:, 1:]).all())
    True
    """
    from pydoc_data.topics import topics

    corpus = "\n".join(topics[key] for key in sorted(topics))
    vocabulary = sorted(set(corpus))
    index = {c: i for i, c in enumerate(vocabulary)}
    tokens = torch.from_numpy(np.fromiter(map(index.__getitem__, corpus), dtype=np.int64, count=len(corpus)))
    cut = int(0.9 * tokens.numel())

    def windows(part: Tensor) -> tuple[Tensor, Tensor]:
        usable = (part.numel() - 1) // context * context
        return part[:usable].view(-1, context), part[1 : usable + 1].view(-1, context)

    (train_x, train_y), (test_x, test_y) = windows(tokens[:cut]), windows(tokens[cut:])
    return TextDataset("text", train_x, train_y, test_x, test_y, len(vocabulary), "".join(vocabulary))


@dataclass(frozen=True)
class TextDataset(Dataset):
    """A character-level language-modelling data set: :class:`Dataset` plus its ``vocabulary`` (id → char)."""

    vocabulary: str = ""

    def decode(self, ids: Tensor) -> str:
        return "".join(self.vocabulary[int(i)] for i in ids)

    @property
    def unigram_bits(self) -> float:
        """The entropy of the held-out characters' frequencies in the training split, in bits: the score of a model
        that learned letter frequencies and nothing of context."""
        counts = torch.bincount(self.train_y.flatten(), minlength=self.classes).double()
        p = counts / counts.sum()
        test = torch.bincount(self.test_y.flatten(), minlength=self.classes).double()
        return float(-(test / test.sum() * p.clamp_min(1e-12).log2()).sum())


DATASETS = {"digits": digits, "mnist": mnist, "fashion-mnist": fashion_mnist, "mnist1d": mnist1d, "xor": xor,
            "spirals": spirals, "teacher": teacher, "sequential-digits": sequential_digits,
            "text": text}  # fmt: skip


def load(name: str = "digits", *, seed: int = 0, data_dir: str | Path | None = None) -> Dataset:
    """Load a data set by name (see the module docs).

    >>> load("digits").in_shape, load("xor").classes
    ((1, 8, 8), 2)
    """
    if name not in DATASETS:
        raise unknown_name("data set", name, DATASETS)
    return DATASETS[name](seed=seed, data_dir=data_dir)
