"""Your own images: folders of image files and .npy/.npz arrays, every bad-data case one line."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vae.data.arrays import read_array
from pyro_vae.data.datasets import load_dataset
from pyro_vae.data.images import read_folder
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


def test_a_folder_split_into_train_and_test_keeps_its_split(tmp_path, caplog):
    # the photo benchmark's layout: test images from photos never trained on, so a shuffle must not mix them
    train = write_pngs(tmp_path / "photos" / "train", n=15, classes=("sky", "street"), seed=1)
    test = write_pngs(tmp_path / "photos" / "test", n=3, classes=("street",), seed=2)
    dataset = load_dataset("folder", tmp_path / "photos", seed=5)
    assert len(dataset.train) + len(dataset.valid) == 30 and len(dataset.test) == 3
    expected = torch.from_numpy(test.transpose(0, 3, 1, 2).reshape(3, -1)).float() / 255
    assert torch.equal(dataset.test, expected)  # the test folder's images, in its order, none of train's
    rows = {tuple(row.tolist()) for row in torch.cat([dataset.train, dataset.valid])}
    assert rows == {tuple(r) for r in (torch.from_numpy(train.transpose(0, 3, 1, 2).reshape(30, -1)).float() / 255)
                    .tolist()}
    # classes by name across the two folders: test's only class is "street", label 1 of ("sky", "street")
    assert dataset.classes == ("sky", "street") and dataset.labels["test"].tolist() == [1, 1, 1]
    (tmp_path / "photos" / "extra").mkdir()  # a third folder: one folder of classes, shuffled as before
    write_pngs(tmp_path / "photos" / "extra", n=3, classes=None)
    shuffled = load_dataset("folder", tmp_path / "photos")
    assert shuffled.classes == ("extra", "test", "train") and len(shuffled.test) == (30 + 3 + 3) // 6


def test_the_class_names_of_a_folder_reach_the_dataset_and_an_array_has_a_summary_line(tmp_path, caplog):
    write_pngs(tmp_path / "images")
    assert load_dataset("folder", tmp_path / "images").classes == ("cats", "dogs")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", train=rng.integers(0, 256, (24, 4, 4, 3), dtype=np.uint8),
             test=rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8), train_labels=np.arange(24) % 3,
             test_labels=np.arange(6) % 3)
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        load_dataset("array", tmp_path / "d.npz")
    assert f"{tmp_path / 'd.npz'}: 30 images of 3x4x4 (24 train, 6 test) in 3 classes" in caplog.text


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
    (lambda root: (root / "cut.png").write_bytes(_png_bytes()[:60]),
     "cut.png: not a whole image: it holds 0 of the 30 rows"),
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
    (np.zeros((10, 0, 4), np.uint8), r"holds no images, or images of no pixels \(shape \(10, 1, 0, 4\)\)"),
    (np.zeros((3, 4, 4)), "3 images are too few to split .*: give at least 7"),  # said 12, and took 6 to 11
    (np.zeros((6, 4, 4)), "6 images are too few to split .*each at least one.*: give at least 7"),  # 0 validation
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
    with pytest.raises(UsageError, match="bad.npy: not a .npy or .npz file"):
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


def png_of_rows(path, width, height, rows):
    """An 8-bit RGB PNG whose header declares ``height`` rows and whose compressed stream, whole and valid, holds
    ``rows`` of them: the file a copy cut short leaves, which Pillow reads with the rest black."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(range(3 * width)) for _ in range(rows))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_image_modes_are_scaled_by_their_true_range_or_refused(tmp_path, caplog):
    # 16-bit grey: Pillow's convert clipped it at 255 (mean 0.998 for data of mean 0.5); now k / 257, rounded
    (tmp_path / "deep").mkdir()
    values = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    for i, name in enumerate(("little.png", "big.tif")):
        image = Image.fromarray(values)
        if i:  # a big-endian 16-bit TIFF became all 1.0
            image = Image.frombytes("I;16B", (8, 8), values.astype(">u2").tobytes())
        image.save(tmp_path / "deep" / name)
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        deep = read_folder(tmp_path / "deep")
    expected = torch.from_numpy(np.rint(values / 257).reshape(1, -1)).float() / 255
    assert torch.equal(deep.x, expected.expand(2, -1)) and "2 16-bit grey images scaled to 8 bits" in caplog.text
    # float pixels (a float TIFF in [0, 1] became all 0) have no range to scale by: refused, naming the file
    (tmp_path / "float").mkdir()
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "float" / "f.tif")
    with pytest.raises(UsageError, match=r"f.tif: its pixels are floating-point values \(Pillow mode F\)"):
        read_folder(tmp_path / "float")


