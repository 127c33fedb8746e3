"""Likelihoods p(x|z): objects that turn decoder output into a Pyro distribution over an image.

Each has ``params_per_pixel`` (how many decoder outputs it reads per pixel), ``distribution(out)``
returning a distribution with event shape (D,), and ``check_support(x)`` raising a UsageError
for data it cannot score. The only place a likelihood is chosen by name is ``make_likelihood``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro import distributions as dist
from torch import Tensor

from pyro_vae.config import ModelConfig
from pyro_vae.errors import UsageError
from pyro_vae.models.distributions import BernoulliLogits, ChannelCorrelatedNormal, ContinuousBernoulliLogits

CHECK_CHUNK = 1 << 20  # values per pass of the support checks
MEAN_CLAMP = 1e-3  # logit of a pixel mean clamped to [1e-3, 1 - 1e-3]: always-black borders start at -6.9


def _logit_of_mean(x: Tensor) -> Tensor:
    """The logit of each pixel's mean over the dataset.   (N, D) -> (D,)"""
    return torch.logit(x.mean(0).clamp(MEAN_CLAMP, 1 - MEAN_CLAMP))


def _describe_range(x: Tensor) -> str:
    return f"[{x.min().item():.4g}, {x.max().item():.4g}]"


def holds_everywhere(x: Tensor, test: Callable[[Tensor], Tensor]) -> bool:
    """Whether the elementwise ``test`` holds for every value of ``x``, tested CHECK_CHUNK values at a
    time: the boolean temporaries then stay in cache (about twice as fast as one test of all of x)."""
    return all(bool(test(part).all()) for part in x.reshape(-1).split(CHECK_CHUNK))


def all_binary(x: Tensor) -> bool:
    """Whether every value of ``x`` is 0 or 1 (NaN is not)."""
    return holds_everywhere(x, lambda v: (v == 0) | (v == 1))


def in_unit_interval(x: Tensor) -> bool:
    """Whether every value of ``x`` lies in [0, 1] (NaN does not)."""
    return holds_everywhere(x, lambda v: (v >= 0) & (v <= 1))


def _check_unit_interval(x: Tensor, name: str) -> None:
    if not in_unit_interval(x):
        raise UsageError(
            f"the {name} likelihood needs pixel values in [0, 1], got values in {_describe_range(x)}: "
            "rescale the data to [0, 1] (e.g. divide 8-bit pixels by 255) or use `likelihood=gaussian`"
        )


class Bernoulli:
    """x_d ~ Bernoulli(sigmoid(out_d)), for binary data.

    ``grey_targets=True`` scores grey values in [0, 1] with the same formula (binary cross-entropy),
    as pytorch/examples does. That is not a normalized density on [0, 1], so its "log p(x)" is not
    comparable with any likelihood; it exists to reproduce that reference.
    """

    name = "bernoulli"
    params_per_pixel = 1
    wants_binary_data = True

    def __init__(self, grey_targets: bool = False) -> None:
        self.grey_targets = grey_targets

    def distribution(self, out: Tensor) -> dist.TorchDistribution:
        # logits, not probs: log(sigmoid) underflows to -inf for confident pixels
        validate = False if self.grey_targets else None  # grey targets are outside {0, 1} on purpose
        return BernoulliLogits(logits=out, validate_args=validate).to_event(1)

    def check_support(self, x: Tensor) -> None:
        if self.grey_targets:
            _check_unit_interval(x, self.name)
        elif not all_binary(x):
            raise UsageError(
                f"the bernoulli likelihood needs binary pixels (0 or 1), got values in {_describe_range(x)}: "
                "pass `binarize=dynamic` or `binarize=threshold`, or use `likelihood=continuous-bernoulli` for "
                "grey data"
            )

    def output_bias(self, x: Tensor) -> Tensor:
        """Decoder output bias giving p(x|z) each pixel's mean over ``x`` (Burda et al. 2016).   (N, D) -> (D,)"""
        return _logit_of_mean(x)


class ContinuousBernoulli:
    """x_d ~ ContinuousBernoulli(logits=out_d): a normalized density on [0, 1] for grey pixels
    (Loaiza-Ganem & Cunningham 2019), with the normalizer computed from the logits (see
    continuous_bernoulli_log_norm): the decoder's logits reach |eta| > 15 on MNIST's borders."""

    name = "continuous-bernoulli"
    params_per_pixel = 1
    wants_binary_data = False

    def distribution(self, out: Tensor) -> dist.TorchDistribution:
        return ContinuousBernoulliLogits(logits=out).to_event(1)

    def check_support(self, x: Tensor) -> None:
        _check_unit_interval(x, self.name)

    def output_bias(self, x: Tensor) -> Tensor:
        """The logit of each pixel's mean over ``x``, as for Bernoulli.   (N, D) -> (D,)"""
        return _logit_of_mean(x)


