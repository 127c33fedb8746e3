"""The IWAE objective against closed forms and against Pyro's RenyiELBO(alpha=0).

Uses the linear-Gaussian problem of test_estimators.py, whose log p(x) and posterior are exact.
"""

import math

import pyro
import pytest
import torch
from pyro import distributions as dist
from pyro.infer import RenyiELBO, Trace_ELBO

from pyro_vae.inference.iwae import IWAE_ELBO

from linear_gaussian import SIGMA, Z, exact_guide, lg_model, problem, wide_guide  # noqa: F401  (a fixture)


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
    bound = IWAE_ELBO(k).bound(lg_model, guide, *args)
    assert bound.shape == problem["exact"].shape and torch.allclose(bound, problem["exact"], atol=1e-9, rtol=0)


def test_minibatch_loss_is_scaled_outside_the_logsumexp(problem):
    """A minibatch of B = 8 of N = 80 points: loss = -(N/B) sum_b L_K(x_b), the dataset-level
    scaling; the per-point bound itself does not change."""
    args = problem["x"], problem["W"], problem["b"]
    scale = 1.3 * torch.linalg.eigvalsh(problem["post_cov"]).max().sqrt()
    model, guide = minibatch_pair(problem["post_mean"], scale, size=80)
    full_model, full_guide = minibatch_pair(problem["post_mean"], scale, size=8)
    pyro.set_rng_seed(3)
    full = IWAE_ELBO(16).bound(full_model, full_guide, *args)
    pyro.set_rng_seed(3)
    bound = IWAE_ELBO(16).bound(model, guide, *args)
    assert torch.allclose(bound, full, atol=1e-12, rtol=0)  # same samples, same per-point bound
    pyro.set_rng_seed(3)
    full_loss = IWAE_ELBO(16).differentiable_loss(full_model, full_guide, *args)
    pyro.set_rng_seed(3)
    loss = IWAE_ELBO(16).differentiable_loss(model, guide, *args)
    assert full_loss.item() == pytest.approx(-full.sum().item(), rel=1e-12)  # no subsampling: scale 1
    assert loss.item() == pytest.approx(-10.0 * full.sum().item(), rel=1e-12)  # N/B = 10


def test_agrees_with_pyros_renyi_elbo_without_subsampling(problem):
    # Same seed, same vectorized draws: RenyiELBO(alpha=0) computes the same per-datapoint bound
    # when the plate is not subsampled. 1e-9: float64 rounding of two summation orders.
    guide = wide_guide(problem["post_mean"], problem["post_cov"], shift=0.3)
    args = problem["x"], problem["W"], problem["b"]
    pyro.set_rng_seed(7)
    ours = IWAE_ELBO(10, max_plate_nesting=1).loss(lg_model, guide, *args)  # no guessing run: same RNG stream
    pyro.set_rng_seed(7)
    renyi = RenyiELBO(alpha=0, num_particles=10, vectorize_particles=True, max_plate_nesting=1)
    renyi = renyi.loss(lg_model, guide, *args)
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


def shifted_guide(loc, log_scale):
    def guide(x, W, b):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    return guide


def test_gradient_is_the_derivative_of_the_sampled_bound(problem):
    """With the same seed the same standard-normal noise is drawn, so the loss is a smooth function
    of the guide's parameters and its central finite difference (h = 1e-6, float64: error ~1e-9)
    is the exact derivative of that sampled bound: the pathwise IWAE gradient must match it."""
    args = problem["x"], problem["W"], problem["b"]
    loc = (problem["post_mean"] + 0.4).requires_grad_()
    log_scale = torch.full_like(problem["post_mean"], -0.5, requires_grad=True)

    def loss(loc, log_scale):
        pyro.set_rng_seed(5)
        return IWAE_ELBO(5, max_plate_nesting=1).differentiable_loss(lg_model, shifted_guide(loc, log_scale), *args)

    loss(loc, log_scale).backward()
    for param, grad in ((loc, loc.grad), (log_scale, log_scale.grad)):
        assert grad.abs().max() > 0.1  # far from a stationary point: the comparison means something
        for index in [(0, 0), (3, 1), (7, 0)]:
            h = torch.zeros_like(param)
            h[index] = 1e-6
            with torch.no_grad():
                others = (loc, log_scale) if param is loc else (loc, log_scale)
                plus = loss(*(p + h if p is param else p for p in others))
                minus = loss(*(p - h if p is param else p for p in others))
            assert grad[index].item() == pytest.approx(((plus - minus) / 2e-6).item(), rel=1e-6, abs=1e-7)


def test_gradient_equals_renyi_elbos_without_subsampling(problem):
    # Pyro's RenyiELBO(alpha=0) differentiates the same bound on the same draws (same seed); its
    # gradient is the reference. 1e-9: float64 rounding of two summation orders. (RenyiELBO only
    # differentiates pyro.param sites, so the guide's parameters are pyro.params here.)
    args = problem["x"], problem["W"], problem["b"]

    def guide(x, W, b):
        loc = pyro.param("loc", problem["post_mean"] - 0.3)
        log_scale = pyro.param("log_scale", torch.full_like(problem["post_mean"], -0.2))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))

    grads = []
    for elbo in (IWAE_ELBO(7, max_plate_nesting=1),
                 RenyiELBO(alpha=0, num_particles=7, vectorize_particles=True, max_plate_nesting=1)):
        pyro.clear_param_store()
        pyro.set_rng_seed(9)
        elbo.loss_and_grads(lg_model, guide, *args)
        grads.append(torch.cat([pyro.param(name).grad.flatten() for name in ("loc", "log_scale")]))
    assert grads[0].abs().max() > 0.1
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-9)


def test_a_guide_site_without_rsample_is_refused_by_name(problem):
    # A Bernoulli latent has no reparameterized sample: the pathwise IWAE gradient would miss its
    # score-function term (measured before this guard: +0.206 where the exact gradient is -0.226).
    logit = torch.zeros((), requires_grad=True)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("c", dist.Bernoulli(logits=torch.zeros(x.shape[0])))
            pyro.sample("x", dist.Normal(2 * c - 1, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("c", dist.Bernoulli(logits=logit.expand(x.shape[0])))

    x = torch.tensor([0.9, -1.1, 1.3])
    with pytest.raises(ValueError, match="guide site 'c' samples from Bernoulli, which is not reparameterizable"):
        IWAE_ELBO(5).differentiable_loss(model, guide, x)
    with pytest.raises(ValueError, match="'c'"):
        IWAE_ELBO(5).loss_and_grads(model, guide, x)
    assert math.isfinite(IWAE_ELBO(5).loss(model, guide, x))  # the bound's value needs no gradient: allowed


def test_num_particles_must_be_positive():
    with pytest.raises(ValueError, match="num_particles must be >= 1"):
        IWAE_ELBO(0)
