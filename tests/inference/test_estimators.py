"""The importance-sampled log p(x) against closed forms.

Linear-Gaussian model: z ~ N(0, I_d), x = W z + b + eps, eps ~ N(0, s^2 I_D), so that
    p(x)     = N(x; b, W W^T + s^2 I)                        (exact)
    p(z | x) = N(Sigma W^T (x - b) / s^2, Sigma),  Sigma = (I + W^T W / s^2)^-1.
With the exact posterior as the guide every importance weight equals p(x).
"""

import math

import pyro
import pytest
import torch
from pyro import distributions as dist
from pyro import poutine

from pyro_vae.config import ModelConfig
from pyro_vae.inference.estimators import (
    KHAT_MIN_SAMPLES,
    importance_log_weights,
    iwae_bound,
    log_marginal_likelihood,
    pareto_khat,
)
from pyro_vae.models.vae import VAE

from linear_gaussian import SIGMA, D, Z, exact_guide, lg_model, problem, wide_guide  # noqa: F401  (a fixture)


def delta_method_se(log_w):
    """SE of log mean(w) per datapoint: sd(w) / (mean(w) sqrt(K)), from normalized weights."""
    w = torch.exp(log_w - log_w.max(0).values)
    return w.std(0) / (w.mean(0) * math.sqrt(len(w)))


def test_exact_posterior_makes_every_weight_equal_p_x(problem):
    guide = exact_guide(problem["post_mean"], problem["post_cov"])
    log_w = importance_log_weights(lg_model, guide, problem["x"], problem["W"], problem["b"], num_samples=50)
    assert log_w.shape == (50, 8)
    # float64 throughout: the only error is rounding (~1e-13 here)
    torch.testing.assert_close(log_w, problem["exact"].expand(50, 8), rtol=0, atol=1e-9)
    for k in (1, 3, 50):
        estimate = log_marginal_likelihood(lg_model, guide, problem["x"], problem["W"], problem["b"], num_samples=k)
        torch.testing.assert_close(estimate, problem["exact"], rtol=0, atol=1e-9)


def test_estimate_is_within_its_standard_error_of_the_exact_value(problem):
    guide = wide_guide(problem["post_mean"], problem["post_cov"])
    args = (problem["x"], problem["W"], problem["b"])
    log_w = importance_log_weights(lg_model, guide, *args, num_samples=5000)
    estimate = torch.logsumexp(log_w, 0) - math.log(5000)
    se = delta_method_se(log_w)
    # K = 5000: the estimator's bias (~se^2 / 2) is far below se; 5 se bounds a false alarm at 6e-7 per point
    assert ((estimate - problem["exact"]).abs() < 5 * se).all(), (estimate - problem["exact"], se)
    assert (se < 0.05).all()  # and the test is not vacuous: the tolerance is a few hundredths of a nat


def test_bound_is_below_log_p_and_tightens_with_k(problem):
    guide = wide_guide(problem["post_mean"], problem["post_cov"], shift=0.8)  # a poor guide: large gap
    log_w = importance_log_weights(lg_model, guide, problem["x"], problem["W"], problem["b"], num_samples=4000)
    bounds = {k: iwae_bound(log_w, k).mean().item() for k in (1, 10, 100, 1000, 4000)}
    exact = problem["exact"].mean().item()
    values = list(bounds.values())
    # E L_k increases with k (Burda et al. Thm 1); averaged over 8 points and 4000 // k groups the
    # noise is < 0.05 nats, while the first steps here are > 0.5 nats
    assert values[1] > values[0] + 0.5 and values[2] > values[1] + 0.05
    assert all(later > earlier - 0.05 for earlier, later in zip(values, values[1:])), bounds
    assert all(v < exact + 0.05 for v in values), (bounds, exact)  # a lower bound, up to that noise
    assert exact - bounds[1] > 1.0  # the ELBO's gap is real