class Gaussian:
    """x_d ~ N(mu_d, sigma_d^2) with the decoder emitting mu and log sigma^2 per pixel, as in
    Kingma & Welling (App. C.2); sigma = scale_floor + exp(log sigma^2 / 2) never falls below the floor."""

    name = "gaussian"
    params_per_pixel = 2
    wants_binary_data = False

    def __init__(self, scale_floor: float = ModelConfig.scale_floor) -> None:
        self.scale_floor = scale_floor

    def distribution(self, out: Tensor) -> dist.TorchDistribution:
        loc, log_var = out.chunk(2, dim=-1)  # (..., D), (..., D)
        return dist.Normal(loc, self.scale_floor + torch.exp(0.5 * log_var)).to_event(1)

    def check_support(self, x: Tensor) -> None:
        if not holds_everywhere(x, torch.isfinite):
            raise UsageError("the gaussian likelihood needs finite data, got NaN or infinite values")

    def output_bias(self, x: Tensor) -> Tensor:
        """Each pixel's mean and (above the floor) standard deviation over ``x``.   (N, D) -> (2D,)"""
        spread = (x.std(0) - self.scale_floor).clamp(min=self.scale_floor)
        return torch.cat([x.mean(0), 2 * spread.log()])  # loc, log sigma^2


class CorrelatedGaussian:
    """Each pixel's colour x_p ~ N(mu_p, L_p L_p^T), a full covariance over its C channels (ChannelCorrelatedNormal),
    pixels independent given z; the decoder emits mu, log diag(L)^2 and L's entries below the diagonal (scaled by
    their row's diagonal), 3 maps of C*H*W for C = 3, 2 for C = 1 (where it is the Gaussian). The diagonal is
    scale_floor + exp(log diag^2 / 2), as the Gaussian's sigma. For colour photographs: their residuals about a
    reconstruction are correlated across R, G and B, and three independent Gaussians pay for that in bits."""

    name = "correlated-gaussian"
    wants_binary_data = False

    def __init__(self, image_shape: tuple[int, int, int] | None, scale_floor: float = ModelConfig.scale_floor) -> None:
        if image_shape is None:
            raise UsageError("`likelihood=correlated-gaussian` correlates each pixel's colour channels, so it needs "
                             "the images' shape (C, H, W): pass `image_shape`, or use `likelihood=gaussian`")
        if image_shape[0] not in (1, 3):
            raise UsageError(f"`likelihood=correlated-gaussian` is for grey or RGB images (1 or 3 channels), and these "
                             f"have {image_shape[0]}: use `likelihood=gaussian`")
        self.channels, self.scale_floor = image_shape[0], scale_floor
        self.params_per_pixel = 3 if self.channels == 3 else 2

    def distribution(self, out: Tensor) -> dist.TorchDistribution:
        maps = out.chunk(self.params_per_pixel, dim=-1)  # loc, log diag^2 (and the entries below it), (..., D) each
        lower = maps[2] if self.channels == 3 else maps[0][..., :0]
        return ChannelCorrelatedNormal(maps[0], self.scale_floor + torch.exp(0.5 * maps[1]), lower, self.channels)

    def check_support(self, x: Tensor) -> None:
        if not holds_everywhere(x, torch.isfinite):
            raise UsageError(f"the {self.name} likelihood needs finite data, got NaN or infinite values")

    def output_bias(self, x: Tensor) -> Tensor:
        """The Gaussian's (each pixel's mean and standard deviation over ``x``), uncorrelated.   (N, D) -> (P*D,)"""
        start = Gaussian(self.scale_floor).output_bias(x)
        return torch.cat([start, torch.zeros(x.shape[1] * (self.params_per_pixel - 2), dtype=x.dtype)])


Likelihood = Bernoulli | ContinuousBernoulli | Gaussian | CorrelatedGaussian

LIKELIHOODS: dict[str, type[Likelihood]] = {
    cls.name: cls for cls in (Bernoulli, ContinuousBernoulli, Gaussian, CorrelatedGaussian)
}


def make_likelihood(config: ModelConfig, grey_targets: bool = False,
                    image_shape: tuple[int, int, int] | None = None) -> Likelihood:
    """The likelihood named by ``config.likelihood``; ``grey_targets`` only applies to Bernoulli, ``image_shape``
    (C, H, W) to the correlated Gaussian, which needs it."""
    if config.likelihood not in LIKELIHOODS:
        raise UsageError(
            f"unknown likelihood {config.likelihood!r}: choose one of {', '.join(LIKELIHOODS)}"
        )
    if config.likelihood == Bernoulli.name:
        return Bernoulli(grey_targets=grey_targets)
    if config.likelihood == Gaussian.name:
        return Gaussian(scale_floor=config.scale_floor)
    if config.likelihood == CorrelatedGaussian.name:
        return CorrelatedGaussian(image_shape, scale_floor=config.scale_floor)
    return ContinuousBernoulli()
