import struct
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def pyro_state():
    """Every test starts from a clean param store, validation on, and a fixed seed."""
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX (LeCun's MNIST format): magic 0x0000 08 <ndim>, big-endian int32 dims, uint8 data."""
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def write_tiny_mnist(root: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """Writes root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte as torchvision reads them:
    28x28 grey strokes (a bar whose position depends on the label) on black, with noise."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28))
        for image, label in zip(images, labels):
            image[4:24, 2 + 2 * label : 6 + 2 * label] = rng.uniform(120, 255)
        images = np.clip(images + rng.uniform(0, 40, images.shape) * (images > 0), 0, 255)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture
def tiny_mnist(tmp_path: Path) -> Path:
    return write_tiny_mnist(tmp_path / "data")


def binary_data(n: int = 200, d: int = 20, seed: int = 0) -> torch.Tensor:
    """Binary images from two prototypes with 5% of pixels flipped: easy to model with z = 2."""
    g = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(2, d, generator=g) > 0.5).float()
    x = prototypes[torch.randint(0, 2, (n,), generator=g)]
    flip = torch.rand(n, d, generator=g) < 0.05
    return torch.where(flip, 1 - x, x)
