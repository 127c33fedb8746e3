"""Your own images: a folder of image files, read through Pillow as torchvision's ImageFolder reads them, or an
array in a .npy or .npz file. Both become (N, C*H*W) pixels in [0, 1] with their image shape (C, H, W).

Every problem is one UsageError naming the file: an unreadable or damaged image, images of several sizes
without ``image_size``, values outside [0, 1] or 0-255, NaN, no images at all, more pixels than free memory.
Files that are not images are skipped, and counted and named in the log; nothing is skipped silently.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections import Counter
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pyro_vae.errors import UsageError
from pyro_vae.resources import require_memory

log = logging.getLogger("pyro_vae")

# what Pillow reads without plugins, by suffix (torchvision's IMG_EXTENSIONS, and .gif and .tiff)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F")  # Pillow's modes of one colour channel
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B")  # 16-bit grey (a 16-bit colour PNG Pillow reads as 8-bit RGB itself)
UNREAD_MODES = {"I": "32-bit integer", "F": "floating-point"}  # no range to scale by: refused, naming the file
CHANNELS = (1, 3)
MAX_CLASSES = 1000  # labels are class numbers 0..999: a figure's colours and legend are drawn per class


@dataclass(frozen=True)
class Images:
    """Decoded images: pixels (N, C*H*W) float32 in [0, 1], their shape (C, H, W), labels from class
    subfolders (N,) int64 or None, the class names, and the SHA-256 of the pixels, shape and labels: the
    content a resume or an evaluation checks against the run's."""

    x: Tensor
    image_shape: tuple[int, int, int]
    labels: Tensor | None
    classes: tuple[str, ...]
    sha256: str


