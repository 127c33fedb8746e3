"""The files datasets come in, read and checked: IDX (MNIST, Fashion-MNIST) and .amat (binarized
MNIST). A file that exists but is damaged is a UsageError that names it and says what is wrong,
never mistaken for a missing one.
"""

from __future__ import annotations

import importlib
import math
import pickle
import stat
import struct
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from pyro_vae.errors import UsageError

IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
             0x0E: "float64"}  # LeCun's IDX format: the third byte of the header


# what CIFAR-10's python batches hold: NumPy arrays (pickled by protocol 2 under Python 2, or by any protocol since)
# and bytes; a pickle that names anything else could run code when loaded
PICKLED_ARRAYS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds dicts, lists, strings, numbers, bytes and NumPy arrays, and refuses any other
    class or function a pickle names (plain pickle.load calls whatever the file names: code execution)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in PICKLED_ARRAYS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a file of arrays never holds (loading it "
                                         "could run code; it was not loaded)")
        if module.startswith("numpy.core"):  # NumPy 2 keeps NumPy 1's private modules under numpy._core
            module = module.replace("numpy.core", "numpy._core", 1)
        return getattr(importlib.import_module(module), name)


def load_pickled_arrays(f: IO[bytes]) -> Any:
    """A pickle of arrays (CIFAR-10's batches), read without running what it names: pickle.UnpicklingError for a
    pickle that names any class or function but NumPy's array constructors."""
    return _ArraysOnly(f, encoding="latin1").load()


def damaged(path: Path, what: str, remedy: str) -> UsageError:
    return UsageError(f"damaged data file {path}: {what}; {remedy}")


def regular_file(path: Path, remedy: str) -> int:
    """The size of the regular file at ``path``; a UsageError naming it when it is a folder, a FIFO, a device
    or a socket (reading one could hang or never end), or cannot be opened (a symlink loop, no permission)."""
    try:
        status = path.stat()
    except OSError as error:
        raise damaged(path, f"it cannot be opened ({error.strerror})", remedy) from None
    if stat.S_ISDIR(status.st_mode):
        raise damaged(path, "it is a folder, not a file", remedy)
    if not stat.S_ISREG(status.st_mode):
        raise damaged(path, "it is not a regular file (a FIFO, a device or a socket)", remedy)
    return status.st_size


def read_bytes(path: Path, remedy: str, at_most: int | None = None) -> bytes:
    """The bytes of a regular file, refused unread when it holds more than ``at_most``."""
    size = regular_file(path, remedy)
    if at_most is not None and size > at_most:
        raise damaged(path, f"it is {size:,} bytes, more than such a file can be ({at_most:,})", remedy)
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror}); {remedy}") from None


def read_idx(path: Path, shape: tuple[int | None, ...], remedy: str) -> np.ndarray:
    """The unsigned bytes of an IDX file whose dimensions match ``shape`` (None: any size), e.g.
    (None, 28, 28) for images, (None,) for labels. The header and the file's size are checked before the
    body is read (a 60 GB file is refused at once)."""
    size = regular_file(path, remedy)
    try:
        with open(path, "rb") as f:
            head = f.read(4 + 4 * 255)  # the longest header there can be
            header, dims = _idx_header(path, head, size, shape, remedy)
            expected_size = header + math.prod(dims)
            f.seek(0)
            data = f.read(expected_size + 1)  # one byte more: a file that grew since it was measured shows it
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror}); {remedy}") from None
    if len(data) != expected_size:  # changed since it was measured
        raise damaged(path, f"it is {len(data):,} bytes, and its header says {expected_size:,}", remedy)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _idx_header(path: Path, head: bytes, size: int, shape: tuple[int | None, ...],
                remedy: str) -> tuple[int, tuple[int, ...]]:
    """The header's length in bytes and the array's dimensions, from the first bytes ``head`` of an IDX file,
    checked against ``shape`` and against the file's ``size``."""
    if len(head) < 4 or head[:2] != b"\0\0":
        raise damaged(path, "it does not start with an IDX header (0x00 0x00, type, dimensions)", remedy)
    kind, ndim = head[2], head[3]
    if kind != 0x08:
        raise damaged(path, f"it holds {IDX_TYPES.get(kind, f'type 0x{kind:02x}')} values, and MNIST-format files "
                      "hold unsigned bytes (type 0x08)", remedy)
    header = 4 + 4 * ndim
    if len(head) < header:
        raise damaged(path, f"it ends inside its header ({len(head)} bytes)", remedy)
    dims = struct.unpack(f">{ndim}I", head[4:header])
    if ndim != len(shape) or any(want is not None and got != want for got, want in zip(dims, shape)):
        expected = " x ".join("N" if want is None else str(want) for want in shape)
        raise damaged(path, f"its array is {' x '.join(map(str, dims))}, and this file should hold {expected}",
                      remedy)
    if not math.prod(dims):
        raise damaged(path, f"its array is {' x '.join(map(str, dims))}: it holds nothing", remedy)
    expected_size = header + math.prod(dims)
    if size != expected_size:
        raise damaged(path, f"it is {size:,} bytes, and its header ({' x '.join(map(str, dims))}) says "
                      f"{expected_size:,}: {'truncated' if size < expected_size else 'extra bytes at the end'}", remedy)
    return header, dims


