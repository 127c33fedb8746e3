"""The inference-gap split of Cremer et al. (2018) against closed forms on a linear-Gaussian model, and against
float64 quadrature on a model whose posterior has two modes (two_modes.py).

prior N(0, I), x | z ~ N(Wz + b, s^2 I): the posterior is Gaussian with precision L = I + W^T W / s^2, so
    the best diagonal Gaussian's KL to it is  1/2 (sum_i log L_ii - log det L)        (approximation gap)
    a diagonal guide q_phi's KL to it is      KL(q_phi || p(z|x)), closed form      (inference gap)
and the amortization gap is their difference. The amortized guide is deliberately shifted and too wide.
"""

import math
from dataclasses import fields

import pyro
import pytest
import torch
from pyro import distributions as dist
from two_modes import best_gaussian, diagonal_guide, gaussian_elbo, two_mode_model
from two_modes import lesser_mode_problem as problem2  # noqa: F401  (a fixture)

from pyro_vae.config import ModelConfig
from pyro_vae.inference.ais import ais
from pyro_vae.inference.estimators import importance_log_weights
from pyro_vae.inference.gaps import InferenceGaps, inference_gaps
from pyro_vae.inference.local import LocalFit, local_guide_elbo
from pyro_vae.models.vae import VAE

from linear_gaussian import correlated_problem as problem  # noqa: F401  (a fixture)
from linear_gaussian import lg_model


def shifted_wide_guide(problem, shift=1.0, widen=1.3):
    """A diagonal Gaussian shifted by ``shift`` and ``widen`` times as wide as the best diagonal one, whose
    scales are 1 / sqrt(L_ii)."""
    best_scale = torch.linalg.inv(problem["post_cov"]).diagonal().rsqrt()  # (Z,)
    loc = problem["post_mean"] + shift * best_scale
    scale = (widen * best_scale).expand_as(loc)

    def guide(x, W, b):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    return guide, dist.MultivariateNormal(loc, torch.diag_embed(scale.square()))


def closed_forms(problem, q):
    precision = torch.linalg.inv(problem["post_cov"])  # I + W^T W / s^2
    approximation = 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision))
    posterior = dist.MultivariateNormal(problem["post_mean"], problem["post_cov"])
    inference = torch.distributions.kl_divergence(q, posterior)  # (N,)
    return approximation, inference


def test_the_gaps_equal_their_closed_forms(problem):
    """Each gap within 0.1 nats of its closed form on average over the 8 datapoints. Closed forms here:
    approximation 0.641, amortization 2.015, inference 2.656: a split with the two swapped is 1.37 nats off,
    14 times the tolerance. Measured (seed 0): within 0.03 each."""
    guide, q = shifted_wide_guide(problem)
    approximation, inference = closed_forms(problem, q)
    # the fixture's precision has correlation 0.85: -1/2 log(1 - 0.85^2) = 0.6410; the guide adds more
    assert approximation.item() == pytest.approx(0.6410, abs=1e-4)
    assert ((inference - approximation).mean() - approximation).abs() > 1.0
    pyro.set_rng_seed(0)
    gaps = inference_gaps(lg_model, guide, problem["x"], problem["W"], problem["b"], local_steps=400,
                          num_samples=4000, ais_steps=300, ais_chains=32, ais_leapfrog=5)
    assert gaps.converged.all()
    exact = problem["exact"]
    assert (gaps.log_px - exact).mean().abs() < 0.1
    assert (gaps.elbo - (exact - inference)).mean().abs() < 0.1
    assert (gaps.local_elbo - (exact - approximation)).mean().abs() < 0.1
    assert (gaps.approximation_gap - approximation).mean().abs() < 0.1
    assert (gaps.amortization_gap - (inference - approximation)).mean().abs() < 0.1
    assert (gaps.inference_gap - inference).mean().abs() < 0.1
    summary = gaps.summary()
    assert summary["approximation_gap"][0] == pytest.approx(approximation.item(), abs=0.1)
    assert summary["amortization_gap"][0] == pytest.approx((inference - approximation).mean().item(), abs=0.1)
    assert summary["inference_gap"][0] == pytest.approx(inference.mean().item(), abs=0.1)
    assert summary["inference_gap"][1] < 0.1  # paired per datapoint: no spread of log p(x) in it
    halves = InferenceGaps.concatenate([gaps_of(gaps, slice(0, 3)), gaps_of(gaps, slice(3, None))])
    for name in ("log_px", "elbo", "local_elbo", "converged"):
        assert torch.equal(getattr(halves, name), getattr(gaps, name)), name


