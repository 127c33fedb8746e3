"""The VAE as one torch module: encoder, decoder and likelihood, exposing Pyro's model/guide pair."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pyro_vae.config import ModelConfig
from pyro_vae.errors import UsageError
from pyro_vae.models import flows, hierarchical
from pyro_vae.models.conv import ConvDecoder, ConvEncoder
from pyro_vae.models.flows import IAF
from pyro_vae.models.guide import guide
from pyro_vae.models.likelihoods import Likelihood, make_likelihood
from pyro_vae.models.model import LATENT, model
from pyro_vae.models.networks import Decoder, Encoder


class VAE(nn.Module):
    """Holds the networks; ``vae.model`` and ``vae.guide`` are what Pyro's ELBOs, ``Predictive``
    and the estimators take, called as ``(x, size=None, subsample=None)``: x (B, D) a minibatch of a
    dataset of ``size`` images at indices ``subsample`` (see model.data_plate). ``vae.model(None,
    size=B)`` draws B images x ~ p(x)."""

    def __init__(self, x_dim: int, config: ModelConfig, likelihood: Likelihood | None = None,
                 image_shape: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        if isinstance(x_dim, bool) or not isinstance(x_dim, int) or x_dim < 1:
            raise UsageError(f"`x_dim` (pixels per image) must be a positive integer, got {x_dim!r}")
        if image_shape is not None and not (isinstance(image_shape, (tuple, list)) and len(image_shape) == 3 and all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in image_shape)):
            raise UsageError(f"`image_shape` must be (channels, height, width), three positive integers, got "
                             f"{image_shape!r}")
        if image_shape is not None and math.prod(image_shape) != x_dim:
            raise UsageError(f"`image_shape={tuple(image_shape)}` holds {math.prod(image_shape)} pixels, not "
                             f"`x_dim={x_dim}`")
        self.x_dim = x_dim
        self.image_shape = None if image_shape is None else (image_shape[0], image_shape[1], image_shape[2])  # C, H, W
        self.config = config
        self.likelihood = likelihood or make_likelihood(config, image_shape=self.image_shape)
        self.encoder: Encoder
        self.decoder: Decoder
        if config.arch == "conv":
            if image_shape is None:
                raise UsageError("`arch=conv` needs the images' shape: pass `image_shape=(C, H, W)`")
            self.encoder = ConvEncoder(image_shape, config.hidden[-1], config.z_dim, config.activation)
            self.decoder = ConvDecoder(config.z_dim, config.hidden[-1], image_shape, self.likelihood.params_per_pixel,
                                       config.activation)
        else:
            self.encoder = Encoder(x_dim, config.hidden, config.z_dim, config.activation)
            out_features = x_dim * self.likelihood.params_per_pixel
            self.decoder = Decoder(config.z_dim, config.hidden[::-1], out_features, config.activation)
        self.flow = IAF(config.z_dim, config.hidden[-1], config.flow_layers) if config.guide == "iaf" else None
        if config.z2_dim:  # q(z2|z) and p(z|z2), Gaussians from dense layers (hierarchical.py)
            self.top_encoder = Encoder(config.z_dim, hierarchical.TOP_HIDDEN, config.z2_dim, config.activation)
            self.top_decoder = Encoder(config.z2_dim, hierarchical.TOP_HIDDEN[::-1], config.z_dim, config.activation)
        # the networks a checkpoint holds, by attribute name
        self.parts = ("encoder", "decoder") + (("flow",) if self.flow is not None else ()) + (
            ("top_encoder", "top_decoder") if config.z2_dim else ())
        # One bound method each for the VAE's lifetime: Pyro's JIT ELBOs key their compiled traces by
        # id(model) and id(guide), and every `vae.model` lookup would otherwise make a new object with
        # a new id, so the JIT would retrace at every step (slower than no JIT at all).
        self.model = self.model  # type: ignore[method-assign]
        self.guide = self.guide  # type: ignore[method-assign]
        # what AIS anneals between: the guide and the model, or for a flow guide the same in its base space
        self.annealing_model, self.annealing_guide = (
            (self.model, self.guide) if self.flow is None else (self.base_model, self.base_guide))

    def check_images(self, x: Tensor | None) -> None:
        """A ValueError naming what is wrong when ``x``, images (B, D) to score, does not fit this VAE: D other than
        x_dim, another dtype than its weights' (integer pixels among them) or another device. (Not a tensor, or
        not (B, D): data_plate says so.)"""
        if not isinstance(x, Tensor) or x.dim() != 2:
            return
        weight = next(self.parameters())
        if x.shape[-1] != self.x_dim:
            raise ValueError(f"x has {x.shape[-1]} values per image, and this VAE's images have `x_dim={self.x_dim}`: "
                             "pass images flattened as the VAE was built for, (B, x_dim)")
        if x.dtype != weight.dtype:
            fix = f"x.to({weight.dtype})" if x.is_floating_point() else "x.float() / 255 for 8-bit pixels"
            raise ValueError(f"x holds {x.dtype} values and the VAE's weights are {weight.dtype}: pass {fix}")
        if x.device != weight.device:
            raise ValueError(f"x is on {x.device} and the VAE on {weight.device}: pass x.to('{weight.device}')")

    def model(self, x: Tensor | None, size: int | None = None, subsample: Tensor | None = None) -> None:
        self.check_images(x)
        if self.config.z2_dim:
            hierarchical.model(x, self.top_decoder, self.decoder, self.likelihood, self.config.z2_dim, size,
                               subsample)
        else:
            model(x, self.decoder, self.likelihood, self.config.z_dim, size, subsample)

    def guide(self, x: Tensor, size: int | None = None, subsample: Tensor | None = None) -> None:
        self.check_images(x)
        if self.config.z2_dim:
            hierarchical.guide(x, self.encoder, self.top_encoder, size, subsample)
        else:
            guide(x, self.encoder, size, subsample, self.flow)

    def base_model(self, x: Tensor, size: int | None = None, subsample: Tensor | None = None) -> None:
        """A flow guide's AIS target: the model as a density over the flow's base variable (flows.py)."""
        assert self.flow is not None
        self.check_images(x)
        flows.base_model(x, self.encoder, self.flow, self.decoder, self.likelihood, size, subsample)

    def base_guide(self, x: Tensor, size: int | None = None, subsample: Tensor | None = None) -> None:
        """A flow guide's AIS start: the encoder's Gaussian, over the flow's base variable (flows.py)."""
        self.check_images(x)
        flows.base_guide(x, self.encoder, size, subsample)

    def annealing_latents(self, x: Tensor, latents: dict[str, Tensor]) -> dict[str, Tensor]:
        """The model's latents of images x (site -> (N, ...): z, and z2 with two layers) as the sites of the
        annealing pair: themselves, or for a flow guide u = f_x^-1(z) (exact). Reverse AIS starts there."""
        if self.flow is None:
            return latents
        return {flows.BASE: flows.pull_back(self._flow_of(x)[1], latents[LATENT])}

    def prior_z(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """z ~ p(z): N(0, I), or with two layers z2 ~ N(0, I) through p(z|z2); at ``temperature`` T every
        standard normal draw is scaled by T (one layer: N(0, T^2 I)).   -> (n, Z)"""
        if self.config.z2_dim:
            return hierarchical.prior_draw(self.top_decoder, n, self.config.z2_dim, generator, temperature)
        weight = next(self.decoder.parameters())
        return temperature * torch.randn(n, self.config.z_dim, generator=generator, dtype=weight.dtype).to(
            weight.device)

    def _flow_of(self, x: Tensor) -> tuple[Tensor, list]:
        """The encoder's mean (B, Z) and the flow's transforms conditioned on x's features."""
        assert self.flow is not None
        loc, scale, h = self.encoder.with_features(x)
        return loc, self.flow.distribution(loc, scale, h).transforms

    @torch.no_grad()
    def init_output_bias(self, x: Tensor) -> None:
        """Start p(x|z) at each pixel's mean over the training images ``x`` (N, D), as Burda et
        al. (2016) do: the decoder's last bias is set by the likelihood (the logit of the mean
        pixel for Bernoulli), so early training spends no steps learning the average image."""
        self.decoder.set_output_bias(self.likelihood.output_bias(x))

    def reconstruct(self, x: Tensor) -> Tensor:
        """Mean of p(x|z) at z = the encoder's mean (through the flow, for a flow guide).   (B, D) -> (B, D)"""
        return self.decode_mean(self.guide_center(x))

    def guide_center(self, x: Tensor) -> Tensor:
        """The encoder's mean of q(z|x), or for a flow guide its image under the flow (the flow's transform of
        the base mean, not the flow's own mean, which has no closed form).   (B, D) -> (B, Z)"""
        if self.flow is None:
            return self.encoder(x)[0]
        loc, transforms = self._flow_of(x)
        return flows.push_forward(transforms, loc)[0]

    def decode_mean(self, z: Tensor) -> Tensor:
        """Mean of p(x|z).   (..., Z) -> (..., D)"""
        return self.likelihood.distribution(self.decoder(z)).mean
