"""The inverse autoregressive flow of Kingma et al. (2016) on top of the encoder's Gaussian: q(z|x) is
N(loc(x), diag scale(x)^2) pushed through K conditional affine autoregressive transforms whose context is
the encoder's last hidden layer h(x) (the paper's sec. 4), with the order of z reversed between them.

Each transform is Pyro's ConditionalAffineAutoregressive in its "stable" form, the paper's eq. 11-14:
z <- s * z + (1 - s) * m, s = sigmoid(.) gated, so that it starts close to the identity. A sample's
log q(z|x) reuses the values of its forward pass (the transforms cache them); at any other point the
inverse is exact but takes one autoregressive pass per latent dimension.

AIS moves z by HMC and needs log q wherever it goes, so for a flow guide it runs in the flow's base space
instead (base_model, base_guide): u ~ N(loc(x), diag scale(x)^2) and the model's density seen through
z = f_x(u), p(x, f_x(u)) |det df_x/du|. p(x) is the same integral in either variable, the start is the
encoder's Gaussian exactly, and only forward passes of the flow are needed.
"""

from __future__ import annotations

import pyro
import torch
from pyro import distributions as dist
from pyro.distributions.transforms import ConditionalAffineAutoregressive, Permute, conditional_affine_autoregressive
from torch import Tensor, nn

from pyro_vae.models.likelihoods import Likelihood
from pyro_vae.models.model import LATENT, OBSERVED, data_plate
from pyro_vae.models.networks import Decoder, Encoder

BASE = "z_base"  # u, the flow's base variable (z = f_x(u)): the latent AIS moves for a flow guide


def iaf_width(z_dim: int, context_dim: int) -> int:
    """The hidden units of an IAF layer's autoregressive network by default: 2 Z + H, ample for the made masks."""
    return 2 * z_dim + context_dim


class IAF(nn.Module):
    """``num_layers`` conditional IAF transforms of z (Z,) given a context (H,), each autoregressive network
    with one hidden layer of ``hidden`` units (default 2 Z + H, ample for the made masks)."""

    def __init__(self, z_dim: int, context_dim: int, num_layers: int, hidden: int | None = None) -> None:
        super().__init__()
        width = hidden or iaf_width(z_dim, context_dim)
        self.layers = nn.ModuleList(
            conditional_affine_autoregressive(z_dim, context_dim, hidden_dims=[width], stable=True)
            for _ in range(num_layers)
        )
        self.register_buffer("reverse", torch.arange(z_dim - 1, -1, -1))

    def distribution(self, loc: Tensor, scale: Tensor, context: Tensor) -> dist.TransformedDistribution:
        """q(z|x): N(loc, diag scale^2) (B, Z) through the transforms conditioned on ``context`` (B, H)."""
        transforms: list = []
        for i, layer in enumerate(self.layers):
            if i:
                transforms.append(Permute(self.reverse))
            assert isinstance(layer, ConditionalAffineAutoregressive)  # for the type checker: ModuleList's items
            transforms.append(layer.condition(context))
        return dist.TransformedDistribution(dist.Normal(loc, scale).to_event(1), transforms)


def push_forward(transforms: list, u: Tensor) -> tuple[Tensor, Tensor]:
    """z = f(u) through ``transforms`` and log |det df/du|.   (..., Z) -> (..., Z), (...)"""
    z, log_det = u, u.new_zeros(u.shape[:-1])
    for transform in transforms:
        y = transform(z)
        log_det = log_det + transform.log_abs_det_jacobian(z, y)
        z = y
    return z, log_det


def pull_back(transforms: list, z: Tensor) -> Tensor:
    """u = f^-1(z): exact, one autoregressive pass per latent dimension and layer.   (..., Z) -> (..., Z)"""
    for transform in reversed(transforms):
        z = transform.inv(z)
    return z


def base_guide(x: Tensor, encoder: Encoder, size: int | None = None, subsample: Tensor | None = None) -> None:
    """u ~ N(loc(x), diag scale(x)^2): the flow guide's base, at site BASE."""
    pyro.module("encoder", encoder)
    with data_plate(x, size, subsample):
        loc, scale = encoder(x)  # (B, Z), (B, Z)
        pyro.sample(BASE, dist.Normal(loc, scale).to_event(1))


def base_model(x: Tensor, encoder: Encoder, flow: IAF, decoder: Decoder, likelihood: Likelihood,
               size: int | None = None, subsample: Tensor | None = None) -> None:
    """The model of model.py as a density over the flow's base variable u: z = f_x(u);
    log p(u, x) = log p(z) + log |det df_x/du| + log p(x|z)."""
    for name, module in (("decoder", decoder), ("encoder", encoder), ("flow", flow)):
        pyro.module(name, module)
    with data_plate(x, size, subsample):
        loc, scale, h = encoder.with_features(x)  # (B, Z), (B, Z), (B, H)
        # u's own density is the factor and the two sites below: its site only carries the value
        u = pyro.sample(BASE, dist.Normal(torch.zeros_like(loc), 1.0).to_event(1).mask(False))
        z, log_det = push_forward(flow.distribution(loc, scale, h).transforms, u)  # (..., B, Z), (..., B)
        pyro.factor("flow_log_det", log_det)
        pyro.sample(LATENT, dist.Normal(torch.zeros_like(z), 1.0).to_event(1), obs=z)
        pyro.sample(OBSERVED, likelihood.distribution(decoder(z)), obs=x)
