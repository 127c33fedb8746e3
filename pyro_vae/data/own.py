"""Your own images as a Dataset: a folder of image files, or a .npy/.npz array (images.py reads and checks them)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pyro_vae.data.arrays import array_hash, read_array
from pyro_vae.data.images import Images, read_folder, split_folders
from pyro_vae.data.splits import Dataset, hold_out, shuffled_hold_out
from pyro_vae.errors import UsageError

log = logging.getLogger("pyro_vae")


def load_folder(data_dir: str | Path, download: bool, seed: int, channels: int | None = None,
                image_size: tuple[int, int] | None = None) -> Dataset:
    """Every image file under the folder ``data_dir`` (images.read_folder), shuffled with ``seed`` and split three
    ways (shuffled_hold_out); class subfolders give labels. A folder whose subfolders are ``train`` and ``test``
    (images.split_folders) keeps that split: the validation set is held out of train, the test images are its own."""
    split = split_folders(data_dir)
    if split is None:
        images = read_folder(data_dir, channels, image_size)
        return shuffled_hold_out("folder", images.x, images.labels, seed, images.image_shape, images.sha256,
                                 classes=images.classes)
    train, test = (read_folder(path, channels, image_size) for path in split)
    if test.image_shape != train.image_shape:
        raise UsageError(f"{split[1]}: its images are {'x'.join(map(str, test.image_shape))} and those of "
                         f"{split[0]} {'x'.join(map(str, train.image_shape))}: pass `image_size=H,W` (and "
                         "`channels`) to convert both alike")
    classes = tuple(sorted(set(train.classes) | set(test.classes)))

    def relabelled(images: Images) -> Tensor | None:
        if images.labels is None or not classes:
            return None
        return torch.tensor([classes.index(images.classes[i]) for i in images.labels.tolist()], dtype=torch.long)

    labels = relabelled(train), relabelled(test)
    if (labels[0] is None) != (labels[1] is None):
        log.info("%s: class subfolders in only one of train and test: the images are used without labels", data_dir)
        labels, classes = (None, None), ()
    order = torch.randperm(len(train.x), generator=torch.Generator().manual_seed(seed))
    x, y = train.x[order], None if labels[0] is None else labels[0][order]
    sha256 = hashlib.sha256((train.sha256 + test.sha256).encode()).hexdigest()
    return hold_out("folder", x, y, test.x, labels[1], train.image_shape, sha256, classes)


def load_array(data_dir: str | Path, download: bool, seed: int) -> Dataset:
    """The images of the .npy or .npz file ``data_dir`` (arrays.read_array): an npz's train and test arrays, the
    validation set held out of train; one array shuffled with ``seed`` and split three ways."""
    pixels, labels = read_array(data_dir)
    _array_summary(data_dir, pixels, labels)
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


def _array_summary(path: str | Path, pixels: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> None:
    """The line read_folder logs for a folder, for an array: how many images of which shape, in how many classes."""
    first = pixels[next(iter(pixels))]
    splits = "" if "all" in pixels else " (" + ", ".join(f"{len(v)} {k}" for k, v in pixels.items()) + ")"
    count = len(set().union(*(set(np.unique(v).tolist()) for v in labels.values()))) if labels else 0
    log.info("%s: %d images of %s%s%s", path, sum(len(v) for v in pixels.values()), "x".join(map(str, first.shape[1:])),
             splits, f" in {count} classes" if count else "")
