"""The VAE with two stochastic layers of Burda, Grosse & Salakhutdinov (2016, sec. 5 and app. A):

    z2_n ~ N(0, I)                                  for each image n in the data plate
    z_n | z2_n ~ N(loc(z2_n), diag scale(z2_n)^2)    (z: z1, the layer next to the data)
    x_n ~ Likelihood(decoder(z_n))

guided bottom-up, q(z|x) q(z2|z): the encoder's Gaussian for z as in the one-layer VAE, then a Gaussian for z2
from z. Between the stochastic layers run TOP_HIDDEN deterministic units (the paper's 100 tanh units, two
layers, with the model's activation); the x side uses the model's hidden widths (the paper's 200, 200).
"""

from __future__ import annotations

import pyro
import torch
from pyro import distributions as dist
from torch import Tensor

from pyro_vae.models.likelihoods import Likelihood
from pyro_vae.models.model import LATENT, OBSERVED, data_plate
from pyro_vae.models.networks import Decoder, Encoder

TOP, TOP_HIDDEN = "z2", (100, 100)  # the upper latent site; the widths between the stochastic layers


def model(x: Tensor | None, top_decoder: Encoder, decoder: Decoder, likelihood: Likelihood, z2_dim: int,
          size: int | None = None, subsample: Tensor | None = None) -> None:
    """z2 ~ N(0, I);  z ~ N(top_decoder(z2));  x ~ likelihood(decoder(z)).   x: (B, D), observed; or None"""
    pyro.module("top_decoder", top_decoder)
    pyro.module("decoder", decoder)
    device = next(decoder.parameters()).device
    with data_plate(x, size, subsample, device) as index:  # (B,)
        assert index is not None
        z2 = pyro.sample(TOP, dist.Normal(torch.zeros(len(index), z2_dim, device=device), 1.0).to_event(1))
        loc, scale = top_decoder(z2)  # (B, Z1) each, or (L, B, Z1) under vectorized particles
        z = pyro.sample(LATENT, dist.Normal(loc, scale).to_event(1))
        pyro.sample(OBSERVED, likelihood.distribution(decoder(z)), obs=x)


def guide(x: Tensor, encoder: Encoder, top_encoder: Encoder, size: int | None = None,
          subsample: Tensor | None = None) -> None:
    """z ~ N(encoder(x));  z2 ~ N(top_encoder(z)); reparameterized.   x: (B, D)"""
    pyro.module("encoder", encoder)
    pyro.module("top_encoder", top_encoder)
    with data_plate(x, size, subsample):
        loc, scale = encoder(x)  # (B, Z1), (B, Z1)
        z = pyro.sample(LATENT, dist.Normal(loc, scale).to_event(1))
        loc2, scale2 = top_encoder(z)  # (B, Z2), or (L, B, Z2)
        pyro.sample(TOP, dist.Normal(loc2, scale2).to_event(1))


def prior_draw(top_decoder: Encoder, n: int, z2_dim: int, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor:
    """z from the hierarchical prior p(z) = integral p(z2) p(z|z2) dz2, every standard normal draw scaled by
    ``temperature``: (n, Z1)."""
    weight = next(top_decoder.parameters())  # drawn on the CPU (a generator's draws the same anywhere), then moved
    z2 = temperature * torch.randn(n, z2_dim, generator=generator, dtype=weight.dtype).to(weight.device)
    loc, scale = top_decoder(z2)
    noise = torch.randn(loc.shape, generator=generator, dtype=weight.dtype).to(weight.device)
    return loc + temperature * scale * noise
