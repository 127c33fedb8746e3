import math

import pytest
import torch
import torch.distributions as td

from pyro_vae.config import ModelConfig
from pyro_vae.errors import UsageError
from pyro_vae.models import likelihoods
from pyro_vae.models.likelihoods import LIKELIHOODS, Bernoulli, ContinuousBernoulli, Gaussian, make_likelihood

# Float32 sums of 10 log-densities: agreement to 1e-5 relative is rounding, not approximation.
RTOL = 1e-5


def test_bernoulli_matches_torch_and_uses_logits():
    out = torch.randn(3, 4, 10) * 5
    x = torch.bernoulli(torch.rand(4, 10))
    expected = td.Bernoulli(logits=out).log_prob(x).sum(-1)
    d = Bernoulli().distribution(out)
    assert d.event_shape == (10,) and d.batch_shape == (3, 4)
    torch.testing.assert_close(d.log_prob(x), expected, rtol=RTOL, atol=0)


def test_bernoulli_stays_finite_for_confident_logits():
    # log(sigmoid(-200)) underflows to -inf in float32; the logits form gives -200 exactly
    d = Bernoulli().distribution(torch.tensor([[-200.0, 200.0]]))
    log_p = d.log_prob(torch.tensor([[1.0, 1.0]]))
    assert torch.isfinite(log_p).all()
    assert log_p.item() == pytest.approx(-200.0, abs=1e-3)


def test_grey_bernoulli_is_binary_cross_entropy():
    out, x = torch.randn(4, 10), torch.rand(4, 10)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
    torch.testing.assert_close(Bernoulli(grey_targets=True).distribution(out).log_prob(x), -bce, rtol=RTOL, atol=1e-6)


def test_continuous_bernoulli_is_the_data_term_plus_the_normalizer():
    # within torch's stable range (|eta| < 15) our density equals torch's, to float32 rounding
    out = torch.randn(4, 10) * 3
    x = torch.rand(4, 10)
    expected = td.ContinuousBernoulli(logits=out).log_prob(x).sum(-1)
    torch.testing.assert_close(ContinuousBernoulli().distribution(out).log_prob(x), expected, rtol=RTOL, atol=1e-5)


def test_gaussian_reads_mean_and_log_variance_with_a_floor():
    loc, log_var = torch.randn(4, 10), torch.randn(4, 10)
    out = torch.cat([loc, log_var], dim=-1)  # (4, 20): params_per_pixel = 2
    floor = 0.05
    d = Gaussian(scale_floor=floor).distribution(out)
    x = torch.randn(4, 10)
    expected = td.Normal(loc, floor + torch.exp(0.5 * log_var)).log_prob(x).sum(-1)
    torch.testing.assert_close(d.log_prob(x), expected, rtol=RTOL, atol=1e-5)
    # however negative the log-variance, each pixel's density stays below the floor's peak
    collapsed = Gaussian(scale_floor=floor).distribution(torch.cat([loc, torch.full_like(log_var, -1e4)], -1))
    assert (collapsed.log_prob(loc) <= 10 * -math.log(floor * math.sqrt(2 * math.pi)) + 1e-4).all()


@pytest.mark.parametrize(
    "likelihood, x, message",
    [
        (Bernoulli(), torch.tensor([[0.0, 0.5]]), "binary pixels"),
        (Bernoulli(grey_targets=True), torch.tensor([[0.0, 1.5]]), "[0, 1]"),
        (ContinuousBernoulli(), torch.tensor([[-0.1, 0.5]]), "[0, 1]"),
        (Gaussian(), torch.tensor([[float("nan"), 0.5]]), "finite"),
    ],
)
def test_out_of_support_data_is_a_clear_error(likelihood, x, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        likelihood.check_support(x)


@pytest.mark.parametrize("bad", [0.5, -1.0, 2.0, float("nan"), float("inf")])
def test_support_checks_see_every_pass(monkeypatch, bad):
    monkeypatch.setattr(likelihoods, "CHECK_CHUNK", 7)  # 3 x 5 values in passes of 7: the bad one is in the last
    binary = torch.tensor([[0.0, 1.0, -0.0, 1.0, 0.0]] * 3)
    grey = torch.rand(3, 5)
    all_binary, in_unit_interval = likelihoods.all_binary, likelihoods.in_unit_interval
    assert all_binary(binary) and in_unit_interval(binary) and in_unit_interval(grey) and not all_binary(grey)
    binary[2, 4] = grey[2, 4] = bad
    assert not all_binary(binary)
    assert in_unit_interval(grey) == (bad == 0.5)
    assert all_binary(torch.zeros(0, 5)) and in_unit_interval(torch.zeros(0, 5))  # nothing to refuse


def test_in_support_data_passes():
    Bernoulli().check_support(torch.tensor([[0.0, 1.0]]))
    ContinuousBernoulli().check_support(torch.tensor([[0.0, 0.3, 1.0]]))
    Gaussian().check_support(torch.tensor([[-3.0, 7.0]]))


def test_make_likelihood_by_name():
    assert set(LIKELIHOODS) == {"bernoulli", "continuous-bernoulli", "gaussian", "correlated-gaussian"}
    for name, cls in LIKELIHOODS.items():
        assert isinstance(make_likelihood(ModelConfig(likelihood=name), image_shape=(3, 2, 2)), cls)
    assert make_likelihood(ModelConfig(likelihood="gaussian", scale_floor=0.2)).scale_floor == 0.2
    assert make_likelihood(ModelConfig(), grey_targets=True).grey_targets
    with pytest.raises(UsageError, match="unknown likelihood"):
        make_likelihood(ModelConfig(likelihood="poisson"))


def test_the_correlated_gaussian_reads_three_maps_for_colour_and_two_for_grey():
    from pyro_vae.models.likelihoods import CorrelatedGaussian

    colour = CorrelatedGaussian((3, 2, 2), scale_floor=0.01)
    assert colour.params_per_pixel == 3 and CorrelatedGaussian((1, 2, 2)).params_per_pixel == 2
    torch.manual_seed(0)
    out = torch.randn(5, 3 * 12)  # loc, log diag^2, below-diagonal entries: a map of C*H*W = 12 each
    x = torch.rand(5, 12)
    d = colour.distribution(out)
    assert d.batch_shape == (5,) and d.event_shape == (12,) and torch.equal(d.mean, out[:, :12])
    # with the entries below the diagonal at 0 it is the Gaussian with the same loc and log-variance
    uncorrelated = torch.cat([out[:, :24], torch.zeros(5, 12)], dim=1)
    assert torch.allclose(colour.distribution(uncorrelated).log_prob(x),
                          Gaussian(scale_floor=0.01).distribution(out[:, :24]).log_prob(x), rtol=1e-5)
    bias = colour.output_bias(x)
    assert bias.shape == (36,) and torch.equal(bias[:24], Gaussian(scale_floor=0.01).output_bias(x)) and \
        not bias[24:].any()
    with pytest.raises(UsageError, match="needs the images' shape"):
        make_likelihood(ModelConfig(likelihood="correlated-gaussian"))
    with pytest.raises(UsageError, match="grey or RGB images .* have 4"):
        CorrelatedGaussian((4, 2, 2))
    with pytest.raises(UsageError, match="needs finite data"):
        colour.check_support(torch.full((1, 12), float("nan")))
