"""Encoder and decoder MLPs: plain torch modules that return distribution parameters."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pyro_vae.errors import UsageError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
    "leaky-relu": nn.LeakyReLU,
}


def mlp(in_features: int, hidden: Sequence[int], out_features: int, activation: str) -> nn.Sequential:
    """Linear layers of widths ``in -> hidden... -> out``, the activation between them, none after."""
    if activation not in ACTIVATIONS:
        raise UsageError(f"unknown activation {activation!r}: choose one of {', '.join(ACTIVATIONS)}")
    widths = [in_features, *hidden]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(widths[-1], out_features))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Amortized q(z|x) = N(loc(x), diag scale(x)^2) (Kingma & Welling 2014, App. C.2).

    One linear head emits loc and log-variance together (one matmul instead of two).
    """

    def __init__(self, x_dim: int, hidden: Sequence[int], z_dim: int, activation: str = "relu") -> None:
        super().__init__()
        self.net = mlp(x_dim, hidden, 2 * z_dim, activation)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        loc, log_var = self.net(x).chunk(2, dim=-1)  # (B, Z), (B, Z)
        return loc, torch.exp(0.5 * log_var)  # scale = sigma, from log sigma^2 as in the paper

    def with_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """loc, scale and the last hidden layer h(x), the context of a flow guide.   -> (B, Z), (B, Z), (B, H)"""
        h = self.net[:-1](x)  # (B, H)
        loc, log_var = self.net[-1](h).chunk(2, dim=-1)
        return loc, torch.exp(0.5 * log_var), h


class Decoder(nn.Module):
    """z (..., Z) -> decoder output (..., out_features), read by a likelihood object."""

    def __init__(self, z_dim: int, hidden: Sequence[int], out_features: int, activation: str = "relu") -> None:
        super().__init__()
        self.net = mlp(z_dim, hidden, out_features, activation)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)  # (..., out_features)

    def set_output_bias(self, bias: Tensor) -> None:
        """Start the output at ``bias`` (out_features,): the last layer's bias."""
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        last.bias.copy_(bias)
