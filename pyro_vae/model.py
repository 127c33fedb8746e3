"""The generative story of the VAE (Kingma & Welling 2014):

    z_n ~ N(0, I)                      for each image n in the data plate
    x_n ~ Likelihood(decoder(z_n))
"""

from __future__ import annotations

import pyro
import torch
from pyro import distributions as dist
from torch import Tensor

from pyro_vae.likelihoods import Likelihood
from pyro_vae.networks import Decoder

# Site and plate names shared by model and guide.
LATENT, OBSERVED, DATA_PLATE = "z", "x", "data"


def data_plate(x: Tensor, size: int | None) -> pyro.plate:
    """The plate over images. ``x`` is a minibatch of a dataset of ``size`` images: the plate's
    subsample is the minibatch, so Pyro scales log-densities by size / B and the ELBO is that of
    the whole dataset. ``size=None`` means x is the whole dataset."""
    batch = x.shape[0]
    return pyro.plate(DATA_PLATE, size or batch, subsample=torch.arange(batch, device=x.device))


def model(x: Tensor, decoder: Decoder, likelihood: Likelihood, z_dim: int, size: int | None = None) -> None:
    """z ~ N(0, I);  x ~ likelihood(decoder(z)).   x: (B, D)"""
    pyro.module("decoder", decoder)
    with data_plate(x, size):
        prior = dist.Normal(x.new_zeros(x.shape[0], z_dim), 1.0).to_event(1)  # batch (B,), event (Z,)
        z = pyro.sample(LATENT, prior)  # (B, Z), or (L, B, Z) under vectorized particles
        pyro.sample(OBSERVED, likelihood.distribution(decoder(z)), obs=x)
