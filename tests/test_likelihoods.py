import math

import mpmath
import pyro
import pytest
import torch
import torch.distributions as td

from pyro_vae.config import ModelConfig
from pyro_vae.errors import UsageError
from pyro_vae.likelihoods import (
    LIKELIHOODS,
    Bernoulli,
    ContinuousBernoulli,
    ContinuousBernoulliLogits,
    Gaussian,
    continuous_bernoulli_log_norm,
    make_likelihood,
)

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


# logits where the decoder of a trained continuous-Bernoulli VAE sits (54% of them beyond |15| on
# MNIST), the branch point of the series (0.1) and both sides of it, and far beyond
ETAS = [0.0, 1e-8, 1e-4, 0.05, 0.0999, 0.1, 0.1001, 0.5, 1.0, 3.0, 15.0, 16.0, 17.0, 20.0, 50.0, 88.0, 100.0, 1e4]


def log_norm_reference(eta: float) -> float:
    """log C(eta) = log(eta / tanh(eta / 2)) in 40-digit arithmetic: an outside reference."""
    mpmath.mp.dps = 40
    eta = mpmath.mpf(eta)
    return float(mpmath.log(2) if eta == 0 else mpmath.log(eta / mpmath.tanh(eta / 2)))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 4e-7), (torch.float64, 1e-12)])
def test_continuous_bernoulli_normalizer_matches_a_high_precision_reference(dtype, tol):
    # tolerances: a few float32 ulps of log C <= 10 (measured 1.3e-7); float64: the series'
    # truncation below |eta| = 0.1 (< 3e-13) and rounding (measured 2.6e-13)
    etas = torch.tensor(ETAS + [-e for e in ETAS], dtype=dtype)
    expected = torch.tensor([log_norm_reference(e) for e in etas.tolist()], dtype=torch.float64)
    got = continuous_bernoulli_log_norm(etas).double()
    assert (got - expected).abs().max().item() < tol


@pytest.mark.parametrize("eta", [-50.0, -20.0, 0.0, 3.0, 20.0, 50.0])
def test_continuous_bernoulli_integrates_to_one_in_float32(eta):
    # midpoint rule on 2,000,000 cells of [0, 1], float32 densities summed in float64; its error
    # is ~h^2 eta^2 / 24 < 1e-10, so 1e-3 is all float32 rounding (measured < 1e-7). torch's own
    # ContinuousBernoulli gives 0.797 at |eta| = 20 and 0.319 at |eta| = 50.
    x = ((torch.arange(2_000_000, dtype=torch.float64) + 0.5) / 2_000_000).float()
    density = ContinuousBernoulli().distribution(torch.tensor([eta])).base_dist.log_prob(x).double().exp()
    assert density.mean().item() == pytest.approx(1.0, abs=1e-3)
    # its mean, by the same rule, is the closed-form mean
    mean = (x.double() * density).mean().item()
    assert ContinuousBernoulliLogits(torch.tensor(eta)).mean.item() == pytest.approx(mean, abs=1e-5)


def test_continuous_bernoulli_log_prob_and_gradient_are_finite_at_the_extremes():
    eta = torch.tensor([-1e4, -50.0, 0.0, 1e-6, 50.0, 1e4], requires_grad=True)
    x = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 1.0])
    log_p = ContinuousBernoulliLogits(eta).log_prob(x)
    log_p.sum().backward()
    assert torch.isfinite(log_p).all() and torch.isfinite(eta.grad).all()
    # at eta = 0 the density is uniform (log p = 0) and d log p / d eta = x - 1/2
    assert log_p[2].item() == 0.0 and eta.grad[2].item() == pytest.approx(0.0, abs=1e-7)
    assert eta.grad[3].item() == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("eta", [-50.0, -3.0, 0.0, 0.05, 20.0])
def test_continuous_bernoulli_samples_have_the_closed_form_mean(eta):
    # 200,000 draws by the inverse cdf: the sample mean is within 5 standard errors of E x
    # (the standard deviation is at most that of U(0, 1), 0.289)
    pyro.set_rng_seed(1)
    d = ContinuousBernoulliLogits(torch.full((200_000,), eta))
    draws = d.sample()
    assert ((draws >= 0) & (draws <= 1)).all()
    assert draws.mean().item() == pytest.approx(d.mean[0].item(), abs=5 * 0.289 / 200_000**0.5)


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


def test_in_support_data_passes():
    Bernoulli().check_support(torch.tensor([[0.0, 1.0]]))
    ContinuousBernoulli().check_support(torch.tensor([[0.0, 0.3, 1.0]]))
    Gaussian().check_support(torch.tensor([[-3.0, 7.0]]))


def test_make_likelihood_by_name():
    assert set(LIKELIHOODS) == {"bernoulli", "continuous-bernoulli", "gaussian"}
    for name, cls in LIKELIHOODS.items():
        assert isinstance(make_likelihood(ModelConfig(likelihood=name)), cls)
    assert make_likelihood(ModelConfig(likelihood="gaussian", scale_floor=0.2)).scale_floor == 0.2
    assert make_likelihood(ModelConfig(), grey_targets=True).grey_targets
    with pytest.raises(UsageError, match="unknown likelihood"):
        make_likelihood(ModelConfig(likelihood="poisson"))
