"""The amortized variational posterior q(z|x) = N(loc(x), diag scale(x)^2)."""

from __future__ import annotations

import pyro
from pyro import distributions as dist
from torch import Tensor

from pyro_vae.models.model import LATENT, data_plate
from pyro_vae.models.networks import Encoder


def guide(x: Tensor, encoder: Encoder, size: int | None = None, subsample: Tensor | None = None) -> None:
    """z ~ N(loc(x), diag scale(x)^2), reparameterized.   x: (B, D), at dataset indices ``subsample``"""
    pyro.module("encoder", encoder)
    with data_plate(x, size, subsample):
        loc, scale = encoder(x)  # (B, Z), (B, Z)
        pyro.sample(LATENT, dist.Normal(loc, scale).to_event(1))
