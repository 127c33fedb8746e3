"""Annealed importance sampling (AIS) of log p(x) per datapoint, and its reverse, for any Pyro model/guide.

Between f_0(z) = q(z|x_n) (the guide) and f_1(z) = p(x_n, z) (the model) lies the geometric path

    log f_b(z) = (1 - b) log q(z|x_n) + b log p(x_n, z),       0 = b_0 < b_1 < ... < b_{T+1} = 1.

Forward AIS (Neal 2001) draws z ~ q, and for t = 1..T adds (b_t - b_{t-1}) [log p(x_n, z) - log q(z|x_n)]
to the chain's log-weight and moves z by an HMC transition that leaves f_{b_t} invariant; a last increment
reaches b = 1. Each chain's weight is an unbiased estimate of p(x_n), so logsumexp over C chains - log C is
a stochastic lower bound on log p(x_n) that rises to it as T grows (Wu et al. 2017). With T = 0 it is
importance sampling with K = C.

Reverse AIS (Grosse et al. 2015) runs the same path from b = 1 to 0, starting at an exact posterior sample
(on simulated data: the z that generated x). Its weights estimate 1/p(x_n), so minus their log-mean-exp is
a stochastic upper bound. Forward and reverse sandwich log p(x_n) on simulated data: bidirectional Monte
Carlo (BDMC), whose gap says how many steps are enough.

Every datapoint's energy is separate, so one HMC step serves all of them at once: leapfrog on (C, N, F)
tensors, a Metropolis test per chain and datapoint, and a step size per datapoint, multiplied by
STEP_GROWTH after a transition whose acceptance rate (over the chains) is above the target and divided by
it otherwise (as Wu et al.'s code does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from pyro import poutine
from pyro.distributions import constraints
from torch import Tensor

from pyro_vae import estimators
from pyro_vae.estimators import PARTICLES, data_dim, log_mean_exp, plate_nesting, sample_sites, vectorized

TARGET_ACCEPT = 0.65  # HMC's optimal acceptance rate in high dimension (Neal 2011; Beskos et al. 2013)
STEP_GROWTH = 1.02  # step sizes grow or shrink by this factor after each transition
SIGMOID_SHARPNESS = 4.0  # the sigmoid schedule's delta (Grosse et al. 2015)


@dataclass(frozen=True)
class AISResult:
    """What one annealing run leaves, per chain and datapoint."""

    log_weights: Tensor  # (C, N): forward, log-estimates of p(x_n); reverse, of 1/p(x_n)
    acceptance: Tensor  # (N,): mean Metropolis acceptance probability over chains and transitions
    step_size: Tensor  # (N,): each datapoint's final leapfrog step size

    def bound(self) -> Tensor:
        """log-mean-exp over chains (forward: a lower bound on log p(x_n)).   (C, N) -> (N,)"""
        return log_mean_exp(self.log_weights)


def sigmoid_schedule(num_steps: int, sharpness: float = SIGMOID_SHARPNESS) -> Tensor:
    """b_0 = 0 < b_1 < ... < b_{T+1} = 1 along a sigmoid (Grosse et al. 2015): small steps at both ends,
    where the intermediate distributions change fastest.   -> (T + 2,) float64"""
    t = torch.linspace(-sharpness, sharpness, num_steps + 2, dtype=torch.float64)
    s = torch.sigmoid(t)
    return (s - s[0]) / (s[-1] - s[0])


class _Latents:
    """The guide's latent sites, moved between their own shapes and (C, N, F) tensors: chains first,
    the data plate second, every other dimension flattened. Checks that AIS can move them."""

    def __init__(self, guide_trace: poutine.Trace, plate: str) -> None:
        self.sites: dict[str, tuple[torch.Size, int]] = {}  # name -> (shape with the data dim at 1, data dim)
        for name, site in sample_sites(guide_trace).items():
            if site["is_observed"] or name == PARTICLES:
                continue
            fn = site["fn"]
            if not fn.has_rsample or fn.support.is_discrete:
                raise ValueError(f"AIS needs continuous latents: guide site {name!r} samples from "
                                 f"{type(fn).__name__}, which is discrete or not reparameterizable")
            if not _is_real(fn.support):
                raise ValueError(f"AIS moves latents by HMC on the real line: guide site {name!r} has support "
                                 f"{fn.support}; reparameterize it to an unconstrained one")
            value = site["value"]
            position = value.dim() - len(fn.event_shape) + data_dim(site, plate)  # of the data plate in value
            self.sites[name] = (value.movedim(position, 1).shape, position)

    def flatten(self, values: dict[str, Tensor]) -> list[Tensor]:
        """Site values -> one (C, N, F) tensor per site."""
        return [values[name].movedim(dim, 1).reshape(*shape[:2], -1) for name, (shape, dim) in self.sites.items()]

    def unflatten(self, flat: list[Tensor]) -> dict[str, Tensor]:
        return {name: f.reshape(shape).movedim(1, dim) for (name, (shape, dim)), f in zip(self.sites.items(), flat)}


def _is_real(support: constraints.Constraint) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


def _check_arguments(num_steps: int, num_chains: int) -> None:
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0 (0 is importance sampling with K = num_chains), got {num_steps}")
    if num_chains < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")


def anneal(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, betas: Tensor, num_chains: int,
    plate: str = "data", start: dict[str, Tensor] | None = None, num_leapfrog: int = 10,
    step_size: float = 0.05, max_plate_nesting: int | None = None,
) -> AISResult:
    """Anneal ``num_chains`` chains per datapoint along ``betas`` (b_0, ..., b_{T+1}): HMC transitions at
    b_1..b_T. The chains start from the guide (``start=None``) or at ``start`` (site -> value of shape
    (N, ...) or (C, N, ...), e.g. exact posterior samples for reverse AIS). The log-weights add
    (b_t - b_{t-1}) [log p(x, z) - log q(z|x)]: forward (increasing betas) they estimate log p(x_n),
    reverse (decreasing) -log p(x_n)."""
    nesting = plate_nesting(model, guide, args, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
    model_c, guide_c = vectorized(model, num_chains, nesting), vectorized(guide, num_chains, nesting)
    with torch.no_grad():
        first = poutine.trace(guide_c).get_trace(*args, **kwargs)
    latents = _Latents(first, plate)
    drawn: dict[str, Tensor] = {name: site["value"] for name, site in sample_sites(first).items()}
    values = {name: drawn[name] if start is None else start[name].expand(drawn[name].shape) for name in latents.sites}
    z = [v.detach().clone() for v in latents.flatten(values)]  # (C, N, F) each

    def log_densities(z: list[Tensor]) -> tuple[Tensor, Tensor]:
        """log q(z|x_n) and log p(x_n, z) per chain and datapoint: (C, N) each."""
        conditioned = latents.unflatten(z)
        guide_trace = poutine.trace(poutine.condition(guide_c, data=conditioned)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.condition(model_c, data=conditioned)).get_trace(*args, **kwargs)
        log_q, log_p = estimators.log_densities(guide_trace, model_trace, plate, nesting)  # (C|1, N) each
        return log_q.expand(z[0].shape[:2]), log_p.expand(z[0].shape[:2])

    def energy_and_grad(z: list[Tensor], beta: float) -> tuple[Tensor, Tensor, list[Tensor]]:
        """U = -log f_b(z) (C, N), its gradient in z, and log p - log q (C, N)."""
        with torch.enable_grad():
            z = [zi.detach().requires_grad_() for zi in z]
            log_q, log_p = log_densities(z)
            energy = -((1 - beta) * log_q + beta * log_p)
            grads = torch.autograd.grad(energy.sum(), z)
        return energy.detach(), (log_p - log_q).detach(), list(grads)

    n = z[0].shape[1]
    eps = torch.full((n,), step_size, dtype=z[0].dtype, device=z[0].device)
    log_w = z[0].new_zeros(z[0].shape[:2])
    accepted = z[0].new_zeros(n)
    b: list[float] = betas.tolist()
    for t in range(1, len(b) - 1):
        energy, gap, grad = energy_and_grad(z, b[t])  # one evaluation: the weight's increment and HMC's start
        log_w += (b[t] - b[t - 1]) * gap
        z, rate = _hmc_transition(z, energy, grad, b[t], eps, num_leapfrog, energy_and_grad)
        accepted += rate
        eps = eps * torch.where(rate > TARGET_ACCEPT, STEP_GROWTH, 1 / STEP_GROWTH)
    with torch.no_grad():
        log_q, log_p = log_densities(z)
    log_w += (b[-1] - b[-2]) * (log_p - log_q)
    return AISResult(log_w, accepted / max(len(b) - 2, 1), eps)


def _hmc_transition(
    z: list[Tensor], energy: Tensor, grad: list[Tensor], beta: float, eps: Tensor, num_leapfrog: int,
    energy_and_grad: Callable[[list[Tensor], float], tuple[Tensor, Tensor, list[Tensor]]],
) -> tuple[list[Tensor], Tensor]:
    """One HMC transition leaving f_beta invariant, for every chain and datapoint at once, from z with its
    energy (C, N) and gradient: leapfrog with step eps_n, then a Metropolis test per (chain, datapoint).
    Returns the new z and each datapoint's acceptance probability averaged over chains (N,)."""
    step = eps.view(1, -1, 1)  # (1, N, 1): each datapoint its own step size
    momentum = [torch.randn_like(zi) for zi in z]
    kinetic = sum(0.5 * p.square().sum(-1) for p in momentum)  # (C, N)
    q, p = list(z), [pi - 0.5 * step * g for pi, g in zip(momentum, grad)]
    for i in range(num_leapfrog):
        q = [qi + step * pi for qi, pi in zip(q, p)]
        new_energy, _, grad = energy_and_grad(q, beta)
        if i < num_leapfrog - 1:
            p = [pi - step * g for pi, g in zip(p, grad)]
    p = [pi - 0.5 * step * g for pi, g in zip(p, grad)]
    new_kinetic = sum(0.5 * pi.square().sum(-1) for pi in p)
    log_accept = (energy + kinetic - new_energy - new_kinetic).nan_to_num(nan=-math.inf)  # (C, N)
    accept = torch.log(torch.rand_like(log_accept)) < log_accept
    z = [torch.where(accept.unsqueeze(-1), qi, zi) for qi, zi in zip(q, z)]
    return z, log_accept.clamp(max=0).exp().mean(0)


