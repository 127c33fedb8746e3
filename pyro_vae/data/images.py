"""Your own images: a folder of image files, read through Pillow as torchvision's ImageFolder reads them (an array
in a .npy or .npz file: arrays.py). Both become (N, C*H*W) pixels in [0, 1] with their image shape (C, H, W).

Every problem is one UsageError naming the file: an unreadable or damaged image, images of several sizes
without ``image_size``, values outside [0, 1] or 0-255, NaN, no images at all, more pixels than free memory.
Files that are not images are skipped, and counted and named in the log; nothing is skipped silently.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import stat
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


def image_files(root: Path) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """The image files under ``root`` (sorted), the other files there, and what is neither a file nor a folder one
    can read, with why: a broken link, a link back to a folder already read, a FIFO or a device, an unreadable
    folder. Linked folders are followed, each real folder read once; the walk keeps its own stack, so no depth of
    folders is too deep for it."""
    images: list[Path] = []
    others: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            real = folder.resolve(strict=True)
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except (OSError, RuntimeError) as error:
            skipped.append((folder, f"an unreadable folder ({getattr(error, 'strerror', None) or error})"))
            continue
        if real in seen:
            skipped.append((folder, "a link to a folder already read"))
            continue
        seen.add(real)
        for entry in entries:
            path = Path(entry.path)
            try:
                mode = os.stat(path).st_mode  # through links
            except (OSError, ValueError) as error:
                too_long = getattr(error, "errno", None) == errno.ENAMETOOLONG  # beyond the system's PATH_MAX
                skipped.append((path, "a broken link" if entry.is_symlink() else
                                "a path longer than the system allows: move it nearer the data folder" if too_long
                                else "unreadable"))
                continue
            if stat.S_ISDIR(mode):
                stack.append(path)
            elif not stat.S_ISREG(mode):
                skipped.append((path, "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket, not a file"))
            else:
                (images if path.suffix.lower() in IMAGE_SUFFIXES else others).append(path)
    return sorted(images), sorted(others), skipped


def shortened(path: Path, most: int = 100) -> str:
    """``path`` as a log line shows it: its start and end around "..." when longer than ``most`` characters."""
    text = str(path)
    return text if len(text) <= most else f"{text[:most // 2 - 2]}...{text[-(most // 2 - 1):]}"


@contextmanager
def opened(path: Path, whole: bool = False) -> Generator[Any, None, None]:
    """The image file ``path`` open through Pillow; anything Pillow cannot read in it, on opening or decoding, is
    one UsageError naming the file. ``whole``: the file read in one go, a PNG's rows counted (check_png_rows), and
    the image decoded from those bytes: one read of the file for both (without it Pillow reads the header only)."""
    from PIL import Image

    def unreadable(error: Exception) -> UsageError:
        return UsageError(f"{path}: not a readable image ({error}): remove or replace it")

    source: Path | io.BytesIO = path
    if whole:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise unreadable(error) from None
        if path.suffix.lower() == ".png":
            check_png_rows(path, data)
        source = io.BytesIO(data)
    try:
        with Image.open(source) as image:
            yield image
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise unreadable(error) from None


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
    paths, others, skipped = image_files(root)
    if others:
        shown = ", ".join(shortened(p.relative_to(root)) for p in others[:5]) + (", ..." if len(others) > 5 else "")
        log.info("%s: skipped %d file%s (%s)", root, len(others),
                 " that is not an image" if len(others) == 1 else "s that are not images", shown)
    if skipped:
        shown = ", ".join(f"{shortened(p.relative_to(root))}: {why}" for p, why in skipped[:5]) + (
            ", ..." if len(skipped) > 5 else "")
        log.warning("%s: skipped %d entr%s that %s no readable file or folder (%s)", root, len(skipped),
                    "y" if len(skipped) == 1 else "ies", "is" if len(skipped) == 1 else "are", shown)
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
        with opened(path, whole=True) as image:
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


def check_png_rows(path: Path, data: bytes) -> None:
    """A UsageError when the PNG ``data`` of ``path`` (not interlaced) holds fewer rows than its header declares:
    Pillow fills the missing rows with black without a word (a file cut short in a copy, its compressed stream
    ended early)."""
    import struct
    import zlib

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
