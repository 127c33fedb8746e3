"""The two-stochastic-layer VAE (models/hierarchical.py): its generative story against a closed form, and the
pairings it refuses.

With linear networks the model is linear-Gaussian: z2 ~ N(0, 1), z | z2 ~ N(a z2, s^2), x | z ~ N(b z + c, sigma^2 I),
so x ~ N(c, (a^2 + s^2) b b^T + sigma^2 I), and the posterior factorizes as the guide does, p(z|x) p(z2|z) (z2 is
independent of x given z). A guide equal to it makes every importance weight equal p(x) (with one-dimensional
z and z2 both factors are the guide's Gaussians exactly)."""

import math

import pyro
import pytest
import torch
from pyro import distributions as dist
from torch import nn

from pyro_vae.config import ModelConfig
from pyro_vae.errors import UsageError
from pyro_vae.inference.estimators import importance_log_weights
from pyro_vae.inference.objectives import make_elbo
from pyro_vae.models.hierarchical import TOP
from pyro_vae.models.model import LATENT
from pyro_vae.models.vae import VAE

A_, S_, SIGMA = 1.5, 0.6, 0.3
B_ = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
C_ = torch.tensor([0.2, 0.0, -0.3], dtype=torch.float64)


class Affine(nn.Module):
    """(loc, scale) = (w . input + bias, scale), a fixed Gaussian layer in place of a network."""

    def __init__(self, weight, bias, scale):
        super().__init__()
        self.weight, self.bias, self.scale = weight, bias, scale
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))  # the VAE asks a network for its device

    def forward(self, h):
        loc = h @ self.weight.T + self.bias
        return loc, torch.full_like(loc, self.scale)


class LinearGaussianDecoder(nn.Module):
    """The Gaussian likelihood's output (loc, log-variance) for x | z ~ N(b z + c, SIGMA^2)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, z):
        loc = z @ B_[None] + C_
        return torch.cat([loc, torch.full_like(loc, 2 * math.log(SIGMA))], -1)


def exact_vae():
    vae = VAE(3, ModelConfig(z_dim=1, z2_dim=1, hidden=(4,), likelihood="gaussian", scale_floor=1e-12)).double()
    vae.top_decoder = Affine(torch.tensor([[A_]], dtype=torch.float64), 0.0, S_)
    vae.decoder = LinearGaussianDecoder()
    prior_var = A_**2 + S_**2  # z's marginal variance
    precision = 1 / prior_var + B_ @ B_ / SIGMA**2  # of p(z|x)
    vae.encoder = Affine((B_ / SIGMA**2 / precision)[None], -(B_ @ C_) / SIGMA**2 / precision, precision ** -0.5)
    top_precision = 1 + A_**2 / S_**2  # of p(z2|z)
    vae.top_encoder = Affine(torch.tensor([[A_ / S_**2 / top_precision]], dtype=torch.float64), 0.0,
                             top_precision ** -0.5)
    covariance = prior_var * torch.outer(B_, B_) + SIGMA**2 * torch.eye(3, dtype=torch.float64)
    return vae, dist.MultivariateNormal(C_, covariance)


def test_every_importance_weight_of_the_exact_posterior_is_p_x():
    """All 64 weights of each of 5 datapoints equal the closed-form log p(x) to float64 rounding (1e-10)."""
    vae, marginal = exact_vae()
    x = marginal.sample((5,))
    log_w = importance_log_weights(vae.model, vae.guide, x, num_samples=64)  # (64, 5)
    torch.testing.assert_close(log_w, marginal.log_prob(x).expand(64, -1), rtol=0, atol=1e-10)


def test_prior_draws_follow_the_hierarchy():
    """z ~ p(z) = N(0, a^2 + s^2): the variance of 200,000 draws within 1% (its SE is 0.3%)."""
    vae, _ = exact_vae()
    z = vae.prior_z(200_000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (200_000, 1)
    assert abs(z.var().item() / (A_**2 + S_**2) - 1) < 0.01


def test_sites_and_shapes():
    vae = VAE(12, ModelConfig(z_dim=4, z2_dim=3, hidden=(8,)))
    x = torch.bernoulli(torch.rand(5, 12))
    guide = pyro.poutine.trace(vae.guide).get_trace(x)
    model = pyro.poutine.trace(pyro.poutine.replay(vae.model, trace=guide)).get_trace(x)
    assert guide.nodes[LATENT]["value"].shape == (5, 4) and guide.nodes[TOP]["value"].shape == (5, 3)
    assert model.nodes[TOP]["fn"].base_dist.scale.eq(1).all()  # p(z2) = N(0, I)
    assert vae.parts == ("encoder", "decoder", "top_encoder", "top_decoder")


@pytest.mark.parametrize("changes, message", [
    (dict(guide="iaf"), "`guide=iaf` is for one layer"),
    (dict(arch="conv"), "`arch=conv` is for one layer"),
    (dict(z2_dim=-1), "`z2_dim` must be 0"),
])
def test_pairings_that_do_not_make_sense_are_refused(changes, message):
    with pytest.raises(UsageError, match=message):
        ModelConfig(**{"z2_dim": 2, **changes})


def test_the_analytic_kl_is_refused_for_two_layers():
    with pytest.raises(UsageError, match="`elbo=meanfield` takes each layer's KL"):
        make_elbo("meanfield", layers=2)
