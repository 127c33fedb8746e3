"""The VAE as one torch module: encoder, decoder and likelihood, exposing Pyro's model/guide pair."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pyro_vae.config import ModelConfig
from pyro_vae.models.flows import IAF
from pyro_vae.models.guide import guide
from pyro_vae.models.likelihoods import Likelihood, make_likelihood
from pyro_vae.models.model import model
from pyro_vae.models.networks import Decoder, Encoder


class VAE(nn.Module):
    """Holds the networks; ``vae.model`` and ``vae.guide`` are what Pyro's ELBOs, ``Predictive``
    and the estimators take, called as ``(x, size=None, subsample=None)``: x (B, D) a minibatch of a
    dataset of ``size`` images at indices ``subsample`` (see model.data_plate). ``vae.model(None,
    size=B)`` draws B images x ~ p(x)."""

    def __init__(self, x_dim: int, config: ModelConfig, likelihood: Likelihood | None = None) -> None:
        super().__init__()
        self.x_dim = x_dim
        self.config = config
        self.likelihood = likelihood or make_likelihood(config)
        self.encoder = Encoder(x_dim, config.hidden, config.z_dim, config.activation)
        out_features = x_dim * self.likelihood.params_per_pixel
        self.decoder = Decoder(config.z_dim, config.hidden[::-1], out_features, config.activation)
        self.flow = IAF(config.z_dim, config.hidden[-1], config.flow_layers) if config.guide == "iaf" else None
        # One bound method each for the VAE's lifetime: Pyro's JIT ELBOs key their compiled traces by
        # id(model) and id(guide), and every `vae.model` lookup would otherwise make a new object with
        # a new id, so the JIT would retrace at every step (measured: 5x slower than no JIT).
        self.model = self.model  # type: ignore[method-assign]
        self.guide = self.guide  # type: ignore[method-assign]
        self.annealing_guide = self.guide if self.flow is None else self.base_guide

    def model(self, x: Tensor | None, size: int | None = None, subsample: Tensor | None = None) -> None:
        model(x, self.decoder, self.likelihood, self.config.z_dim, size, subsample)

    def guide(self, x: Tensor, size: int | None = None, subsample: Tensor | None = None) -> None:
        guide(x, self.encoder, size, subsample, self.flow)

    def base_guide(self, x: Tensor, size: int | None = None, subsample: Tensor | None = None) -> None:
        """The encoder's Gaussian N(loc(x), diag scale(x)^2) without the flow: where AIS starts for a flow
        guide (``annealing_guide``). AIS needs log q at the points HMC moves to, which an IAF gives only by
        an inverse of one autoregressive pass per latent dimension (measured: 20 AIS steps on 50 images took
        74 s against about 2 s from the Gaussian); any start keeps AIS a stochastic lower bound, and the
        encoder's Gaussian is already near the posterior (Wu et al. 2017 start from the prior)."""
        guide(x, self.encoder, size, subsample)

    @torch.no_grad()
    def init_output_bias(self, x: Tensor) -> None:
        """Start p(x|z) at each pixel's mean over the training images ``x`` (N, D), as Burda et
        al. (2016) do: the decoder's last bias is set by the likelihood (the logit of the mean
        pixel for Bernoulli), so early training spends no steps learning the average image."""
        last = self.decoder.net[-1]
        assert isinstance(last, nn.Linear)
        last.bias.copy_(self.likelihood.output_bias(x))

    def reconstruct(self, x: Tensor) -> Tensor:
        """Mean of p(x|z) at z = the encoder's mean (through the flow, for a flow guide).   (B, D) -> (B, D)"""
        return self.decode_mean(self.guide_center(x))

    def guide_center(self, x: Tensor) -> Tensor:
        """The encoder's mean of q(z|x), or for a flow guide its image under the flow (the flow's transform of
        the base mean, not the flow's own mean, which has no closed form).   (B, D) -> (B, Z)"""
        if self.flow is None:
            return self.encoder(x)[0]
        loc, scale, h = self.encoder.with_features(x)
        q = self.flow.distribution(loc, scale, h)
        for transform in q.transforms:
            loc = transform(loc)
        return loc

    def decode_mean(self, z: Tensor) -> Tensor:
        """Mean of p(x|z).   (..., Z) -> (..., D)"""
        return self.likelihood.distribution(self.decoder(z)).mean