def test_estimate_per_datapoint_does_not_depend_on_the_rest_of_the_batch(problem):
    x, W, b = problem["x"], problem["W"], problem["b"]
    exact = exact_guide(problem["post_mean"], problem["post_cov"])
    alone_guide = exact_guide(problem["post_mean"][:1], problem["post_cov"])
    together = log_marginal_likelihood(lg_model, exact, x, W, b, num_samples=10)
    alone = log_marginal_likelihood(lg_model, alone_guide, x[:1], W, b, num_samples=10)
    assert alone.shape == (1,)
    torch.testing.assert_close(alone, together[:1], rtol=0, atol=1e-9)  # a summed weight would be 8x
    # and with an approximate guide: the same quantity within the two estimates' SE
    wide, wide_one = (wide_guide(m, problem["post_cov"]) for m in (problem["post_mean"], problem["post_mean"][:1]))
    log_w_all = importance_log_weights(lg_model, wide, x, W, b, num_samples=4000)
    log_w_one = importance_log_weights(lg_model, wide_one, x[:1], W, b, num_samples=4000)
    diff = (torch.logsumexp(log_w_all[:, 0], 0) - torch.logsumexp(log_w_one[:, 0], 0)).abs()
    se = (delta_method_se(log_w_all[:, :1]) ** 2 + delta_method_se(log_w_one) ** 2).sqrt()
    assert diff < 5 * se


def test_chunk_size_does_not_change_the_result(problem):
    args = (problem["x"], problem["W"], problem["b"])
    exact = exact_guide(problem["post_mean"], problem["post_cov"])
    for chunk in (1, 7, 64, None):
        estimate = log_marginal_likelihood(lg_model, exact, *args, num_samples=64, chunk_size=chunk)
        torch.testing.assert_close(estimate, problem["exact"], rtol=0, atol=1e-9)
    # the running logsumexp equals the logsumexp of the stacked weights of the same draws
    wide = wide_guide(problem["post_mean"], problem["post_cov"])
    pyro.set_rng_seed(7)
    streamed = log_marginal_likelihood(lg_model, wide, *args, num_samples=1000, chunk_size=130)
    pyro.set_rng_seed(7)
    stacked = importance_log_weights(lg_model, wide, *args, num_samples=1000, chunk_size=130)
    torch.testing.assert_close(streamed, torch.logsumexp(stacked, 0) - math.log(1000), rtol=0, atol=1e-10)
    # different chunkings draw different samples: agreement within the estimates' SE
    pyro.set_rng_seed(8)
    whole = importance_log_weights(lg_model, wide, *args, num_samples=4000)
    se = delta_method_se(whole)
    one_chunking = torch.logsumexp(whole, 0) - math.log(4000)
    other = log_marginal_likelihood(lg_model, wide, *args, num_samples=4000, chunk_size=333)
    assert ((one_chunking - other).abs() < 5 * math.sqrt(2) * se).all()


def test_works_for_nested_plates_and_a_data_plate_that_is_not_rightmost(problem):
    """x scored per pixel inside a second plate; the data plate sits at dim -2."""

    def model(x, W, b):
        with pyro.plate("data", x.shape[0], dim=-2):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 1, Z), 1.0).to_event(1))  # (..., N, 1, Z)
            loc = (z @ W.T + b).squeeze(-2)  # (..., N, D)
            with pyro.plate("pixels", D, dim=-1):
                pyro.sample("x", dist.Normal(loc, SIGMA), obs=x)

    def guide(x, W, b):
        with pyro.plate("data", x.shape[0], dim=-2):
            pyro.sample("z", dist.MultivariateNormal(problem["post_mean"].unsqueeze(-2), problem["post_cov"]))

    estimate = log_marginal_likelihood(model, guide, problem["x"], problem["W"], problem["b"], num_samples=20)
    torch.testing.assert_close(estimate, problem["exact"], rtol=0, atol=1e-9)


def test_scaled_sites_do_not_change_the_estimate(problem):
    # A beta-VAE or an annealed KL scales a site's log-density with poutine.scale; log p(x) is a
    # property of the unscaled model, so the estimator ignores scales: with the exact posterior
    # every weight is still p(x) (1e-9: float64 rounding).
    def beta_model(x, W, b):
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=0.5):
                z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], Z), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + b, SIGMA).to_event(1), obs=x)

    guide = exact_guide(problem["post_mean"], problem["post_cov"])
    estimate = log_marginal_likelihood(beta_model, guide, problem["x"], problem["W"], problem["b"], num_samples=10)
    torch.testing.assert_close(estimate, problem["exact"], rtol=0, atol=1e-9)


