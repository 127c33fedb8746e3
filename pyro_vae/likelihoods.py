"""Likelihoods p(x|z): objects that turn decoder output into a Pyro distribution over an image.

Each has ``params_per_pixel`` (how many decoder outputs it reads per pixel), ``distribution(out)``
returning a distribution with event shape (D,), and ``check_support(x)`` raising a UsageError
for data it cannot score. The only place a likelihood is chosen by name is ``make_likelihood``.
"""

from __future__ import annotations

import math

import torch
from pyro import distributions as dist
from torch import Tensor
from torch.distributions.utils import broadcast_all

from pyro_vae.config import ModelConfig
from pyro_vae.errors import UsageError

MEAN_CLAMP = 1e-3  # logit of a pixel mean clamped to [1e-3, 1 - 1e-3]: always-black borders start at -6.9


def _logit_of_mean(x: Tensor) -> Tensor:
    """The logit of each pixel's mean over the dataset.   (N, D) -> (D,)"""
    return torch.logit(x.mean(0).clamp(MEAN_CLAMP, 1 - MEAN_CLAMP))


def _describe_range(x: Tensor) -> str:
    return f"[{x.min().item():.4g}, {x.max().item():.4g}]"


def _check_unit_interval(x: Tensor, name: str) -> None:
    if not bool(((x >= 0) & (x <= 1)).all()):
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
        return dist.Bernoulli(logits=out, validate_args=validate).to_event(1)

    def check_support(self, x: Tensor) -> None:
        if self.grey_targets:
            _check_unit_interval(x, self.name)
        elif not bool(((x == 0) | (x == 1)).all()):
            raise UsageError(
                f"the bernoulli likelihood needs binary pixels (0 or 1), got values in {_describe_range(x)}: "
                "pass `binarize=dynamic` or `binarize=threshold`, or use `likelihood=continuous-bernoulli` for "
                "grey data"
            )

    def output_bias(self, x: Tensor) -> Tensor:
        """Decoder output bias giving p(x|z) each pixel's mean over ``x`` (Burda et al. 2016).   (N, D) -> (D,)"""
        return _logit_of_mean(x)


SERIES_BELOW = 0.1  # |logit| below which the continuous Bernoulli's functions use their Taylor series


def continuous_bernoulli_log_norm(logits: Tensor) -> Tensor:
    """log C(eta) of the continuous Bernoulli with logit eta, C(eta) = eta / tanh(eta / 2)
    (Loaiza-Ganem & Cunningham 2019, eq. 7 with lambda = sigmoid(eta)).   (...) -> (...)

    From the logits, not the probabilities: torch's version clamps probs to [eps, 1 - eps], which
    caps |eta| at ~16 in float32 and under-normalizes the density beyond (at eta = -50 it integrates
    to 0.32). Here, with a = |eta|: log C = log a - log(1 - e^-a) + log(1 + e^-a), exact for every a
    > 0 in float32 and float64; below SERIES_BELOW, where the first two terms nearly cancel, the
    series log 2 + eta^2/12 - 7 eta^4/1440 + 31 eta^6/90720 (next term < 3e-13 there).
    """
    a = logits.abs()
    small = a < SERIES_BELOW
    a_safe = torch.where(small, torch.ones_like(a), a)  # the unused branch stays finite, and so does its gradient
    exact = a_safe.log() - torch.log(-torch.expm1(-a_safe)) + torch.log1p(torch.exp(-a_safe))
    sq = logits.square()
    series = math.log(2.0) + sq * (1 / 12 + sq * (-7 / 1440 + sq * (31 / 90720)))
    return torch.where(small, series, exact)


class ContinuousBernoulliLogits(dist.ContinuousBernoulli):
    """Pyro's ContinuousBernoulli with log_prob, mean and icdf (hence sampling) computed from the
    logits, stably for every logit the decoder can emit; see continuous_bernoulli_log_norm.
    Variance, entropy and cdf are torch's (probability-clamped) ones; nothing here uses them."""

    def __init__(self, logits: Tensor, validate_args: bool | None = None) -> None:
        super().__init__(logits=logits, validate_args=validate_args)

    def expand(
        self, batch_shape: torch.Size, _instance: dist.ContinuousBernoulli | None = None
    ) -> ContinuousBernoulliLogits:
        new = self._get_checked_instance(ContinuousBernoulliLogits, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits, value = broadcast_all(self.logits, value)
        # log sigmoid(eta)^x (1 - sigmoid(eta))^(1 - x) = x eta - softplus(eta)
        return value * logits - torch.nn.functional.softplus(logits) + continuous_bernoulli_log_norm(logits)

    @property
    def mean(self) -> Tensor:
        # E x = 1 / (1 - e^-eta) - 1 / eta; series 1/2 + eta/12 - eta^3/720 + eta^5/30240 near 0
        eta = self.logits
        small = eta.abs() < SERIES_BELOW
        safe = torch.where(small, torch.ones_like(eta), eta)
        series = 0.5 + eta * (1 / 12 + eta.square() * (-1 / 720 + eta.square() / 30240))
        return torch.where(small, series, -1 / torch.expm1(-safe) - 1 / safe)

    def icdf(self, value: Tensor) -> Tensor:
        # F^-1(u) = log(1 + u (e^eta - 1)) / eta, written so that e^eta never overflows:
        # eta < 0: log1p(u expm1(eta)) / eta;  eta > 0: 1 + log(u + (1 - u) e^-eta) / eta
        # (exact for any eta != 0; the series only avoids 0/0, its error ~eta^3 < 1e-9 there)
        eta, u = broadcast_all(self.logits, value)
        small = eta.abs() < 1e-3
        safe = torch.where(small, torch.ones_like(eta), eta)
        negative = torch.log1p(u * torch.expm1(-safe.abs())) / -safe.abs()
        positive = 1 + torch.log(u + (1 - u) * torch.exp(-safe.abs())) / safe.abs()
        series = u + eta * u * (1 - u) / 2 + eta.square() * u * (1 - u) * (1 - 2 * u) / 6
        return torch.where(small, series, torch.where(safe < 0, negative, positive))


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
        if not bool(torch.isfinite(x).all()):
            raise UsageError("the gaussian likelihood needs finite data, got NaN or infinite values")

    def output_bias(self, x: Tensor) -> Tensor:
        """Each pixel's mean and (above the floor) standard deviation over ``x``.   (N, D) -> (2D,)"""
        spread = (x.std(0) - self.scale_floor).clamp(min=self.scale_floor)
        return torch.cat([x.mean(0), 2 * spread.log()])  # loc, log sigma^2


Likelihood = Bernoulli | ContinuousBernoulli | Gaussian

LIKELIHOODS: dict[str, type[Likelihood]] = {
    cls.name: cls for cls in (Bernoulli, ContinuousBernoulli, Gaussian)
}


def make_likelihood(config: ModelConfig, grey_targets: bool = False) -> Likelihood:
    """The likelihood named by ``config.likelihood``; ``grey_targets`` only applies to Bernoulli."""
    if config.likelihood not in LIKELIHOODS:
        raise UsageError(
            f"unknown likelihood {config.likelihood!r}: choose one of {', '.join(LIKELIHOODS)}"
        )
    if config.likelihood == Bernoulli.name:
        return Bernoulli(grey_targets=grey_targets)
    if config.likelihood == Gaussian.name:
        return Gaussian(scale_floor=config.scale_floor)
    return ContinuousBernoulli()
