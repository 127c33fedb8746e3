"""CIFAR-10 in torchvision's layout, its pickled batches read by a restricted unpickler (readers.py)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pyro_vae.data.readers import damaged, load_pickled_arrays
from pyro_vae.data.splits import Dataset, hold_out, require_readable
from pyro_vae.errors import UsageError

CIFAR10_FOLDER = "cifar-10-batches-py"  # torchvision's layout: <data-dir>/cifar-10-batches-py/
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR10_SHAPE = (3, 32, 32)


def load_cifar10(data_dir: str | Path, download: bool, seed: int) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009) in torchvision's layout, ``data_dir/cifar-10-batches-py/``: the five training
    batches (hold_out's last sixth of them for validation) and the test batch, 32x32 RGB; downloaded by torchvision
    when absent and online. Read as torchvision reads them (pickles of uint8 rows in C, H, W order)."""
    folder = Path(data_dir) / CIFAR10_FOLDER
    require_readable(folder)
    reason = "downloads are disabled"
    if download and not all((folder / name).exists() for name in CIFAR10_FILES):
        import torchvision.datasets

        try:
            torchvision.datasets.CIFAR10(str(data_dir), train=True, download=True)
        except (RuntimeError, OSError) as error:
            reason = f"the download failed ({(str(error).splitlines() or [type(error).__name__])[0][:120]})"
    missing = [name for name in CIFAR10_FILES if not os.path.lexists(folder / name)]
    if missing:
        raise UsageError(f"cifar10: {', '.join(missing)} not found in {folder}, and {reason}; run once with network "
                         "access (torchvision downloads them) or unpack cifar-10-python.tar.gz from "
                         "https://www.cs.toronto.edu/~kriz/cifar.html into `data_dir`")
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in CIFAR10_FILES:
        path = folder / name
        remedy = "delete it and download CIFAR-10 again"
        try:
            with open(path, "rb") as f:
                batch = load_pickled_arrays(f)
            images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, *CIFAR10_SHAPE)
            labels = np.asarray(batch["labels"], dtype=np.int64)
        except pickle.UnpicklingError as error:
            raise damaged(path, f"it is not a CIFAR-10 batch ({error})", remedy) from None
        except (OSError, EOFError, KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            raise damaged(path, f"it is not a CIFAR-10 batch ({type(error).__name__})", remedy) from None
        if len(labels) != len(images) or (len(labels) and not 0 <= labels.min() <= labels.max() <= 9):
            raise damaged(path, "its labels are not one class 0-9 per image", remedy)
        parts[name] = (images, labels)

    def joined(names: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        images = np.concatenate([parts[n][0] for n in names])
        return (torch.from_numpy(images.reshape(len(images), -1)).float() / 255.0,
                torch.from_numpy(np.concatenate([parts[n][1] for n in names])))

    (x, y), (x_test, y_test) = joined(CIFAR10_FILES[:-1]), joined(CIFAR10_FILES[-1:])
    return hold_out("cifar10", x, y, x_test, y_test, CIFAR10_SHAPE)
