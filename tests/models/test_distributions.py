import math

import mpmath
import pyro
import pytest
import torch

from pyro_vae.models.distributions import (
    BernoulliImage,
    BernoulliLogits,
    ContinuousBernoulliLogits,
    bernoulli_image_log_prob,
    bernoulli_log_prob,
    continuous_bernoulli_log_norm,
)

# logits where the decoder of a trained continuous-Bernoulli VAE sits (54% of them beyond |15| on
# MNIST), the branch point of the series (0.1) and both sides of it, and far beyond
ETAS = [0.0, 1e-8, 1e-4, 0.05, 0.0999, 0.1, 0.1001, 0.5, 1.0, 3.0, 15.0, 16.0, 17.0, 20.0, 50.0, 88.0, 100.0, 1e4]


def bernoulli_reference(eta: float, x: float) -> float:
    """x eta - log(1 + e^eta) in 40-digit arithmetic: an outside reference."""
    mpmath.mp.dps = 40
    eta = mpmath.mpf(eta)
    return float(x * eta - mpmath.log1p(mpmath.exp(eta)))


# tolerance: the rounding of log(1 + e^-|eta|) (<= 1.2e-7 in float32, see _BernoulliLogProb; 2.2e-16 in
# float64) plus that of x eta - max(eta, 0), a few ulps of the result's size
@pytest.mark.parametrize("dtype, eps", [(torch.float32, 2.0**-23), (torch.float64, 2.0**-52)])
def test_bernoulli_log_prob_matches_a_high_precision_reference(dtype, eps):
    etas = ETAS + [-e for e in ETAS]
    for x in (0.0, 1.0, 0.3):  # 0.3: a grey target, as the grey_targets Bernoulli scores
        got = bernoulli_log_prob(torch.tensor(etas, dtype=dtype), torch.tensor(x, dtype=dtype)).double()
        expected = torch.tensor([bernoulli_reference(e, x) for e in etas], dtype=torch.float64)
        tolerance = 2 * eps * (1 + expected.abs())
        assert ((got - expected).abs() <= tolerance).all(), (x, (got - expected).abs().max().item())


def test_bernoulli_gradient_is_the_closed_form_and_matches_finite_differences():
    # float64 finite differences of the forward pass check the hand-written backward, for both inputs
    eta = (torch.randn(3, 5, dtype=torch.float64) * 4).requires_grad_()
    x = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(bernoulli_log_prob, (eta, x))
    # at the extremes, in float32: x - sigmoid(eta), finite, to float32 rounding
    eta = torch.tensor([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], requires_grad=True)
    x = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    bernoulli_log_prob(eta, x).sum().backward()
    expected = x.double() - torch.sigmoid(eta.detach().double())
    torch.testing.assert_close(eta.grad.double(), expected, rtol=0, atol=1e-7)


@pytest.mark.parametrize("width", [784, 3 * 32 * 32, 10, 7])  # groups of 16 (784 and 3,072), 2 (10) or 1 (7)
def test_an_images_bernoulli_log_prob_matches_a_float64_reference_at_the_networks_extremes(width):
    """bernoulli_image_log_prob (sums of grouped products of sigmoids, one log in 16) against the float64 sum of
    x eta - softplus(eta), on logits spread to |eta| = 40 and 1e4, binary and grey targets. Tolerance: the bound
    on torch's pairwise float32 summation, (log2 D + 2) 2^-24 times the sum of the terms' sizes (the rounding of
    each term's x eta and max(eta, 0) included), plus 5e-5 nats for the products' rounding (a group's product
    is off by at most 16 half-ulps, 1e-6 relative, and an image of 784 pixels has 49 groups)."""
    torch.manual_seed(0)
    for scale in (3.0, 40.0):
        logits = torch.randn(50, width) * scale
        logits[:, :3] = torch.tensor([1e4, -1e4, 0.0])
        for x in (torch.bernoulli(torch.full((50, width), 0.13)), torch.rand(50, width)):
            terms = x.double() * logits.double() - torch.nn.functional.softplus(logits.double())
            expected = terms.sum(-1)
            got = bernoulli_image_log_prob(logits, x).double()
            sizes = (x.double() * logits.double()).abs() + logits.double().clamp(min=0) + terms.abs()
            bound = (math.log2(width) + 2) * 2.0**-24 * sizes.sum(-1) + 5e-5
            assert ((got - expected).abs() <= bound).all(), ((got - expected).abs() / bound).max()
            # in float64, the products' rounding is 2^-53: the reference to 1e-9 relative
            got64 = bernoulli_image_log_prob(logits.double(), x.double())
            torch.testing.assert_close(got64, expected, rtol=1e-9, atol=1e-9)
    assert torch.isnan(bernoulli_image_log_prob(torch.tensor([[float("nan"), 0.0]]), torch.ones(1, 2))).all()


