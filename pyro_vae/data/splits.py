"""A dataset's three splits: training, validation (for model selection) and test (for the final report only).

Every loader (mnist.py, cifar.py, own.py) ends in hold_out or shuffled_hold_out, so all hold out the same way.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from pyro_vae.errors import UsageError
from pyro_vae.models.likelihoods import all_binary

VALID_FRACTION = 6  # datasets without a validation set hold out the last 1/6 of their training set


@dataclass(frozen=True)
class Dataset:
    name: str  # the dataset actually loaded (differs from the one asked for after a fallback)
    train: Tensor  # (N, D) float32 in [0, 1]
    valid: Tensor  # (V, D) float32 in [0, 1], for model selection (early stopping)
    test: Tensor  # (M, D) float32 in [0, 1], for the final report only
    image_shape: tuple[int, int, int]  # (C, H, W), D = C * H * W; the pixels of an image are in that order
    labels: dict[str, Tensor] | None = None  # split name -> (n,) int64 class labels, when known
    sha256: str | None = None  # of the pixels, for data from the user's files (a folder or an array)
    classes: tuple[str, ...] = ()  # the name of each label (a folder's class subfolders), for figures and metrics

    @property
    def is_binary(self) -> bool:
        return all_binary(self.train)


def hold_out(name: str, x: Tensor, labels: Tensor | None, test: Tensor, test_labels: Tensor | None,
             image_shape: tuple[int, int, int], sha256: str | None = None, classes: tuple[str, ...] = ()) -> Dataset:
    """A Dataset whose validation set is the last 1/VALID_FRACTION of the training images: for
    MNIST the last 10,000, the standard 50,000/10,000 split that binarized MNIST also follows."""
    n_train = len(x) - len(x) // VALID_FRACTION
    split_labels = None if labels is None or test_labels is None else {
        "train": labels[:n_train], "valid": labels[n_train:], "test": test_labels}
    return Dataset(name, x[:n_train], x[n_train:], test, image_shape, split_labels, sha256,
                   classes if split_labels else ())


def shuffled_hold_out(name: str, x: Tensor, labels: Tensor | None, seed: int, image_shape: tuple[int, int, int],
                      sha256: str | None = None, test_size: int | None = None,
                      classes: tuple[str, ...] = ()) -> Dataset:
    """One set of images split three ways: shuffled with ``seed``, the last ``test_size`` (default: 1/VALID_FRACTION)
    for testing, then hold_out's validation set from the rest."""
    def splits(n: int) -> tuple[int, int, int]:  # training, validation and test images of n
        rest = n - (n // VALID_FRACTION if test_size is None else test_size)
        return rest - rest // VALID_FRACTION, rest // VALID_FRACTION, n - rest

    if min(splits(len(x))) < 1:  # 6 images gave 5, 0 and 1: no validation image
        least = next(n for n in itertools.count(len(x) + 1) if min(splits(n)) >= 1)
        raise UsageError(f"{name}: {len(x)} images are too few to split into training, validation and test images "
                         f"(each at least one): give at least {least}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, labels = x[order], None if labels is None else labels[order]
    n_train = len(x) - (len(x) // VALID_FRACTION if test_size is None else test_size)
    return hold_out(name, x[:n_train], None if labels is None else labels[:n_train], x[n_train:],
                    None if labels is None else labels[n_train:], image_shape, sha256, classes)


def require_readable(folder: Path) -> None:
    """A UsageError when ``folder`` exists but this process cannot list or enter it: its files would look
    absent (os.path.lexists says False), and the default run would fall back to mnist5k without a word."""
    if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
        raise UsageError(f"cannot read the data folder {folder} (permission denied): make it readable, or pass "
                         "another `data_dir`")