ONE_SPACE, ONE_NEWLINE = ord("1") + 256 * ord(" "), ord("1") + 256 * ord("\n")  # "1 ", "1\n" read as <u2
AMAT_LINES = 2048  # lines per pass of read_amat: its temporaries stay in cache
AMAT_MAX_LINES = 100_000  # more than any binarized-MNIST file holds (50,000): a larger file is refused unread


def read_amat(path: Path, width: int = 784, remedy: str = "delete it and download it again") -> Tensor:
    """A binarized-MNIST .amat file: one image per line, ``width`` space-separated 0/1 values.
    (n, width) float32; a UsageError naming the file and line when it is not in that format.

    Larochelle's files lay every line out the same way, "v v ... v\\n" (2 * width bytes), so they
    are read as pairs of bytes, each value with the space or newline after it, AMAT_LINES lines at
    a time (faster than one pass over the whole file); any other spacing takes a general parse, about
    fifty times slower.
    """
    # at most AMAT_MAX_LINES lines of "v v ... v\n", with room for \r\n and doubled spaces
    text = np.frombuffer(read_bytes(path, remedy, at_most=4 * width * AMAT_MAX_LINES), dtype=np.uint8)
    if not len(text) or len(text) % (2 * width):
        return _parse_amat(text, path, width, remedy)
    pairs = text.view("<u2").reshape(-1, width)  # (n, width): value byte + 256 * separator byte
    images = torch.empty(pairs.shape)
    for start in range(0, len(pairs), AMAT_LINES):
        part = pairs[start : start + AMAT_LINES]
        # "0" is 0x30 and "1" 0x31: with its lowest bit set, a pair is "1 " (or "1\n") iff it held 0 or 1
        if not (((part[:, :-1] | 1) == ONE_SPACE).all() and ((part[:, -1] | 1) == ONE_NEWLINE).all()):
            return _parse_amat(text, path, width, remedy)
        images[start : start + AMAT_LINES] = torch.from_numpy((part & 1).astype(np.uint8))
    return images


def _parse_amat(text: np.ndarray, path: Path, width: int, remedy: str) -> Tensor:
    """read_amat for any whitespace: every byte checked, lines counted, the bad line named."""
    is_digit = (text == ord("0")) | (text == ord("1"))
    is_space = (text == ord(" ")) | (text == ord("\n")) | (text == ord("\r")) | (text == ord("\t"))
    if not (is_digit | is_space).all():
        position = int(np.argmin(is_digit | is_space))
        line = int((text[:position] == ord("\n")).sum()) + 1
        raise damaged(path, f"line {line} holds {chr(text[position])!r}, and a binarized-MNIST .amat file holds only "
                      "0/1 values separated by spaces", remedy)
    newlines = np.flatnonzero(text == ord("\n"))
    if len(text) and text[-1] != ord("\n"):
        newlines = np.append(newlines, len(text))  # a last line without its newline
    digits_before = np.concatenate([[0], np.cumsum(is_digit)])  # digits_before[p]: digits in text[:p]
    counts = np.diff(digits_before[np.concatenate([[0], newlines])])  # digits per line
    counts = counts[counts > 0]  # blank lines carry no image
    bad = np.flatnonzero(counts != width)
    joined = np.flatnonzero(is_digit[1:] & is_digit[:-1])  # "01" is one token, not two values
    if len(joined):
        bad = np.append(bad, (text[: joined[0]] == ord("\n")).sum())
    if len(counts) == 0 or len(bad):
        where = f"line {int(bad.min()) + 1} does not hold" if len(bad) else "it does not hold lines of"
        raise damaged(path, f"{where} {width} space-separated 0/1 values (truncated or corrupt?)", remedy)
    return torch.from_numpy(text[is_digit] - ord("0")).float().reshape(len(counts), width)
