import pyro
import pytest
import torch
import torch.distributions as td
from pyro import poutine

from pyro_vae.config import ModelConfig
from pyro_vae.errors import UsageError
from pyro_vae.inference.objectives import make_elbo
from pyro_vae.models.model import LATENT
from pyro_vae.models.vae import VAE

from conftest import binary_data

# float32 sums of ~100 terms of size ~10: 1e-5 relative is rounding.
RTOL = 1e-5


def small_vae(likelihood="bernoulli"):
    return VAE(x_dim=20, config=ModelConfig(z_dim=2, hidden=(16,), likelihood=likelihood))


def hand_elbo_terms(vae, x, z):
    """log p(x|z), log p(z), log q(z|x) per datapoint with torch.distributions directly."""
    loc, scale = vae.encoder(x)
    log_px_z = td.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)
    log_pz = td.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = td.Normal(loc, scale).log_prob(z).sum(-1)
    return log_px_z, log_pz, log_qz, loc, scale


def guide_sample(vae, x, size, seed):
    pyro.set_rng_seed(seed)
    return poutine.trace(vae.guide).get_trace(x, size=size).nodes[LATENT]["value"]


def test_trace_elbo_equals_hand_computed_elbo_for_the_same_sample():
    vae, x, size = small_vae(), binary_data(8), 80
    z = guide_sample(vae, x, size, seed=3)
    pyro.set_rng_seed(3)  # Trace_ELBO runs the guide first, so it draws the same z
    loss = make_elbo("trace").differentiable_loss(vae.model, vae.guide, x, size=size)
    log_px_z, log_pz, log_qz, _, _ = hand_elbo_terms(vae, x, z)
    expected = -(size / len(x)) * (log_px_z + log_pz - log_qz).sum()  # -(E log p(x|z) - KL), sampled KL
    torch.testing.assert_close(loss, expected, rtol=RTOL, atol=0)


def test_meanfield_elbo_uses_the_closed_form_gaussian_kl():
    vae, x, size = small_vae(), binary_data(8), 80
    z = guide_sample(vae, x, size, seed=4)
    pyro.set_rng_seed(4)
    loss = make_elbo("meanfield").differentiable_loss(vae.model, vae.guide, x, size=size)
    log_px_z, _, _, loc, scale = hand_elbo_terms(vae, x, z)
    kl = 0.5 * (scale**2 + loc**2 - 1 - torch.log(scale**2)).sum(-1)  # KL(N(mu, s^2) || N(0, 1)), App. B
    expected = -(size / len(x)) * (log_px_z - kl).sum()
    torch.testing.assert_close(loss, expected, rtol=RTOL, atol=0)


def test_vectorized_particles_average_the_elbo():
    vae, x = small_vae(), binary_data(8)
    elbo = make_elbo("trace", num_particles=4)
    assert elbo.vectorize_particles and elbo.num_particles == 4
    losses = torch.stack([elbo.differentiable_loss(vae.model, vae.guide, x) for _ in range(200)])
    single = torch.stack([make_elbo("trace").differentiable_loss(vae.model, vae.guide, x) for _ in range(200)])
    # same expectation (difference of means within 4 combined SE), a quarter of the variance (loosely)
    se = (losses.var() / 200 + single.var() / 200).sqrt()
    assert abs(losses.mean() - single.mean()) < 4 * se
    assert losses.var() < 0.6 * single.var()


def test_unknown_elbo_is_a_clear_error():
    with pytest.raises(UsageError, match="unknown ELBO 'renyi'"):
        make_elbo("renyi")


def test_iwae_cannot_be_jit_compiled():
    with pytest.raises(UsageError, match="`jit` is not available with `elbo=iwae`"):
        make_elbo("iwae", 5, jit=True)
