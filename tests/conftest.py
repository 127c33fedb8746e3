import gc
import gzip
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


def _tiny_digits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images: grey strokes (a bar whose position depends on the label) on black."""
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28))
    for image, label in zip(images, labels):
        image[4:24, 2 + 2 * label : 6 + 2 * label] = rng.uniform(120, 255)
    images = np.clip(images + rng.uniform(0, 40, images.shape) * (images > 0), 0, 255)
    return images.astype(np.uint8), labels


def write_tiny_idx(raw: Path, n_train: int = 64, n_test: int = 32, seed: int = 0, gz: bool = False) -> Path:
    """Writes raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz], the four files of MNIST and
    Fashion-MNIST, in the IDX format torchvision reads (gzipped as distributed, with ``gz``)."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = _tiny_digits(n, rng)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            path = raw / f"{prefix}-{kind}-ubyte"
            _write_idx(path, array)
            if gz:
                path.with_suffix(".gz").write_bytes(gzip.compress(path.read_bytes()))
                path.unlink()
    return raw


def write_tiny_mnist(root: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """root/MNIST/raw/ with the four IDX files torchvision's MNIST reads; returns root."""
    write_tiny_idx(root / "MNIST" / "raw", n_train, n_test, seed)
    return root


def write_tiny_amat(folder: Path, sizes: tuple[int, int, int] = (60, 20, 20), seed: int = 0) -> Path:
    """binarized_mnist_{train,valid,test}.amat as Larochelle & Murray distribute them: one image
    per line, 784 space-separated 0/1 values."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "valid", "test"), sizes):
        images, _ = _tiny_digits(n, rng)
        lines = (" ".join(map(str, row)) for row in (images.reshape(n, -1) > 127).astype(int))
        (folder / f"binarized_mnist_{split}.amat").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def tiny_amat_sizes(monkeypatch):
    """Binarized MNIST's known split sizes as write_tiny_amat writes them (the real ones are 50k/10k/10k)."""
    import pyro_vae.data.mnist

    monkeypatch.setattr(pyro_vae.data.mnist, "BINARIZED_MNIST_SIZES", {"train": 60, "valid": 20, "test": 20})


@pytest.fixture
def collector():
    """The garbage collector as pytest had it, after a test of cli.pause_collection: enabled, and what
    cli.startup_done froze let go again."""
    from pyro_vae.commands.cli import startup_done

    frozen = gc.get_freeze_count()
    yield
    startup_done()
    gc.enable()
    if gc.get_freeze_count() > frozen:
        gc.unfreeze()


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
