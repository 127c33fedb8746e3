"""The IWAE objective against closed forms and against Pyro's RenyiELBO(alpha=0).

Uses the linear-Gaussian problem of test_estimators.py, whose log p(x) and posterior are exact.
"""

import pyro
import pytest
import torch
from pyro import distributions as dist
from pyro.infer import RenyiELBO, Trace_ELBO

from pyro_vae.iwae import IWAE_ELBO
from test_estimators import SIGMA, Z, exact_guide, lg_model, problem, wide_guide  # noqa: F401  (a fixture)


def minibatch_pair(post_mean, scale, size):
    """The linear-Gaussian model and an isotropic guide on a minibatch of a dataset of ``size``
    points: the plate's subsample makes Pyro scale every site by size / B."""

    def model(x, W, b):
        with pyro.plate("data", size, subsample=torch.arange(x.shape[0])):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], Z), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + b, SIGMA).to_event(1), obs=x)

    def guide(x, W, b):
        with pyro.plate("data", size, subsample=torch.arange(x.shape[0])):
            pyro.sample("z", dist.Normal(post_mean, scale).to_event(1))

    return model, guide


@pytest.mark.parametrize("k", [1, 5, 64])
def test_exact_posterior_gives_minus_log_p_x_for_any_k(problem, k):
    # every weight equals p(x), so L_K = log p(x) exactly; 1e-9 is float64 rounding over 8 points
    guide = exact_guide(problem["post_mean"], problem["post_cov"])
    args = problem["x"], problem["W"], problem["b"]
    loss = IWAE_ELBO(k).differentiable_loss(lg_model, guide, *args)
    assert loss.item() == pytest.approx(-problem["exact"].sum().item(), abs=1e-9)
    bound, scale = IWAE_ELBO(k).bound(lg_model, guide, *args)
    assert scale == 1.0 and torch.allclose(bound, problem["exact"], atol=1e-9, rtol=0)


def test_minibatch_loss_is_scaled_outside_the_logsumexp(problem):
    """A minibatch of B = 8 of N = 80 points: loss = -(N/B) sum_b L_K(x_b), the dataset-level
    scaling; the per-point bound itself does not change."""
    args = problem["x"], problem["W"], problem["b"]
    scale = 1.3 * torch.linalg.eigvalsh(problem["post_cov"]).max().sqrt()
    model, guide = minibatch_pair(problem["post_mean"], scale, size=80)
    full_model, full_guide = minibatch_pair(problem["post_mean"], scale, size=8)
    pyro.set_rng_seed(3)
    full, full_scale = IWAE_ELBO(16).bound(full_model, full_guide, *args)
    pyro.set_rng_seed(3)
    bound, minibatch_scale = IWAE_ELBO(16).bound(model, guide, *args)
    assert full_scale == 1.0 and minibatch_scale == pytest.approx(10.0)
    assert torch.allclose(bound, full, atol=1e-12, rtol=0)  # same samples, same per-point bound
    pyro.set_rng_seed(3)
    loss = IWAE_ELBO(16).differentiable_loss(model, guide, *args)
    assert loss.item() == pytest.approx(-10.0 * full.sum().item(), rel=1e-12)


def test_agrees_with_pyros_renyi_elbo_without_subsampling(problem):
    # Same seed, same vectorized draws: RenyiELBO(alpha=0) computes the same per-datapoint bound
    # when the plate is not subsampled. 1e-9: float64 rounding of two summation orders.
    guide = wide_guide(problem["post_mean"], problem["post_cov"], shift=0.3)
    args = problem["x"], problem["W"], problem["b"]
    pyro.set_rng_seed(7)
    ours = IWAE_ELBO(10, max_plate_nesting=1).loss(lg_model, guide, *args)  # no guessing run: same RNG stream
    pyro.set_rng_seed(7)
    renyi = RenyiELBO(alpha=0, num_particles=10, vectorize_particles=True, max_plate_nesting=1).loss(lg_model, guide, *args)
    assert ours == pytest.approx(renyi, abs=1e-9)


def test_k1_is_the_elbo(problem):
    guide = wide_guide(problem["post_mean"], problem["post_cov"], shift=0.3)
    args = problem["x"], problem["W"], problem["b"]
    pyro.set_rng_seed(11)
    ours = IWAE_ELBO(1, max_plate_nesting=1).differentiable_loss(lg_model, guide, *args)
    pyro.set_rng_seed(11)
    elbo = Trace_ELBO(max_plate_nesting=1).differentiable_loss(lg_model, guide, *args)
    assert ours.item() == pytest.approx(elbo.item(), abs=1e-9)


def test_bound_tightens_with_k(problem):
    # L_1 < L_10 < L_100 <= log p(x): averaged over 200 draws each, gaps far above the noise
    guide = wide_guide(problem["post_mean"], problem["post_cov"], shift=0.5)
    args = problem["x"], problem["W"], problem["b"]
    means = [sum(-IWAE_ELBO(k).loss(lg_model, guide, *args) for _ in range(200)) / 200 for k in (1, 10, 100)]
    exact = problem["exact"].sum().item()
    assert means[0] < means[1] - 0.5 and means[1] < means[2] - 0.05 and means[2] < exact + 0.05, (means, exact)


def test_gradients_reach_the_guide(problem):
    loc = problem["post_mean"].clone().requires_grad_()

    def guide(x, W, b):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, 0.5).to_event(1))

    IWAE_ELBO(5).differentiable_loss(lg_model, guide, problem["x"], problem["W"], problem["b"]).backward()
    assert loc.grad is not None and torch.isfinite(loc.grad).all() and loc.grad.abs().sum() > 0


def test_num_particles_must_be_positive():
    with pytest.raises(ValueError, match="num_particles must be >= 1"):
        IWAE_ELBO(0)