def _chunks(args: tuple, chunk_size: int | None) -> Iterator[tuple[slice, tuple]]:
    """The datapoints in chunks: the rows of each chunk, and the positional tensor arguments whose first
    dimension is the first positional tensor's (the data) cut to them."""
    n = next((a.shape[0] for a in args if isinstance(a, Tensor)), None)
    if chunk_size is None or n is None:
        yield slice(None), args
        return
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for lo in range(0, n, chunk_size):
        rows = slice(lo, lo + chunk_size)
        yield rows, tuple(a[rows] if isinstance(a, Tensor) and a.shape[:1] == (n,) else a for a in args)


def ais(
    model: Callable, guide: Callable, *args: Any, num_steps: int, num_chains: int, plate: str = "data",
    num_leapfrog: int = 10, step_size: float = 0.05, chunk_size: int | None = None,
    max_plate_nesting: int | None = None, **kwargs: Any,
) -> AISResult:
    """Forward AIS from the guide to the model with ``num_steps`` HMC transitions along the sigmoid schedule;
    see the module docstring. ``chunk_size`` bounds how many datapoints run at once (positional tensor
    arguments are split along dim 0; None: all). Results are concatenated over chunks."""
    _check_arguments(num_steps, num_chains)
    betas = sigmoid_schedule(num_steps)
    parts = [anneal(model, guide, a, kwargs, betas, num_chains, plate, None, num_leapfrog, step_size,
                    max_plate_nesting) for _, a in _chunks(args, chunk_size)]
    return _concatenate(parts)


