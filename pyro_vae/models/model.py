"""The generative story of the VAE (Kingma & Welling 2014):

    z_n ~ N(0, I)                      for each image n in the data plate
    x_n ~ Likelihood(decoder(z_n))
"""

from __future__ import annotations

import pyro
import torch
from pyro import distributions as dist
from torch import Tensor

from pyro_vae.arguments import require_count, require_tensor
from pyro_vae.models.likelihoods import Likelihood
from pyro_vae.models.networks import Decoder

# Site and plate names shared by model and guide.
LATENT, OBSERVED, DATA_PLATE = "z", "x", "data"


def data_plate(x: Tensor | None, size: int | None, subsample: Tensor | None = None,
               device: torch.device | None = None) -> pyro.plate:
    """The plate over images; entered, it yields the minibatch's indices in the dataset, (B,).

    ``x`` is a minibatch (B, D) of a dataset of ``size`` images, at dataset indices ``subsample``
    (default 0..B-1): the plate subsamples, so Pyro scales log-densities by size / B and the ELBO
    is that of the whole dataset. ``size=None`` means x is the whole dataset. ``x=None`` draws
    ``size`` new images.
    """
    if x is None:
        if size is None:
            raise ValueError("model(None, size=B) draws B images from p(x): pass size")
        return pyro.plate(DATA_PLATE, require_count("size", size), device=None if device is None else str(device))
    if require_tensor("x", x).dim() != 2:
        raise ValueError(f"x must be a batch of flattened images, (B, D); got shape {tuple(x.shape)}"
                         + (": one image is x[None], of shape (1, D)" if x.dim() == 1 else ""))
    size = x.shape[0] if size is None else require_count("size", size)
    if subsample is None:
        subsample = torch.arange(x.shape[0], device=x.device)
    elif subsample.shape != x.shape[:1]:
        raise ValueError(f"`subsample` must hold one dataset index per image of x, ({x.shape[0]},); got shape "
                         f"{tuple(subsample.shape)}")
    elif subsample.device.type == "cpu" and len(subsample) and not 0 <= int(subsample.min()) <= int(
            subsample.max()) < size:  # (on a GPU, the check would wait for it at every step)
        raise ValueError(f"`subsample` holds indices {int(subsample.min())}..{int(subsample.max())}, outside the "
                         f"dataset of `size={size}` images (0..{size - 1})")
    return pyro.plate(DATA_PLATE, size, subsample=subsample)


def model(
    x: Tensor | None, decoder: Decoder, likelihood: Likelihood, z_dim: int, size: int | None = None,
    subsample: Tensor | None = None,
) -> None:
    """z ~ N(0, I);  x ~ likelihood(decoder(z)).   x: (B, D), observed; or None: sampled, B = size"""
    pyro.module("decoder", decoder)
    device = next(decoder.parameters()).device
    with data_plate(x, size, subsample, device) as index:  # (B,)
        assert index is not None  # a plate of known size yields its indices
        prior = dist.Normal(torch.zeros(len(index), z_dim, device=device), 1.0).to_event(1)  # batch (B,), event (Z,)
        z = pyro.sample(LATENT, prior)  # (B, Z), or (L, B, Z) under vectorized particles
        pyro.sample(OBSERVED, likelihood.distribution(decoder(z)), obs=x)
