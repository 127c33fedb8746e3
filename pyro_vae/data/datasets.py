"""Datasets by name: files on disk (or a download) -> pixels in [0, 1] as (N, C*H*W) tensors, split three ways.

One module per source (mnist.py, cifar.py, own.py), the splits in splits.py; bytes are read and checked by
readers.py and images.py; what a likelihood makes of the pixels is pixels.py's. The whole dataset lives as one
tensor; training takes minibatches as index slices, so no per-item transform runs in the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pyro_vae.data.cifar import load_cifar10
from pyro_vae.data.mnist import (
    MNIST5K_TEST,
    load_binarized_mnist,
    load_fashion_mnist,
    load_mnist,
    load_mnist5k,
)
from pyro_vae.data.own import load_array, load_folder
from pyro_vae.data.splits import VALID_FRACTION, Dataset, hold_out, shuffled_hold_out
from pyro_vae.errors import UsageError

__all__ = ["DATASETS", "MNIST5K_TEST", "VALID_FRACTION", "Dataset", "hold_out", "load_dataset", "shuffled_hold_out"]

DATASETS: dict[str, Callable[[str | Path, bool, int], Dataset]] = {
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "binarized-mnist": load_binarized_mnist,
    "mnist5k": load_mnist5k,
    "cifar10": load_cifar10,
    "folder": load_folder,
    "array": load_array,
}


def load_dataset(
    name: str, data_dir: str | Path = "data", download: bool = True, seed: int = 0, fallback: bool = False,
    channels: int | None = None, image_size: tuple[int, int] | None = None,
) -> Dataset:
    """The dataset ``name`` (a key of DATASETS). ``fallback`` lets mnist fall back to mnist5k when
    it is neither on disk nor downloadable: the default run's behaviour, and the only fallback.
    ``channels`` and ``image_size``: how a folder's images are converted (images.read_folder)."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    if (channels is not None or image_size is not None) and name != "folder":
        raise UsageError("`channels` and `image_size` convert the images of `dataset=folder`; "
                         f"{name}'s images are used as they are")
    if name == "array":
        return load_array(data_dir, download, seed)
    if Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise UsageError(f"`data_dir={data_dir}` is a file, not a folder: pass the folder that holds the dataset")
    if name == "mnist":
        return load_mnist(data_dir, download, seed, fallback=fallback)
    if name == "folder":
        return load_folder(data_dir, download, seed, channels, image_size)
    return DATASETS[name](data_dir, download, seed)
