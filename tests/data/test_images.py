"""Your own images: folders of image files and .npy/.npz arrays, every bad-data case one line."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vae.data.datasets import load_dataset
from pyro_vae.data.images import read_array, read_folder
from pyro_vae.errors import UsageError


def write_pngs(root, n=12, size=(40, 32), mode="RGB", classes=("cats", "dogs"), seed=0):
    """``n`` random images per class of ``size`` (H, W) in class subfolders (or directly in ``root`` without
    classes); returns their pixels as (N, H, W, C) uint8 in the order read_folder reads them."""
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    pixels = []
    for c in classes or ("",):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            array = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
            Image.fromarray(array if channels == 3 else array[..., 0], mode).save(root / c / f"{i:03d}.png")
            pixels.append(array)
    return np.stack(pixels)


def test_a_folder_of_rgb_pngs_in_class_subfolders(tmp_path, caplog):
    pixels = write_pngs(tmp_path / "images")
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        images = read_folder(tmp_path / "images")
    assert images.image_shape == (3, 40, 32) and images.classes == ("cats", "dogs")
    # pixels in C, H, W order, exactly the files' bytes / 255 (PNG is lossless)
    expected = torch.from_numpy(pixels.transpose(0, 3, 1, 2).reshape(24, -1)).float() / 255
    assert torch.equal(images.x, expected)
    assert images.labels.tolist() == [0] * 12 + [1] * 12
    assert "skipped 1 file that is not an image (notes.txt)" in caplog.text  # nothing skipped silently
    again = read_folder(tmp_path / "images")
    assert again.sha256 == images.sha256
    Image.fromarray(np.zeros((40, 32, 3), np.uint8)).save(tmp_path / "images" / "cats" / "000.png")
    assert read_folder(tmp_path / "images").sha256 != images.sha256  # a changed file changes the hash


def test_folder_channels_and_sizes(tmp_path, caplog):
    write_pngs(tmp_path / "grey", mode="L", classes=None, size=(20, 20))
    grey = read_folder(tmp_path / "grey")
    assert grey.image_shape == (1, 20, 20) and grey.labels is None
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        rgb = read_folder(tmp_path / "grey", channels=3)
    assert rgb.image_shape == (3, 20, 20) and "12 grey images converted to RGB" in caplog.text
    assert torch.equal(rgb.x.reshape(12, 3, -1)[:, 0], grey.x)  # grey copied to each channel
    # --image-size: resize so that the image covers H x W, then crop the centre
    resized = read_folder(tmp_path / "grey", image_size=(10, 8))
    assert resized.image_shape == (1, 10, 8)
    write_pngs(tmp_path / "grey", n=1, mode="L", classes=None, size=(24, 30), seed=1)  # 000.png now 24x30
    with pytest.raises(UsageError, match=r"the images are of 2 sizes, 20x20 \(11, e.g. 001.png\), 24x30 \(1, e.g. "
                                         r"000.png\): pass `image_size=H,W`"):
        read_folder(tmp_path / "grey")
    assert read_folder(tmp_path / "grey", image_size=(16, 16)).image_shape == (1, 16, 16)


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "no image files"),
    (lambda root: (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really"), "bad.png: not a readable image"),
    (lambda root: (root / "cut.png").write_bytes(_png_bytes()[:60]), "cut.png: not a readable image"),
])
def test_a_bad_folder_is_one_line_naming_the_file(tmp_path, make, message):
    root = tmp_path / "images"
    root.mkdir()
    make(root)
    with pytest.raises(UsageError, match=message) as error:
        read_folder(root)
    assert "\n" not in str(error.value)


def _png_bytes():
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.full((30, 30, 3), 7, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_folder_too_large_for_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    write_pngs(tmp_path / "images", n=2)
    monkeypatch.setattr("pyro_vae.resources.available_bytes", lambda device: 1000)
    with pytest.raises(UsageError, match=r"4 images of 3x40x32 pixels needs at least .* free: pass a smaller "
                                         r"`image_size`"):
        read_folder(tmp_path / "images")


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_an_array_in_any_of_three_layouts(tmp_path, layout, dtype):
    rng = np.random.default_rng(0)
    nchw = rng.integers(0, 256, (30, 1 if layout == "NHW" else 3, 6, 5), dtype=np.uint8)
    array = {"NHW": nchw[:, 0], "NHWC": nchw.transpose(0, 2, 3, 1), "NCHW": nchw}[layout]
    array = array if dtype == "uint8" else (array / 255).astype(dtype)
    np.save(tmp_path / "x.npy", array)
    pixels, labels = read_array(tmp_path / "x.npy")
    assert labels == {} and np.allclose(pixels["all"], nchw / 255, atol=1e-6)
    dataset = load_dataset("array", tmp_path / "x.npy", seed=1)
    assert dataset.image_shape == nchw.shape[1:] and len(dataset.test) == 5 and len(dataset.valid) == 4


def test_an_npz_with_train_test_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    train, test = (rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8) for n in (24, 6))
    np.savez(tmp_path / "d.npz", train=train, test=test, train_labels=np.arange(24) % 3, test_labels=np.arange(6) % 3)
    dataset = load_dataset("array", tmp_path / "d.npz")
    assert dataset.image_shape == (3, 4, 4) and len(dataset.train) == 20 and len(dataset.test) == 6
    assert torch.equal(dataset.test, torch.from_numpy(test.transpose(0, 3, 1, 2).reshape(6, -1)).float() / 255)
    assert dataset.labels["test"].tolist() == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("array, message", [
    (np.full((10, 4, 4), 1.5, np.float32), r"float pixels must lie in \[0, 1\], got values in \[1.5, 1.5\]"),
    (np.full((10, 4, 4), np.nan, np.float32), "holds NaN or infinite values"),
    (np.full((10, 4, 4), 300, np.int32), r"integer pixels must lie in 0-255, got values in \[300, 300\]"),
    (np.zeros((10, 16)), r"expected images as \(N, H, W\), \(N, H, W, C\) or \(N, C, H, W\)"),
    (np.zeros((10, 5, 4, 4)), r"with C = 1 or 3, got shape \(10, 5, 4, 4\)"),
    (np.zeros((0, 4, 4)), "holds no images"),
    (np.zeros((3, 4, 4)), "3 images are too few to split"),
    (np.array(["a", "b"]), "expected numbers"),
])
def test_a_bad_array_is_one_line(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(UsageError, match=message) as error:
        load_dataset("array", tmp_path / "x.npy")
    assert "\n" not in str(error.value)


def test_a_missing_or_damaged_array_file_is_one_line(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_dataset("array", tmp_path / "none.npy")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(UsageError, match="bad.npy: not a readable .npy or .npz file"):
        load_dataset("array", tmp_path / "bad.npy")
    np.savez(tmp_path / "two.npz", a=np.zeros((12, 4, 4)), b=np.zeros((12, 4, 4)))
    with pytest.raises(UsageError, match="expected arrays named train and test"):
        load_dataset("array", tmp_path / "two.npz")


def test_cifar10_reads_torchvisions_layout(tmp_path):
    """CIFAR-10's python pickles, as torchvision lays them out; tiny stand-ins written in the same format."""
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        batches[name] = {"data": rng.integers(0, 256, (6, 3072), dtype=np.uint8), "labels": list(range(6))}
        with open(folder / name, "wb") as f:
            pickle.dump(batches[name], f)
    dataset = load_dataset("cifar10", tmp_path, download=False)
    assert dataset.image_shape == (3, 32, 32) and len(dataset.train) + len(dataset.valid) == 30
    assert torch.equal(dataset.test, torch.from_numpy(batches["test_batch"]["data"]).float() / 255)
    (folder / "test_batch").write_bytes(b"damaged")
    with pytest.raises(UsageError, match="damaged data file .*test_batch"):
        load_dataset("cifar10", tmp_path, download=False)
    # the real batches, pickled by Python 2 (protocol 2, NumPy 1's module names, str data): read the same
    python2 = pickle.dumps(batches["test_batch"], protocol=2).replace(b"numpy._core.", b"numpy.core.")
    (folder / "test_batch").write_bytes(python2)
    assert torch.equal(load_dataset("cifar10", tmp_path, download=False).test, dataset.test)


class Payload:
    """What a hostile 'CIFAR-10 batch' holds: unpickling it calls Path.touch(marker)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_cifar10_batch_that_names_code_is_refused_without_running_it(tmp_path):
    """Plain pickle.load ran a __reduce__ payload from a data_batch file (issue 38): the batches are read by an
    unpickler that admits only NumPy's array constructors, and anything else is one line naming the file."""
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        batch = {"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0, 1]}
        if name == "data_batch_3":
            batch["payload"] = Payload(marker)
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UsageError, match=r"damaged data file .*data_batch_3: it is not a CIFAR-10 batch \(it names "
                                         r"\S+, which a file of arrays never holds"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not marker.exists()
    with pytest.raises(UsageError, match=r"cifar10: data_batch_1, .*test_batch not found in .*downloads are disabled"):
        load_dataset("cifar10", tmp_path / "elsewhere", download=False)