def _concatenate(parts: list[AISResult]) -> AISResult:
    return AISResult(torch.cat([p.log_weights for p in parts], dim=1), torch.cat([p.acceptance for p in parts]),
                     torch.cat([p.step_size for p in parts]))


def ais_log_marginal_likelihood(
    model: Callable, guide: Callable, *args: Any, num_steps: int, num_chains: int, plate: str = "data",
    num_leapfrog: int = 10, step_size: float = 0.05, chunk_size: int | None = None,
    max_plate_nesting: int | None = None, **kwargs: Any,
) -> Tensor:
    """AIS estimate of log p(x_n) for each datapoint n of ``plate``: a stochastic lower bound, (N,).

    Geometric path from the guide q(z|x) to p(x, z), sigmoid schedule, ``num_steps`` HMC transitions of
    ``num_leapfrog`` leapfrog steps (step size adapted per datapoint towards an acceptance rate of 0.65),
    ``num_chains`` chains per datapoint. ``num_steps=0`` is importance sampling with K = num_chains.
    Latent sites must be continuous, unconstrained and inside ``plate``. Gradients are not propagated.
    """
    return ais(model, guide, *args, num_steps=num_steps, num_chains=num_chains, plate=plate,
               num_leapfrog=num_leapfrog, step_size=step_size, chunk_size=chunk_size,
               max_plate_nesting=max_plate_nesting, **kwargs).bound()


def reverse_ais(
    model: Callable, guide: Callable, *args: Any, latents: dict[str, Tensor], num_steps: int, num_chains: int,
    plate: str = "data", num_leapfrog: int = 10, step_size: float = 0.05, chunk_size: int | None = None,
    max_plate_nesting: int | None = None, **kwargs: Any,
) -> AISResult:
    """Reverse AIS from exact posterior samples ``latents`` (site -> (N, ...), cut into chunks with the
    data); its log-weights estimate -log p(x_n)."""
    _check_arguments(num_steps, num_chains)
    betas = sigmoid_schedule(num_steps).flip(0)
    parts = [anneal(model, guide, a, kwargs, betas, num_chains, plate, {k: v[rows] for k, v in latents.items()},
                    num_leapfrog, step_size, max_plate_nesting) for rows, a in _chunks(args, chunk_size)]
    return _concatenate(parts)


def reverse_ais_log_marginal_likelihood(
    model: Callable, guide: Callable, *args: Any, latents: dict[str, Tensor], num_steps: int, num_chains: int,
    plate: str = "data", num_leapfrog: int = 10, step_size: float = 0.05, chunk_size: int | None = None,
    max_plate_nesting: int | None = None, **kwargs: Any,
) -> Tensor:
    """Reverse AIS (Grosse et al. 2015) from exact posterior samples ``latents`` (site -> tensor (N, ...),
    e.g. the z that generated simulated x): a stochastic upper bound on log p(x_n), (N,)."""
    result = reverse_ais(model, guide, *args, latents=latents, num_steps=num_steps, num_chains=num_chains,
                         plate=plate, num_leapfrog=num_leapfrog, step_size=step_size, chunk_size=chunk_size,
                         max_plate_nesting=max_plate_nesting, **kwargs)
    return -result.bound()
