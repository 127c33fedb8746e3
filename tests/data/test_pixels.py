import logging

import pytest
import torch

from pyro_vae.config import ModelConfig
from pyro_vae.data.datasets import Dataset
from pyro_vae.data.pixels import continuous_pixels, dequantize, likelihood_for, prepare_data, resolve_binarize
from pyro_vae.errors import UsageError
from pyro_vae.models.likelihoods import Bernoulli, ContinuousBernoulli, Gaussian, make_likelihood


@pytest.mark.parametrize(
    "binarize, likelihood, binary, expected",
    [
        ("auto", "bernoulli", False, "dynamic"),
        ("auto", "bernoulli", True, "none"),
        ("auto", "continuous-bernoulli", False, "none"),
        ("auto", "gaussian", False, "none"),
        ("threshold", "bernoulli", False, "threshold"),
        ("none", "bernoulli", False, "none"),
    ],
)
def test_resolve_binarize(binarize, likelihood, binary, expected):
    assert resolve_binarize(binarize, make_likelihood(ModelConfig(likelihood=likelihood)), binary) == expected


@pytest.mark.parametrize(
    "name, binarize, binary, grey_targets, warned",
    [
        ("bernoulli", "none", False, True, True),  # pytorch/examples' BCE on grey pixels: said so
        ("bernoulli", "auto", False, False, False),  # dynamic binarization
        ("bernoulli", "none", True, False, False),  # binary data: a true Bernoulli likelihood
        ("continuous-bernoulli", "none", False, False, False),
    ],
)
def test_likelihood_for_decides_grey_targets_once(name, binarize, binary, grey_targets, warned, caplog):
    with caplog.at_level(logging.WARNING, logger="pyro_vae"):
        likelihood, _ = likelihood_for(ModelConfig(likelihood=name), binarize, binary)
    assert likelihood.name == name and getattr(likelihood, "grey_targets", False) == grey_targets
    assert ("not a normalized likelihood" in caplog.text) == warned


def test_unknown_binarization_is_a_clear_error():
    with pytest.raises(UsageError, match="unknown binarization"):
        resolve_binarize("otsu", Bernoulli(), False)
    # thresholding was once called "static", a name the literature uses for a fixed random draw
    with pytest.raises(UsageError, match="now called 'threshold'.*`dataset=binarized-mnist`"):
        resolve_binarize("static", Bernoulli(), False)


def grey_dataset(low=0.0, high=1.0):
    g = torch.Generator().manual_seed(0)
    x = low + (high - low) * torch.rand(40, 16, generator=g)
    return Dataset("grey", x[:25], x[25:30], x[30:], (1, 4, 4))


def test_threshold_binarization_thresholds_every_split():
    ds = grey_dataset()
    data = prepare_data(ds, Bernoulli(), "threshold", seed=0)
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(data, split), (getattr(ds, split) > 0.5).float())


def test_dynamic_binarization_fixes_validation_and_test_sets_by_seed():
    ds = grey_dataset()
    a, b = prepare_data(ds, Bernoulli(), "dynamic", seed=5), prepare_data(ds, Bernoulli(), "dynamic", seed=5)
    for split in ("valid", "test"):
        x = getattr(a, split)
        assert torch.equal(x, getattr(b, split)) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a.train, ds.train)  # kept grey: binarized per minibatch
    assert a.image_shape == (1, 4, 4)


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


def test_dequantization_fills_each_8_bit_bin():
    k = torch.arange(256.0).repeat(40)
    x = dequantize(k / 255, torch.Generator().manual_seed(0))
    # (k + u)/256 with u in [0, 1): each value lies in its own bin [k/256, (k+1)/256)
    assert bool(((x >= k / 256) & (x < (k + 1) / 256)).all())
    u = x * 256 - k
    assert abs(u.mean() - 0.5) < 0.02  # uniform: mean 1/2, SE 0.0029 over 10,240 draws


def test_dequantize_refuses_binary_likelihoods_and_non_8_bit_data():
    with pytest.raises(UsageError, match="`dequantize`.*continuous"):
        prepare_data(grey_dataset(), Bernoulli(), "none", seed=0, dequantize_pixels=True)
    with pytest.raises(UsageError, match="8-bit pixels"):
        prepare_data(grey_dataset(), ContinuousBernoulli(), "none", seed=0, dequantize_pixels=True)
    ds = Dataset("8bit", *(torch.randint(0, 256, (n, 16)).float() / 255 for n in (20, 5, 5)), (1, 4, 4))
    a, b = (prepare_data(ds, ContinuousBernoulli(), "none", seed=3, dequantize_pixels=True) for _ in range(2))
    assert torch.equal(a.test, b.test) and not torch.equal(a.test, ds.test)  # fixed by the seed
    assert not torch.equal(a.minibatch(torch.arange(20)), a.minibatch(torch.arange(20)))  # fresh per minibatch


def eight_bit_dataset(binary=False):
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2 if binary else 256, (30, 12), generator=generator).float() / (1 if binary else 255)
    return Dataset("binarized" if binary else "grey", x[:20], x[20:25], x[25:], (1, 3, 4))


@pytest.mark.parametrize("likelihood", ["continuous-bernoulli", "gaussian"])
def test_a_density_on_binary_pixels_is_refused(likelihood):
    """--likelihood continuous-bernoulli --binarize dynamic reported a test ELBO of +1282.6: a density on [0, 1]
    at binary points is no probability of binary images."""
    chosen = make_likelihood(ModelConfig(likelihood=likelihood))
    with pytest.raises(UsageError, match="is a density on .* `binarize=dynamic` makes the pixels binary.*"
                                         "`likelihood=bernoulli`, or keep the grey pixels with `binarize=none`"):
        continuous_pixels(chosen, "dynamic", eight_bit_dataset(), False)
    with pytest.raises(UsageError, match="binarized: .* these pixels are binary: .*use `likelihood=bernoulli`$"):
        continuous_pixels(chosen, "none", eight_bit_dataset(binary=True), False)


def test_a_density_on_8_bit_pixels_dequantizes_them_and_says_so(caplog):
    """--likelihood gaussian on 8-bit MNIST without --dequantize reported log p^ = +424.6 nats: no bound on the
    probability of the images. Real-valued data stay as they are; the Bernoulli keeps what it was given."""
    gaussian = make_likelihood(ModelConfig(likelihood="gaussian"))
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        assert continuous_pixels(gaussian, "none", eight_bit_dataset(), False)
    assert "dequantizing the 8-bit pixels" in caplog.text and "gaussian" in caplog.text
    real = Dataset("real", *(torch.rand(n, 12) for n in (20, 5, 5)), (1, 3, 4))
    assert not continuous_pixels(gaussian, "none", real, False)
    assert continuous_pixels(gaussian, "none", real, True)
    bernoulli = make_likelihood(ModelConfig())
    assert not continuous_pixels(bernoulli, "dynamic", eight_bit_dataset(), False)
