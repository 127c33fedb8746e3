"""The amortized variational posterior q(z|x) = N(loc(x), diag scale(x)^2), or that Gaussian through an
inverse autoregressive flow (flows.py)."""

from __future__ import annotations

import pyro
from pyro import distributions as dist
from torch import Tensor

from pyro_vae.models.flows import IAF
from pyro_vae.models.model import LATENT, data_plate
from pyro_vae.models.networks import Encoder


def guide(x: Tensor, encoder: Encoder, size: int | None = None, subsample: Tensor | None = None,
          flow: IAF | None = None) -> None:
    """z ~ N(loc(x), diag scale(x)^2), through ``flow`` when given; reparameterized.   x: (B, D), at
    dataset indices ``subsample``"""
    pyro.module("encoder", encoder)
    if flow is not None:
        pyro.module("flow", flow)
    with data_plate(x, size, subsample):
        if flow is None:
            loc, scale = encoder(x)  # (B, Z), (B, Z)
            pyro.sample(LATENT, dist.Normal(loc, scale).to_event(1))
        else:
            loc, scale, h = encoder.with_features(x)  # (B, Z), (B, Z), (B, H)
            pyro.sample(LATENT, flow.distribution(loc, scale, h))