def test_an_images_bernoulli_gradient_is_the_closed_form_and_the_distribution_is_pyros():
    eta = (torch.randn(3, 4, 16, dtype=torch.float64) * 4).requires_grad_()
    x = torch.rand(4, 16, dtype=torch.float64, requires_grad=True)  # broadcast over the 3 particles
    assert torch.autograd.gradcheck(bernoulli_image_log_prob, (eta, x))
    logits = torch.randn(7, 4, 784, requires_grad=True)
    x = torch.bernoulli(torch.full((4, 784), 0.3))
    d = BernoulliLogits(logits=logits).to_event(1)
    assert type(d) is BernoulliImage and d.batch_shape == (7, 4) and d.event_shape == (784,)
    assert type(d.expand((2, 7, 4))) is BernoulliImage  # Pyro expands sites under plates and particles
    expected = pyro.distributions.Bernoulli(logits=logits).to_event(1).log_prob(x)
    torch.testing.assert_close(d.log_prob(x), expected, rtol=1e-5, atol=1e-3)
    (g,) = torch.autograd.grad(d.log_prob(x).sum(), logits)
    (g_expected,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(g, g_expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="support"):  # validation on, as Pyro's own
        BernoulliLogits(logits=torch.zeros(2), validate_args=True).to_event(1).log_prob(torch.tensor([0.0, 0.5]))


def test_bernoulli_logits_broadcasts_expands_and_validates_like_pyros_bernoulli():
    logits = torch.randn(7, 4, 10, requires_grad=True)  # (K, B, D): K particles of B images
    x = torch.bernoulli(torch.full((4, 10), 0.3))  # (B, D)
    d = BernoulliLogits(logits=logits).to_event(1)
    assert d.batch_shape == (7, 4) and d.event_shape == (10,)
    expected = pyro.distributions.Bernoulli(logits=logits).to_event(1).log_prob(x)  # torch's formula
    got = d.log_prob(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=0)  # float32 sums of 10 terms
    (g,) = torch.autograd.grad(got.sum(), logits)
    (g_expected,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(g, g_expected, rtol=0, atol=1e-6)
    # Pyro expands distributions (vectorized particles, plates): the expanded one is still ours
    expanded = BernoulliLogits(logits=torch.zeros(10)).expand((3, 10))
    assert type(expanded) is BernoulliLogits and expanded.batch_shape == (3, 10)
    with pytest.raises(ValueError, match="support"):  # validation on, as Pyro's own: a grey pixel is refused
        BernoulliLogits(logits=torch.zeros(2), validate_args=True).log_prob(torch.tensor([0.0, 0.5]))
    assert torch.isnan(bernoulli_log_prob(torch.tensor([float("nan")]), torch.tensor([1.0]))).all()  # divergence shows


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
    density = ContinuousBernoulliLogits(torch.tensor([eta])).log_prob(x).double().exp()
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


def test_continuous_bernoulli_samples_lie_in_the_unit_interval_and_match_float64_at_every_logit():
    """The inverse CDF in float32 against float64's log1p(u expm1(eta)) / eta (exact there up to 1e-15 for
    |eta| <= 100): |eta| from 1e-6 to 100 on both sides, u from 1e-30 to 1 - 1e-7, including just above the
    series cutoff (1e-3) where the old code lost 1e-4 and drew negative samples. Tolerance 1e-7 + 2e-6 |x|:
    one float32 ulp at 1, plus ~17 ulps relative for the chain of log/exp of arguments up to 100 (measured:
    at most 0.61 of it)."""
    mags = torch.logspace(-6, 2, 400)
    eta = torch.cat([-mags, mags, torch.tensor([1.001e-3, -1.001e-3, 2e-3, -2e-3])])
    u = torch.cat([torch.logspace(-30, -1, 200), torch.linspace(0.01, 0.99, 200), 1 - torch.logspace(-7, -1, 100)])
    eta, u = torch.meshgrid(eta, u, indexing="ij")
    x = ContinuousBernoulliLogits(logits=eta).icdf(u)  # float32
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    reference = torch.log1p(u.double() * torch.expm1(eta.double())) / eta.double()
    error = (x.double() - reference).abs()
    assert (error <= 1e-7 + 2e-6 * reference).all(), f"worst {error.max():.2e}"
    samples = ContinuousBernoulliLogits(logits=torch.full((200_000,), 1.5e-3)).sample()
    assert samples.min() >= 0 and samples.max() <= 1


def test_channel_correlated_normal_against_torch_multivariate_normal():
    """log_prob against torch's MultivariateNormal of each pixel's three channels (float64, with L built from the
    same numbers), at scales from the floor's 1e-3 to 10; sampling has the covariance L L^T."""
    from pyro_vae.models.distributions import ChannelCorrelatedNormal

    torch.manual_seed(0)
    pixels, batch = 5, (4, 2)
    loc = torch.randn(*batch, 3 * pixels, dtype=torch.float64)
    diag = torch.exp(torch.empty(*batch, 3 * pixels, dtype=torch.float64).uniform_(math.log(1e-3), math.log(10)))
    lower = torch.randn(*batch, 3 * pixels, dtype=torch.float64)
    x = loc + 0.01 * torch.randn_like(loc)
    d = ChannelCorrelatedNormal(loc, diag, lower, 3)
    assert d.batch_shape == batch and d.event_shape == (3 * pixels,)

    def per_pixel(t):  # (..., 3*P) -> (..., P, 3)
        return t.unflatten(-1, (3, pixels)).transpose(-1, -2)

    dd, oo = per_pixel(diag), per_pixel(lower)
    tril = torch.diag_embed(dd)
    tril[..., 1, 0], tril[..., 2, 0], tril[..., 2, 1] = oo[..., 0] * dd[..., 1], oo[..., 1] * dd[..., 2], \
        oo[..., 2] * dd[..., 2]
    expected = torch.distributions.MultivariateNormal(per_pixel(loc), scale_tril=tril).log_prob(per_pixel(x)).sum(-1)
    assert torch.allclose(d.log_prob(x), expected, rtol=1e-12, atol=1e-9)
    # float32, as the networks run it: within float32's rounding (6e-8 relative) of each of the 15 terms summed,
    # with room for the rounding of the inputs themselves (1e-6 of the largest term in all)
    f32 = ChannelCorrelatedNormal(loc.float(), diag.float(), lower.float(), 3).log_prob(x.float()).double()
    terms = (0.5 * ((x - loc) / diag).square() + diag.log().abs()).sum(-1)  # a bound on the terms' magnitudes
    assert ((f32 - expected).abs() <= 1e-6 * terms * 100 + 1e-4).all()
    # samples: covariance L L^T per pixel, to 4 SE of 200,000 draws
    one = ChannelCorrelatedNormal(loc[0, 0, :3].reshape(3), torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64),
                                  torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), 3)
    draws = one.sample((200_000,))
    L = torch.tensor([[1.0, 0, 0], [0.5 * 2.0, 2.0, 0], [-1.0 * 0.5, 2.0 * 0.5, 0.5]], dtype=torch.float64)
    assert torch.allclose(torch.cov(draws.T), L @ L.T, atol=4 * 4 / 200_000 ** 0.5 * 2)
    # one channel: the Gaussian
    grey = ChannelCorrelatedNormal(loc[..., :pixels], diag[..., :pixels], lower[..., :0], 1)
    assert torch.allclose(grey.log_prob(x[..., :pixels]),
                          torch.distributions.Normal(loc[..., :pixels], diag[..., :pixels]).log_prob(
                              x[..., :pixels]).sum(-1), rtol=1e-12)