def test_a_png_cut_short_is_refused_not_filled_with_black(tmp_path):
    (tmp_path / "cut").mkdir()
    png_of_rows(tmp_path / "cut" / "whole.png", 8, 8, 8)
    assert read_folder(tmp_path / "cut").x.shape == (1, 3 * 8 * 8)
    png_of_rows(tmp_path / "cut" / "short.png", 8, 8, 1)
    with pytest.raises(UsageError, match=r"short.png: not a whole image: it holds 1 of the 8 rows its header declares"):
        read_folder(tmp_path / "cut")


def test_bool_complex_and_label_arrays(tmp_path):
    mask = np.random.default_rng(0).random((20, 4, 4)) > 0.5
    np.save(tmp_path / "mask.npy", mask)
    pixels, _ = read_array(tmp_path / "mask.npy")
    assert np.array_equal(pixels["all"][:, 0], mask.astype(np.float32))  # True is 1.0, not 1/255
    np.save(tmp_path / "complex.npy", np.full((20, 4, 4), 0.5 + 0.5j))
    with pytest.raises(UsageError, match="holds complex numbers"):
        read_array(tmp_path / "complex.npy")
    for labels, shown in ((np.full(20, 5 * 10**11), r"\[500000000000, 500000000000\]"),
                          (np.arange(20) - 1, r"\[-1, 18\]")):
        np.savez(tmp_path / "labelled.npz", images=mask, labels=labels)
        with pytest.raises(UsageError, match=f"labels of all must be class numbers 0-999, got values in {shown}"):
            read_array(tmp_path / "labelled.npz")


def test_links_are_followed_and_what_is_no_file_is_said(tmp_path, caplog):
    # a symlinked class folder lost 12 of 24 images; loops, broken links, /dev/zero and a FIFO went unsaid
    write_pngs(tmp_path / "elsewhere", n=12, classes=("dogs",))
    root = tmp_path / "images"
    write_pngs(root, n=12, classes=("cats",))
    (root / "dogs").symlink_to(tmp_path / "elsewhere" / "dogs")  # a linked class folder: followed
    (root / "cats" / "loop").symlink_to(root / "cats")  # a link back: read once
    (root / "cats" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "cats" / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(root / "cats" / "pipe.png")
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        images = read_folder(root)
    assert len(images.x) == 24 and images.classes == ("cats", "dogs")
    for said in ("skipped 4 entries that are no readable file or folder", "cats/gone.png: a broken link",
                 "cats/loop: a link to a folder already read", "cats/pipe.png: a FIFO",
                 "cats/zero.png: a device or socket, not a file"):
        assert said in caplog.text, said


def test_a_folder_nested_deeper_than_python_recurses_is_read(tmp_path):
    # 1,100 nested folders were a RecursionError
    deep = tmp_path / "deep"
    deep.mkdir()
    folder = deep
    for _ in range(1100):  # one level at a time: pathlib's mkdir(parents=True) recurses too
        folder = folder / "d"
        folder.mkdir()
    write_pngs(folder, n=2, classes=None)
    try:
        assert len(read_folder(deep).x) == 2
    finally:  # bottom up, one level at a time: shutil.rmtree (pytest's clean-up of old tmp_paths) recurses
        for png in folder.glob("*.png"):
            png.unlink()
        while folder != tmp_path:
            folder.rmdir()
            folder = folder.parent


def test_a_path_beyond_path_max_is_named_among_the_skipped_and_the_rest_is_read(tmp_path, caplog):
    """A path longer than the system's PATH_MAX (4,096 bytes on Linux) was a traceback; it is skipped, said
    in one warning that names why (shortened: the path itself is thousands of characters), and the rest is read."""
    root = tmp_path / "images"
    write_pngs(root, n=12, classes=None)
    here = os.getcwd()
    try:  # relative steps: no absolute path this long can be made or opened
        os.chdir(root)
        for _ in range(25):
            os.mkdir("x" * 200)
            os.chdir("x" * 200)
        write_pngs(Path("."), n=2, classes=None)
        os.chdir(here)
        with caplog.at_level(logging.INFO, logger="pyro_vae"):
            assert len(read_folder(root).x) == 12
        warning = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        assert len(warning) == 1 and "a path longer than the system allows" in warning[0]
        assert len(warning[0]) < 400, warning[0]
    finally:  # bottom up, by relative steps: shutil.rmtree cannot open these paths
        os.chdir(root)
        for _ in range(24):
            os.chdir("x" * 200)
        os.chdir("x" * 200)
        for png in Path(".").glob("*.png"):
            png.unlink()
        for _ in range(25):
            os.chdir("..")
            os.rmdir("x" * 200)
        os.chdir(here)


def test_an_npz_with_an_object_or_a_damaged_member_is_one_line(tmp_path):
    import zipfile

    images = np.zeros((12, 4, 4), np.uint8)
    np.savez(tmp_path / "objects.npz", train=images, test=np.array([{"not": "pixels"}] * 3, dtype=object))
    with pytest.raises(UsageError, match=r"member 'test' is an array of Python objects, which is not read"):
        read_array(tmp_path / "objects.npz")
    np.savez_compressed(tmp_path / "damaged.npz", train=np.arange(12 * 16, dtype=np.uint8).reshape(12, 4, 4),
                        test=images)
    data = bytearray((tmp_path / "damaged.npz").read_bytes())
    with zipfile.ZipFile(tmp_path / "damaged.npz") as archive:
        info = archive.getinfo("train.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the member's deflated bytes
    data[start + 5:start + 25] = bytes(20)
    (tmp_path / "damaged.npz").write_bytes(bytes(data))
    with pytest.raises(UsageError, match=r"member 'train' is damaged"):
        read_array(tmp_path / "damaged.npz")


def test_an_array_file_too_large_for_memory_is_refused_from_its_header_before_it_is_read(tmp_path, monkeypatch):
    """An .npy header declaring 1e12 bytes, a sparse 40 GB .npy and a .npz zip bomb (6 MB decompressed to 6 GB
    over 64 s) failed late, as "out of memory" naming no file. The sizes are in the header and the zip's
    entries: refused before any pixel is read. (Memory is made 1 MB here, so that the files stay small.)"""
    import pyro_vae.resources

    with open(tmp_path / "lying.npy", "wb") as f:  # a header of 1e12 bytes over 160 of data
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (62500000000, 4, 4)})
        f.write(bytes(160))
    with pytest.raises(UsageError, match=r"lying.npy: its header declares 1,000,000,000,000 bytes of uint8 pixels "
                                         r"\(62500000000, 4, 4\), and the file holds 160: it is truncated or damaged"):
        read_array(tmp_path / "lying.npy")
    monkeypatch.setattr(pyro_vae.resources, "available_bytes", lambda device: 2**20)
    np.save(tmp_path / "large.npy", np.zeros((1000, 16, 16), np.uint8))  # 256 kB read, 1.3 MB with its floats
    np.savez_compressed(tmp_path / "bomb.npz", train=np.zeros((4000, 16, 16), np.uint8))  # 1 MB in 1 kB
    assert (tmp_path / "bomb.npz").stat().st_size < 10_000
    for name in ("large.npy", "bomb.npz"):
        with pytest.raises(UsageError, match=rf"{name} \(its pixels, read and as floats\) needs at least .* of memory, "
                                             r"and cpu has 0.0 GB free: save fewer or smaller images"):
            read_array(tmp_path / name)


