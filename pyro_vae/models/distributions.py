"""Distributions from decoder logits with log-densities that stay exact, and fast, where the
decoder's logits sit: far into saturation (|logit| > 15 on MNIST's borders) and on every pixel of
every sample the estimators draw.

    BernoulliLogits             x ~ Bernoulli(sigmoid(eta)) for binary pixels
    BernoulliImage              its pixels as one event (``BernoulliLogits(...).to_event(1)``)
    ContinuousBernoulliLogits   x ~ CB(sigmoid(eta)) on [0, 1] (Loaiza-Ganem & Cunningham 2019)

Both are Pyro distributions (subclasses of Pyro's own) that override ``log_prob`` and nothing that
Pyro's inference relies on (shapes, ``expand``, support, sampling).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pyro import distributions as dist
from torch import Tensor
from torch.distributions.utils import broadcast_all


class _BernoulliLogProb(torch.autograd.Function):
    """x eta - softplus(eta) elementwise, and its gradient (x - sigmoid(eta)) * grad in one step.

    softplus(eta) = max(eta, 0) + log(1 + e^-|eta|), written with log, not log1p: torch's CPU log1p,
    inside its softplus and binary_cross_entropy_with_logits, runs one pixel at a time on AVX-512
    CPUs (many times slower than log there; dated timings in docs/benchmarks.md). The
    price is precision that does not matter here: log(1 + e) rounds 1 + e first, an absolute error of
    at most 1.2e-7 nats per pixel, where log1p's is 6e-8 and the float32 sum over the image's pixels
    rounds at 6e-8 times its size. Autograd through that expression would take eight backward ops;
    the closed-form gradient takes three.
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, value: Tensor) -> Tensor:  # both (..., D), broadcast already
        ctx.save_for_backward(logits, value)
        return value * logits - logits.clamp(min=0) - torch.exp(-logits.abs()).add_(1).log_()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        logits, value = ctx.saved_tensors
        grad_logits = (value - torch.sigmoid(logits)) * grad if ctx.needs_input_grad[0] else None
        grad_value = logits * grad if ctx.needs_input_grad[1] else None
        return grad_logits, grad_value


def bernoulli_log_prob(logits: Tensor, value: Tensor) -> Tensor:
    """log sigmoid(eta)^x (1 - sigmoid(eta))^(1 - x) = x eta - softplus(eta), elementwise, for any
    x (grey values in [0, 1] give the binary cross-entropy).   (...), (...) -> (...) broadcast"""
    logits, value = broadcast_all(logits, value)
    return _BernoulliLogProb.apply(logits, value)


class BernoulliLogits(dist.Bernoulli):
    """Pyro's Bernoulli with ``log_prob`` from bernoulli_log_prob: the same numbers as torch's
    (the Bernoulli log-density of the logits, finite for any finite logit), its forward and backward
    pass in a third of the time on AVX-512 CPUs, where torch's cost as much as a decoder layer's.
    ``to_event(1)`` is a BernoulliImage."""

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return bernoulli_log_prob(self.logits, value)

    def to_event(self, reinterpreted_batch_ndims: int | None = None) -> dist.Independent:
        if reinterpreted_batch_ndims == 1:
            return BernoulliImage(self, 1)
        return super().to_event(reinterpreted_batch_ndims)


HALVINGS = 4  # times the factors sigmoid(|eta|) of an image are multiplied in halves before their logs: 16 a log


