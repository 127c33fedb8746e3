"""The inverse autoregressive flow of Kingma et al. (2016) on top of the encoder's Gaussian: q(z|x) is
N(loc(x), diag scale(x)^2) pushed through K conditional affine autoregressive transforms whose context is
the encoder's last hidden layer h(x) (the paper's sec. 4), with the order of z reversed between them.

Each transform is Pyro's ConditionalAffineAutoregressive in its "stable" form, the paper's eq. 11-14:
z <- s * z + (1 - s) * m, s = sigmoid(.) gated, so that it starts close to the identity. A sample's
log q(z|x) reuses the values of its forward pass (the transforms cache them); at other points (AIS moves
z by HMC) the inverse is exact, one autoregressive pass per latent dimension.
"""

from __future__ import annotations

import torch
from pyro import distributions as dist
from pyro.distributions.transforms import ConditionalAffineAutoregressive, Permute, conditional_affine_autoregressive
from torch import Tensor, nn


class IAF(nn.Module):
    """``num_layers`` conditional IAF transforms of z (Z,) given a context (H,), each autoregressive network
    with one hidden layer of ``hidden`` units (default 2 Z + H, ample for the made masks)."""

    def __init__(self, z_dim: int, context_dim: int, num_layers: int, hidden: int | None = None) -> None:
        super().__init__()
        width = hidden or 2 * z_dim + context_dim
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
