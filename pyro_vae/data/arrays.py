"""Your own images as an array: a .npy file of images, or a .npz of train and test images and their labels, read
without pickles and checked (shape, dtype, range, labels), as (N, C, H, W) floats in [0, 1]."""

from __future__ import annotations

import hashlib
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from pyro_vae.data.images import CHANNELS, content_hash
from pyro_vae.errors import UsageError
from pyro_vae.files import require_regular
from pyro_vae.resources import require_memory

MAX_CLASSES = 1000  # labels are class numbers 0..999: a figure's colours and legend are drawn per class


def as_images(array: np.ndarray, name: str) -> np.ndarray:
    """An array of images as (N, C, H, W) floats in [0, 1]: (N, H, W), (N, H, W, C) or (N, C, H, W) with C of 1 or
    3, uint8 0-255 or floats in [0, 1]."""
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise UsageError(f"{name}: expected numbers, got an array of {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise UsageError(f"{name}: holds complex numbers ({array.dtype}): pixels are real; pass the magnitudes "
                         "(np.abs) or the real parts, scaled to [0, 1]")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in CHANNELS and array.shape[1] not in CHANNELS:
        array = array.transpose(0, 3, 1, 2)
    elif not (array.ndim == 4 and array.shape[1] in CHANNELS):
        raise UsageError(f"{name}: expected images as (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3, got "
                         f"shape {array.shape}")
    if 0 in array.shape:
        raise UsageError(f"{name}: holds no images, or images of no pixels (shape {array.shape})")
    if array.dtype == bool:
        return array.astype(np.float32)  # True is white (1.0), as a binary image means it
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise UsageError(f"{name}: holds NaN or infinite values: every pixel must be a number in [0, 1]")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise UsageError(f"{name}: float pixels must lie in [0, 1], got values in [{low:g}, {high:g}]: divide "
                             "8-bit values by 255, or store them as uint8")
        return array.astype(np.float32)
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > 255:
        raise UsageError(f"{name}: integer pixels must lie in 0-255, got values in [{low}, {high}]")
    return array.astype(np.float32) / 255.0


def declared_bytes(path: Path) -> int:
    """The bytes of array data that ``path``, a .npy or a .npz, declares (headers and zip entries: nothing is
    decompressed), as read into memory; a UsageError when a .npy header declares more than the file holds."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return sum(info.file_size for info in archive.infolist())  # a zip bomb's real size, declared
        except (zipfile.BadZipFile, OSError):
            return 0  # np.load says what is wrong
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError):
        return 0  # not a .npy: np.load says so
    declared = math.prod(shape) * dtype.itemsize
    if not dtype.hasobject and declared > path.stat().st_size - offset:
        raise UsageError(f"{path}: its header declares {declared:,} bytes of {dtype} pixels {shape}, and the file "
                         f"holds {path.stat().st_size - offset:,}: it is truncated or damaged; save the array again")
    return declared


def require_array_memory(path: Path) -> None:
    """Refuse, before reading it, an array file whose pixels cannot fit in memory (a header declaring 1e12 bytes,
    a sparse 40 GB .npy, a .npz that decompresses to 6 GB): the pixels, and their float32 copy, at most 4 bytes
    for each byte read."""
    require_memory(5 * declared_bytes(path), "cpu", f"{path} (its pixels, read and as floats)",
                   "save fewer or smaller images")


def read_array(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The images and labels in a .npy file (one array of images) or a .npz file (``train`` and ``test`` arrays, or
    one array; ``labels``, or ``train_labels`` and ``test_labels``), as (N, C, H, W) floats in [0, 1] by split
    name ('all' for one array), and the labels by the same names."""
    path = Path(path)
    require_regular(path, "`data_dir`")  # a FIFO or /dev/zero was "no such file"
    if not path.is_file():
        raise UsageError(f"`data_dir={path}`: no such file: `dataset=array` reads a .npy or .npz file")
    require_array_memory(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        if "allow_pickle" not in str(error):
            raise UsageError(f"{path}: not a readable .npy or .npz file ({error})") from None
        # numpy's own text names a setting this program does not have: a .npy of objects, or any other file
        with open(path, "rb") as f:
            npy = f.read(6) == b"\x93NUMPY"
        why = ("an array of Python objects, which is not read (no pickles): save the images as numbers (np.save "
               "with a uint8 or float array)") if npy else "not a .npy or .npz file: save the images with np.save"
        raise UsageError(f"{path}: {why}") from None
    if isinstance(loaded, np.ndarray):
        return {"all": as_images(loaded, str(path))}, {}
    arrays: dict[str, np.ndarray] = {}
    with loaded:
        for key in loaded.files:
            try:
                arrays[key] = loaded[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as error:
                why = "an array of Python objects, which is not read (no pickles)" if "allow_pickle" in str(error) \
                    else f"damaged ({type(error).__name__})"
                raise UsageError(f"{path}: its member {key!r} is {why}: save the images as numbers "
                                 "(np.savez with uint8 or float arrays)") from None
    images: dict[str, np.ndarray] = {k: arrays[k] for k in ("train", "test") if k in arrays}
    if not images:
        others = [k for k in arrays if not k.endswith("labels")]
        if len(others) != 1:
            raise UsageError(f"{path}: expected arrays named train and test (and labels), or one array of images; "
                             f"it holds {', '.join(arrays) or 'nothing'}")
        images = {"all": arrays[others[0]]}
    labels = {}
    for split in images:
        key = "labels" if split == "all" or "labels" in arrays and len(images) == 1 else f"{split}_labels"
        if key in arrays:
            labels[split] = arrays[key]
    for split, value in labels.items():
        if value.shape != (len(images[split]),) or not np.issubdtype(value.dtype, np.integer):
            raise UsageError(f"{path}: the labels of {split} must be {len(images[split])} integers, got "
                             f"{value.dtype} of shape {value.shape}")
        if len(value) and not 0 <= int(value.min()) <= int(value.max()) < MAX_CLASSES:
            raise UsageError(f"{path}: the labels of {split} must be class numbers 0-{MAX_CLASSES - 1}, got values "
                             f"in [{int(value.min())}, {int(value.max())}]: number the classes from 0")
    pixels = {split: as_images(value, f"{path}[{split}]") for split, value in images.items()}
    shapes = {value.shape[1:] for value in pixels.values()}
    if len(shapes) > 1:
        raise UsageError(f"{path}: train and test images differ in shape ({', '.join(map(str, shapes))})")
    return pixels, labels


def array_hash(pixels: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for split in sorted(pixels):
        digest.update(split.encode())
        digest.update(content_hash(pixels[split], labels.get(split)).encode())
    return digest.hexdigest()