class _BernoulliImageLogProb(torch.autograd.Function):
    """sum_d x_d eta_d - softplus(eta_d) over the last dimension, and its gradient (x - sigmoid(eta)) * grad.

    softplus(eta) = max(eta, 0) - log sigmoid(|eta|), and the sigmoids' logs are taken of products of 16 of them
    (the image's first half times its second, HALVINGS times while the width is even): each factor lies in
    (1/2, 1], so a product stays above 2^-16, and one log in sixteen costs less than a pass of multiplications
    (torch's CPU log is several times slower than its sigmoid; docs/benchmarks.md). A product's float32
    rounding, at most 16 half-ulps of a number in (2^-16, 1], adds at most 1e-6 nats, 5e-5 for the 49 products of
    a 784-pixel image: below the float32 rounding of the sums themselves (tests/models/test_distributions.py).
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, value: Tensor) -> Tensor:  # both (..., D), broadcast already -> (...)
        ctx.save_for_backward(logits, value)
        linear = (value * logits).sum(-1) - logits.clamp(min=0).sum(-1)  # sum_d x eta - max(eta, 0)
        factors = logits.abs().sigmoid_()  # (..., D) in (1/2, 1]
        for _ in range(HALVINGS):
            if factors.shape[-1] % 2:
                break
            half = factors.shape[-1] // 2
            factors = factors[..., :half] * factors[..., half:]  # (..., D / 2), (..., D / 4), ...
        return linear + factors.log_().sum(-1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        logits, value = ctx.saved_tensors
        grad = grad.unsqueeze(-1)
        grad_logits = (value - torch.sigmoid(logits)) * grad if ctx.needs_input_grad[0] else None
        grad_value = logits * grad if ctx.needs_input_grad[1] else None
        return grad_logits, grad_value


def bernoulli_image_log_prob(logits: Tensor, value: Tensor) -> Tensor:
    """bernoulli_log_prob summed over the last dimension, the pixels of an image, in fewer passes over them (see
    _BernoulliImageLogProb).   (..., D), (..., D) -> (...) broadcast"""
    logits, value = broadcast_all(logits, value)
    return _BernoulliImageLogProb.apply(logits, value)


class BernoulliImage(dist.Independent):
    """``BernoulliLogits(logits).to_event(1)``: the image's pixels as one event, its log-density summed by
    bernoulli_image_log_prob (the estimators' largest cost after the decoder's matrix products)."""

    def log_prob(self, value: Tensor) -> Tensor:
        base = self.base_dist
        if not isinstance(base, BernoulliLogits) or self.reinterpreted_batch_ndims != 1:
            return super().log_prob(value)
        if base._validate_args:
            base._validate_sample(value)
        return bernoulli_image_log_prob(base.logits, value)


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
        # the Bernoulli's formula (for grey x) times the normalizer C(eta)
        return bernoulli_log_prob(self.logits, value) + continuous_bernoulli_log_norm(self.logits)

    @property
    def mean(self) -> Tensor:
        # E x = 1 / (1 - e^-eta) - 1 / eta; series 1/2 + eta/12 - eta^3/720 + eta^5/30240 near 0
        eta = self.logits
        small = eta.abs() < SERIES_BELOW
        safe = torch.where(small, torch.ones_like(eta), eta)
        series = 0.5 + eta * (1 / 12 + eta.square() * (-1 / 720 + eta.square() / 30240))
        return torch.where(small, series, -1 / torch.expm1(-safe) - 1 / safe)

    def icdf(self, value: Tensor) -> Tensor:
        # F^-1(u) = log1p(u expm1(eta)) / eta, in float32 without overflow or cancellation, so that samples lie
        # in [0, 1] and keep float32's relative precision (tested against float64 at |eta| from 1e-6 to 100):
        #   eta > 0: log(1 + u (e^eta - 1)) = softplus(log u + log(e^eta - 1)), log(e^eta - 1) = eta + log(1 - e^-eta)
        #   eta < 0: log1p(u expm1(eta)) / eta while 1 + u expm1(eta) >= 1/2; nearer x = 1 the mirror image
        #            x = 1 - F^-1_{-eta}(1 - u) (the density of 1 - x has logit -eta)
        # The series near eta = 0 only avoids 0/0; its error ~eta^3 / 24 < 1e-10 there.
        eta, u = broadcast_all(self.logits, value)
        small = eta.abs() < 1e-3
        a = torch.where(small, torch.ones_like(eta), eta.abs())  # |eta|, kept away from 0 in the unused branch

        def positive(a: Tensor, u: Tensor) -> Tensor:  # F^-1 at logit a > 0
            log_expm1 = a + torch.log(-torch.expm1(-a))
            return torch.logaddexp(torch.zeros_like(u), torch.log(u) + log_expm1) / a

        arg = -u * torch.expm1(-a)  # -u expm1(eta) for eta < 0: in [0, 1)
        negative = torch.where(arg <= 0.5, torch.log1p(-arg) / -a, 1 - positive(a, 1 - u))
        series = u + eta * u * (1 - u) / 2 + eta.square() * u * (1 - u) * (1 - 2 * u) / 6
        return torch.where(small, series, torch.where(eta < 0, negative, positive(a, u))).clamp(0, 1)


class ChannelCorrelatedNormal(dist.TorchDistribution):
    """Images (..., C*H*W) whose pixels are independent, each a C-variate normal over its colour channels with a
    full covariance: x_p ~ N(loc_p, L_p L_p^T), L_p lower triangular with diagonal ``diag`` (> 0) and the entries
    below it ``lower`` times their row's diagonal (rows (1, 0), (2, 0), (2, 1) for C = 3). The residuals of an image
    about a smooth reconstruction are correlated across R, G and B (on photographs a full covariance is 0.8 bits
    a dimension shorter than three independent ones); C = 1 is the Gaussian.

    loc, diag: (..., C*H*W) in the images' layout (channel c of pixel p at c*P + p); lower: (..., C(C-1)/2 * P).
    The triangular solve is written out per channel, elementwise, for C <= 3."""

    arg_constraints: dict = {}
    support = dist.constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, diag: Tensor, lower: Tensor, channels: int,
                 validate_args: bool | None = None) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.loc, self.diag, self.lower, self.channels = loc, diag, lower, channels
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    def _by_channel(self, t: Tensor) -> list[Tensor]:
        """(..., k*P) -> k tensors (..., P): the maps of a channel-major layout, k = C for loc and diag."""
        pixels = self.loc.shape[-1] // self.channels
        return list(t.chunk(t.shape[-1] // pixels, dim=-1))

    def _triangle(self) -> tuple[list[Tensor], list[Tensor]]:
        """The diagonal of L per channel and its entries below, (1, 0), (2, 0), (2, 1), each (..., P)."""
        d = self._by_channel(self.diag)
        if self.channels == 1:
            return d, []
        o = self._by_channel(self.lower)
        return d, [o[0] * d[1], o[1] * d[2], o[2] * d[2]]

    def log_prob(self, value: Tensor) -> Tensor:
        d, below = self._triangle()
        r = self._by_channel(value - self.loc)
        y0 = r[0] / d[0]
        square, log_det = y0.square(), d[0].log()
        if self.channels == 3:  # y = L^-1 r by forward substitution
            y1 = (r[1] - below[0] * y0) / d[1]
            y2 = (r[2] - below[1] * y0 - below[2] * y1) / d[2]
            square = square + y1.square() + y2.square()
            log_det = log_det + d[1].log() + d[2].log()
        return -0.5 * square.sum(-1) - log_det.sum(-1) - 0.5 * value.shape[-1] * math.log(2 * math.pi)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        eps = self._by_channel(torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device))
        d, below = self._triangle()
        if self.channels == 1:
            return self.loc + d[0] * eps[0]
        noise = [d[0] * eps[0], below[0] * eps[0] + d[1] * eps[1],
                 below[1] * eps[0] + below[2] * eps[1] + d[2] * eps[2]]  # L eps
        return self.loc + torch.cat(noise, dim=-1)

    @property
    def mean(self) -> Tensor:
        return self.loc

    def expand(self, batch_shape: torch.Size | list[int] | tuple[int, ...],
               _instance: Any = None) -> ChannelCorrelatedNormal:
        shape = torch.Size(batch_shape)
        return ChannelCorrelatedNormal(self.loc.expand(shape + self.loc.shape[-1:]),
                                       self.diag.expand(shape + self.diag.shape[-1:]),
                                       self.lower.expand(shape + self.lower.shape[-1:]), self.channels)