def test_an_array_of_python_objects_or_an_array_path_that_is_no_file_is_one_line_that_says_so(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(UsageError) as error:  # numpy's "allow_pickle=False" was printed as "--allow-pickle"
        read_array(tmp_path / "objects.npy")
    assert "an array of Python objects, which is not read (no pickles)" in str(error.value)
    assert "allow" not in str(error.value)
    os.mkfifo(tmp_path / "pipe.npy")
    for path, kind in ((tmp_path / "pipe.npy", "a FIFO"), (Path("/dev/zero"), "a device")):  # were "no such file"
        with pytest.raises(UsageError, match=f"{path} is {kind}, not a file: pass a regular file"):
            read_array(path)


def test_a_folder_that_cannot_be_listed_is_named_among_the_skipped_and_the_rest_is_read(tmp_path, monkeypatch,
                                                                                        caplog):
    """--data-dir /proc or / was a PermissionError traceback (folders of other processes cannot be listed). Such a
    folder is skipped, named with its reason in the one warning, and the rest is read. (Root lists any folder:
    os.scandir stands in, refusing one.)"""
    import pyro_vae.data.images as images_module

    root = tmp_path / "images"
    write_pngs(root, n=12, classes=("cats", "dogs"))
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "dogs":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(images_module.os, "scandir", scandir)
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        images = read_folder(root)
    assert len(images.x) == 12 and images.classes == ("cats",)  # of 24
    assert "dogs: an unreadable folder (Permission denied)" in caplog.text
    # and a folder of the system's, as --data-dir, ends in one line, not a traceback
    with pytest.raises(UsageError, match="/proc/sys/fs: no image files"):
        read_folder(Path("/proc/sys/fs"))