def content_hash(x: np.ndarray, labels: np.ndarray | None) -> str:
    digest = hashlib.sha256()
    digest.update(repr(x.shape).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    if labels is not None:
        digest.update(np.ascontiguousarray(labels.astype(np.int64)).tobytes())
    return digest.hexdigest()


def image_files(root: Path) -> tuple[list[Path], list[Path]]:
    """The image files under ``root`` (sorted) and the other files skipped there."""
    images: list[Path] = []
    skipped: list[Path] = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            (images if path.suffix.lower() in IMAGE_SUFFIXES else skipped).append(path)
    return images, skipped


@contextmanager
def opened(path: Path) -> Generator[Any, None, None]:
    """The image file ``path`` open through Pillow; anything Pillow cannot read in it, on opening or decoding, is
    one UsageError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            yield image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UsageError(f"{path}: not a readable image ({error}): remove or replace it") from None


def read_folder(root: str | Path, channels: int | None = None, image_size: tuple[int, int] | None = None) -> Images:
    """Every image file under ``root``: converted to ``channels`` (1 grey, 3 RGB; default: RGB when any file is in
    colour, else grey), resized and centre-cropped to ``image_size`` (H, W) (default: the files' own size, which
    must then be one). When no image lies directly in ``root``, the folder each lies in below ``root`` is its class,
    as in torchvision's ImageFolder (classes in sorted order)."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"`data_dir={root}` is not a folder: `dataset=folder` reads the image files under a folder")
    if channels is not None and channels not in CHANNELS:
        raise UsageError(f"`channels={channels}`: choose 1 (grey) or 3 (RGB)")
    paths, skipped = image_files(root)
    if skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        log.info("%s: skipped %d file%s (%s)", root, len(skipped),
                 " that is not an image" if len(skipped) == 1 else "s that are not images", shown)
    if not paths:
        raise UsageError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it or its subfolders")
    # headers first (size and mode, no pixels decoded): the size rule and the memory check before the work
    sizes, modes = [], []
    for path in paths:
        with opened(path) as image:
            sizes.append((image.height, image.width))
            modes.append(image.mode)
        if modes[-1] in UNREAD_MODES:
            raise UsageError(f"{path}: its pixels are {UNREAD_MODES[modes[-1]]} values (Pillow mode {modes[-1]}), "
                             "which have no fixed range to scale to [0, 1]: save it as an 8-bit or 16-bit image")
        if path.suffix.lower() == ".png":
            check_png_rows(path)
    colour = [mode not in GREY_MODES for mode in modes]
    native = 3 if any(colour) else 1
    chosen = channels or native
    if chosen == 3 and not all(colour):
        log.info("%s: %d grey image%s converted to RGB (`channels=3`)", root, colour.count(False),
                 "s" * (colour.count(False) != 1))
    if chosen == 1 and any(colour):
        log.info("%s: %d colour image%s converted to grey (`channels=1`)", root, colour.count(True),
                 "s" * (colour.count(True) != 1))
    if image_size is None:
        counts = Counter(sizes)
        if len(counts) > 1:
            listed = ", ".join(f"{h}x{w} ({n}, e.g. {paths[sizes.index((h, w))].relative_to(root)})"
                               for (h, w), n in counts.most_common(3))
            raise UsageError(f"{root}: the images are of {len(counts)} sizes, {listed}: pass `image_size=H,W` to "
                             "resize and centre-crop them all to one")
        image_size = sizes[0]
    height, width = image_size
    require_memory(4 * len(paths) * chosen * height * width * 2, "cpu",
                   f"{len(paths)} images of {chosen}x{height}x{width} pixels", "pass a smaller `image_size`")
    pixels = np.empty((len(paths), height, width, chosen), dtype=np.uint8)
    from PIL import Image

    if sixteen := sum(mode in SIXTEEN_BIT for mode in modes):
        log.info("%s: %d 16-bit grey image%s scaled to 8 bits (k / 257, rounded)", root, sixteen, "s" * (sixteen != 1))
    for i, path in enumerate(paths):
        with opened(path) as image:
            if image.mode in SIXTEEN_BIT:  # Pillow's convert clips 16-bit values at 255: scale by the true range
                image = Image.fromarray(np.rint(np.asarray(image, dtype=np.float64) / 257).astype(np.uint8), "L")
            image = image.convert("RGB" if chosen == 3 else "L")
            if (image.height, image.width) != (height, width):
                image = resize_and_crop(image, height, width)
            pixels[i] = np.asarray(image).reshape(height, width, chosen)
    classes: tuple[str, ...] = ()
    labels = None
    if all(len(p.relative_to(root).parts) > 1 for p in paths):
        names = [p.relative_to(root).parts[0] for p in paths]
        classes = tuple(sorted(set(names)))
        labels = np.array([classes.index(n) for n in names], dtype=np.int64)
    chw = pixels.transpose(0, 3, 1, 2)  # (N, C, H, W)
    x = torch.from_numpy(np.ascontiguousarray(chw)).reshape(len(paths), -1).float() / 255.0
    log.info("%s: %d images of %dx%dx%d%s", root, len(paths), chosen, height, width,
             f" in {len(classes)} classes" if classes else "")
    return Images(x, (chosen, height, width), None if labels is None else torch.from_numpy(labels), classes,
                  content_hash(chw, labels))


SPLITS = ("train", "test")  # a folder of just these subfolders keeps its split (load_folder)


def split_folders(root: str | Path) -> tuple[Path, Path] | None:
    """``root``/train and ``root``/test when those are the only folders in ``root`` and no image lies directly in
    it: a folder already split into training and test images, as many published image sets come. None otherwise."""
    root = Path(root)
    if not root.is_dir():
        return None
    entries = list(root.iterdir())
    folders = {p.name for p in entries if p.is_dir()}
    if folders != set(SPLITS) or any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
        return None
    return root / SPLITS[0], root / SPLITS[1]


PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # samples per pixel of each PNG colour type


def check_png_rows(path: Path) -> None:
    """A UsageError when the PNG at ``path`` (not interlaced) holds fewer rows than its header declares: Pillow fills
    the missing rows with black without a word (a file cut short in a copy, its compressed stream ended early)."""
    import struct
    import zlib

    data = path.read_bytes()
    try:
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
        if interlace or colour not in PNG_CHANNELS:
            return  # Adam7 passes: not counted here
        stream, at = bytearray(), 8
        while at + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[at:at + 8])
            if kind == b"IDAT":
                stream += data[at + 8:at + 8 + length]
            at += 12 + length
        held = len(zlib.decompressobj().decompress(bytes(stream)))
    except (struct.error, zlib.error):
        return  # not decodable: Pillow says so, in opened()
    expected = height * (1 + -(-width * depth * PNG_CHANNELS[colour] // 8))
    if held < expected:
        rows = held // max(1, expected // max(height, 1))
        raise UsageError(f"{path}: not a whole image: it holds {rows} of the {height} rows its header declares "
                         "(truncated in a copy?): remove or replace it")


def resize_and_crop(image, height: int, width: int):  # type: ignore[no-untyped-def]
    """Scale ``image`` (a PIL image) so that it covers height x width, then cut out the centre: torchvision's
    Resize followed by CenterCrop, without torchvision's import."""
    from PIL import Image

    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


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
    if len(array) == 0:
        raise UsageError(f"{name}: holds no images (shape {array.shape})")
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


def read_array(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The images and labels in a .npy file (one array of images) or a .npz file (``train`` and ``test`` arrays, or
    one array; ``labels``, or ``train_labels`` and ``test_labels``), as (N, C, H, W) floats in [0, 1] by split
    name ('all' for one array), and the labels by the same names."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"`data_dir={path}`: no such file: `dataset=array` reads a .npy or .npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise UsageError(f"{path}: not a readable .npy or .npz file ({error})") from None
    if isinstance(loaded, np.ndarray):
        return {"all": as_images(loaded, str(path))}, {}
    with loaded:
        arrays = {key: loaded[key] for key in loaded.files}
    images = {k: arrays[k] for k in ("train", "test") if k in arrays}
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
