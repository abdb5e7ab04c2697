"""Data sets, in memory as tensors and batched by index (small models are never input-bound).

``digits`` is the embedded default: scikit-learn's ``load_digits`` (1,797 8×8 images, 10 classes), shipped
inside scikit-learn, so nothing is downloaded. Images are standardized per pixel with the training split's
statistics and kept as ``(N, 1, H, W)``; MLPs flatten them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from initlab._errors import unknown_name

__all__ = ["DATASETS", "Dataset", "load"]


@dataclass(frozen=True)
class Dataset:
    """A classification data set split into train and test tensors."""

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
        order = torch.randperm(self.train_x.shape[0], generator=generator)
        for start in range(0, order.numel(), batch_size):
            idx = order[start : start + batch_size]
            yield self.train_x[idx], self.train_y[idx]


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[Tensor, Tensor]:
    mean, std = train.mean(0), train.std(0)
    std[std == 0] = 1.0
    return (torch.from_numpy((train - mean) / std).float(), torch.from_numpy((test - mean) / std).float())


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def digits(seed: int = 0) -> Dataset:
    """scikit-learn's 8×8 digits, a fixed stratified 80/20 split (``seed`` 0), standardized per pixel."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = bunch.images.astype(np.float64), bunch.target.astype(np.int64)
    train, test = _stratified_split(y, 0.2, seed)
    train_x, test_x = _standardize(x[train], x[test])
    return Dataset("digits", train_x[:, None], torch.from_numpy(y[train]), test_x[:, None],
                   torch.from_numpy(y[test]), 10)  # fmt: skip


DATASETS = {"digits": digits}


def load(name: str = "digits", *, seed: int = 0) -> Dataset:
    """Load a data set by name.

    >>> load("digits").in_shape
    (1, 8, 8)
    """
    if name not in DATASETS:
        raise unknown_name("data set", name, DATASETS)
    return DATASETS[name](seed=seed)