def gaps_of(gaps, rows):
    local = LocalFit(*(getattr(gaps.local, f.name)[rows] for f in fields(LocalFit)))
    return InferenceGaps(gaps.log_px[rows], gaps.elbo[rows], local, gaps.local_steps, gaps.local_starts)


def test_the_gaps_of_a_two_mode_posterior_equal_quadrature(problem2):
    """two_modes.py: the amortized guide of each datapoint sits in the lesser of its posterior's two modes. Per
    datapoint, the approximation gap within 0.05 + 3 SE of log p(x) - the best Gaussian's ELBO by quadrature,
    and the amortization gap within as much of the best Gaussian's ELBO - the guide's (both exact); SE from
    the AIS chains' weights (delta method) and L[q*]'s log-weights, both measured here. AIS anneals from a
    broad guide N(0, I) (``ais_guide``), which covers both modes, to the same model; HMC cannot cross between
    the modes, so 512 chains make the share of chains in each (and the SE) right."""
    x, guide = problem2["x"], problem2["guide"]
    broad = diagonal_guide(torch.zeros_like(x), torch.ones_like(x))
    settings = dict(ais_steps=200, ais_chains=512, ais_leapfrog=5)
    pyro.set_rng_seed(0)
    gaps = inference_gaps(two_mode_model, guide, x, local_steps=300, num_samples=4000, ais_guide=broad,
                          **settings)
    pyro.set_rng_seed(1)
    chains = ais(two_mode_model, broad, x, num_steps=200, num_chains=512, num_leapfrog=5).log_weights  # (C, N)
    w = (chains - chains.max(0).values).exp()
    ais_se = w.std(0) / (w.mean(0) * len(w) ** 0.5)  # measured 0.018 to 0.039
    _, best_params = best_gaussian(x)
    best_guide = diagonal_guide(best_params[:, :2], best_params[:, 2:].exp())
    local_se = importance_log_weights(two_mode_model, best_guide, x, num_samples=4000).std(0) / 4000**0.5
    tolerance = 0.05 + 3 * (ais_se.square() + local_se.square()).sqrt()
    shortfall = problem2["best"] - problem2["lesser"]  # what a q* left in the guide's mode would be off by
    assert (shortfall > tolerance).sum() == 5  # the test tells them apart on all five two-mode datapoints
    guide_elbo = torch.tensor([gaussian_elbo(xn.numpy(), [*loc.tolist(), math.log(0.3), math.log(0.5)])
                               for xn, loc in zip(x, problem2["loc"])], dtype=torch.float64)
    assert ((gaps.approximation_gap - (problem2["exact"] - problem2["best"])).abs() < tolerance).all()
    assert ((gaps.amortization_gap - (problem2["best"] - guide_elbo)).abs() < tolerance).all()
    assert ((gaps.log_px - problem2["exact"]).abs() < tolerance).all()
    assert gaps.converged.all() and gaps.local_starts == 8


def test_a_guide_whose_parameters_the_param_store_shadows_is_refused_not_scored():
    """Two VAEs in one process register their networks under the same names; Pyro's store keeps the first's.
    Optimizing the store's tensors for the second VAE's guide changed nothing, and L[q*_flow] came out equal
    to L[q] (measured on binarized MNIST before the check): now one clear error."""
    first = VAE(12, ModelConfig(z_dim=2, hidden=(8,), guide="iaf"))
    x = torch.bernoulli(torch.full((3, 12), 0.3))
    first.guide(x)  # registers the first VAE's parameters
    second = VAE(12, ModelConfig(z_dim=2, hidden=(8,), guide="iaf"))
    with pytest.raises(ValueError, match="param store holds other tensors"):
        local_guide_elbo(second.model, second.guide, x, local_steps=20, num_samples=10)
    pyro.clear_param_store()
    fit = local_guide_elbo(second.model, second.guide, x, local_steps=20, num_samples=10)
    assert fit.elbo.shape == (3,) and torch.isfinite(fit.elbo).all()