def test_sites_outside_the_data_plate_are_refused(problem):
    def model(x, W, b):
        shift = pyro.sample("shift", dist.Normal(torch.tensor(0.0, dtype=x.dtype), 1.0))  # global latent
        lg_model(x + shift, W, b)

    def guide(x, W, b):
        pyro.sample("shift", dist.Normal(torch.tensor(0.0, dtype=x.dtype), 1.0))
        exact_guide(problem["post_mean"], problem["post_cov"])(x, W, b)

    with pytest.raises(ValueError, match="'shift' is outside the plate 'data'"):
        log_marginal_likelihood(model, guide, problem["x"], problem["W"], problem["b"], num_samples=5)


@pytest.mark.parametrize(
    "kwargs, message", [({"num_samples": 0}, "num_samples"), ({"num_samples": 5, "chunk_size": 0}, "chunk_size")]
)
def test_bad_sample_counts_are_refused(problem, kwargs, message):
    guide = exact_guide(problem["post_mean"], problem["post_cov"])
    with pytest.raises(ValueError, match=message):
        log_marginal_likelihood(lg_model, guide, problem["x"], problem["W"], problem["b"], **kwargs)


def test_vae_estimate_has_one_value_per_image_for_any_n():
    vae = VAE(x_dim=12, config=ModelConfig(z_dim=2, hidden=(8,)))
    for n in (1, 3):
        x = torch.bernoulli(torch.rand(n, 12))
        estimate = log_marginal_likelihood(vae.model, vae.guide, x, num_samples=30, chunk_size=7)
        assert estimate.shape == (n,) and torch.isfinite(estimate).all()
        # a VAE's log p(x) is that of each image alone: summed over the plate it would scale with n
        torch.testing.assert_close(
            log_marginal_likelihood(vae.model, vae.guide, x[:1], num_samples=3000), estimate[:1], atol=0.5, rtol=0
        )  # two estimates of one value at K=30 and 3000 on a 12-pixel image: they differ by < 0.5 nats


def test_iwae_bound_groups_the_samples():
    log_w = torch.log(torch.tensor([[1.0], [3.0], [2.0], [6.0], [5.0]]))
    # k = 2: groups {1, 3} and {2, 6}, the fifth sample left out
    expected = (math.log(2.0) + math.log(4.0)) / 2
    assert iwae_bound(log_w, 2).item() == pytest.approx(expected)
    assert iwae_bound(log_w, 1).item() == pytest.approx(log_w.mean().item())
    with pytest.raises(ValueError):
        iwae_bound(log_w, 6)


def test_khat_needs_the_samples_arviz_fits_a_tail_to():
    """ArviZ's own rule, not ours: below KHAT_MIN_SAMPLES weights k^ is inf (no tail), at it a number."""
    log_w = torch.randn(KHAT_MIN_SAMPLES, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.isinf(pareto_khat(log_w[:-1])).all()
    assert torch.isfinite(pareto_khat(log_w)).all()


def test_pareto_khat_on_a_known_case():
    """Proposal N(0, 1), target N(0, 2^2): the weight tail has shape k = 1 - 1/2^2 = 0.75."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 20, generator=g, dtype=torch.float64)
    log_w = dist.Normal(0.0, 2.0).log_prob(z) - dist.Normal(0.0, 1.0).log_prob(z)  # (K, N)
    khat = pareto_khat(log_w)
    assert khat.shape == (20,)
    # k^ from 20,000 draws has sd ~0.05 here (Vehtari et al. 2024); the mean of 20 is within 0.1 of 0.75
    assert abs(khat.mean().item() - 0.75) < 0.1, khat
    # the sign convention matters: a light-tailed (reversed) case gives k^ well below 0.5
    assert pareto_khat(-log_w).mean().item() < 0.3
