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
tensors, a Metropolis test per chain and datapoint, and a step size per datapoint and transition. The step
sizes are tuned before the run, by a short pilot that anneals separate chains (thrown away) along the same
kind of path, multiplying a datapoint's step size by PILOT_GROWTH after a transition whose acceptance rate
(over the chains) is above TARGET_ACCEPT and dividing it otherwise. The run then anneals with the step sizes
frozen: every transition is a fixed kernel given the pilot, which is what keeps each chain's weight
unbiased. Step sizes adapted inside the run from the chains' own acceptances (as Wu et al.'s code does)
make the kernels depend on the chain's past, and the weights biased (E[w] / p(x) 0.0065 +- 0.0007 from 1
with one chain on a 1-D conjugate model: tests/inference/test_ais.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pyro_vae.inference.estimators import log_mean_exp
from pyro_vae.inference.hmc import Target, hmc_transition
from pyro_vae.inference.sites import check_has_datapoints
from pyro_vae.inference.streams import GLOBAL, Noise

TARGET_ACCEPT = 0.65  # HMC's optimal acceptance rate in high dimension (Neal 2011; Beskos et al. 2013)
PILOT_STEPS = 20  # the pilot visits this many points of the path (the run's own when it has fewer steps)
PILOT_TRANSITIONS = 2  # adapting HMC transitions at each of them
PILOT_GROWTH = 1.25  # the pilot's step sizes grow or shrink by this factor after each transition: from the
#                     default 0.05 to 0.5 in 11 transitions, then within 25% of where acceptance is 0.65
SIGMOID_SHARPNESS = 4.0  # the sigmoid schedule's delta (Grosse et al. 2015)


@dataclass(frozen=True)
class AISResult:
    """What one annealing run leaves, per chain and datapoint."""

    log_weights: Tensor  # (C, N): forward, log-estimates of p(x_n); reverse, of 1/p(x_n)
    acceptance: Tensor  # (N,): mean Metropolis acceptance probability over chains and transitions
    step_size: Tensor  # (N,): each datapoint's leapfrog step size at the last transition
    final: dict[str, Tensor]  # site -> (C, N, F): the chains' last states, each site's value per chain and
    #                           datapoint flattened (forward: approximate posterior draws, e.g. starts for q*)

    def bound(self) -> Tensor:
        """log-mean-exp over chains (forward: a lower bound on log p(x_n)).   (C, N) -> (N,)"""
        return log_mean_exp(self.log_weights)


def sigmoid_schedule(num_steps: int, sharpness: float = SIGMOID_SHARPNESS) -> Tensor:
    """b_0 = 0 < b_1 < ... < b_{T+1} = 1 along a sigmoid (Grosse et al. 2015): small steps at both ends,
    where the intermediate distributions change fastest.   -> (T + 2,) float64"""
    t = torch.linspace(-sharpness, sharpness, num_steps + 2, dtype=torch.float64)
    s = torch.sigmoid(t)
    return (s - s[0]) / (s[-1] - s[0])


def _check_arguments(num_steps: int, num_chains: int, num_leapfrog: int, step_size: float, args: tuple) -> None:
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0 (0 is importance sampling with K = num_chains), got {num_steps}")
    if num_chains < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    if num_leapfrog < 1:
        raise ValueError(f"num_leapfrog must be >= 1 (an HMC transition takes at least one step), got {num_leapfrog}")
    if not step_size > 0:
        raise ValueError(f"step_size (where the pilot starts) must be positive, got {step_size}")
    check_has_datapoints(args)


def _pilot(target: Target, betas: Tensor, *, num_leapfrog: int, step_size: float) -> Tensor:
    """Step sizes for the run's transitions at b_1..b_T, tuned on chains of their own (thrown away) that
    start from fresh draws of the guide and anneal forward along min(T, PILOT_STEPS) points of the sigmoid
    schedule, PILOT_TRANSITIONS adapting transitions at each; a transition takes the geometric mean of the
    step sizes at the pilot's point nearest its own. A reverse run (decreasing betas) takes them in reverse
    order: its kernels are fixed before, and independent of, the exact sample it starts from, as the
    unbiasedness of its weights assumes. Returns (T, N)."""
    num_steps = len(betas) - 2
    points = min(num_steps, PILOT_STEPS)
    pilot_betas = sigmoid_schedule(points).to(betas)
    z = target.start(None, fresh=True)  # chains of the pilot's own, independent of the run's
    eps = torch.full(z[0].shape[1:2], step_size, dtype=z[0].dtype, device=z[0].device)  # (N,)
    tuned = []
    for b in pilot_betas[1:-1].tolist():
        log_eps = torch.zeros_like(eps)
        for _ in range(PILOT_TRANSITIONS):
            energy, _, grad = target.energy_and_grad(z, b)
            z, rate = hmc_transition(z, energy, grad, b, eps, num_leapfrog, target.energy_and_grad, target.noise)
            log_eps += eps.log()
            eps = eps * torch.where(rate > TARGET_ACCEPT, PILOT_GROWTH, 1 / PILOT_GROWTH)
        tuned.append((log_eps / PILOT_TRANSITIONS).exp())
    nearest = [round(t * (points + 1) / (num_steps + 1)) for t in range(1, num_steps + 1)]  # in 1..points
    step_sizes = torch.stack([tuned[max(min(i, points), 1) - 1] for i in nearest])  # (T, N)
    return step_sizes.flip(0) if betas[0] > betas[-1] else step_sizes


def anneal(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, *, betas: Tensor, num_chains: int,
    plate: str = "data", start: dict[str, Tensor] | None = None, num_leapfrog: int = 10, step_size: float = 0.05,
    max_plate_nesting: int | None = None, noise: Noise = GLOBAL,
) -> AISResult:
    """Anneal ``num_chains`` chains per datapoint along ``betas`` (b_0, ..., b_{T+1}): HMC transitions at
    b_1..b_T with step sizes frozen by a pilot run (``step_size`` is where the pilot starts). The chains
    start from the guide (``start=None``) or at ``start`` (site -> value of shape (N, ...) or (C, N, ...),
    e.g. exact posterior samples for reverse AIS). The log-weights add (b_t - b_{t-1}) [log p(x, z) -
    log q(z|x)]: forward (increasing betas) they estimate log p(x_n), reverse (decreasing) -log p(x_n).
    Random numbers come from ``noise`` (streams.py): torch's global generator, or a stream per datapoint."""
    target = Target(model, guide, args, kwargs, num_chains=num_chains, plate=plate,
                    max_plate_nesting=max_plate_nesting, noise=noise)
    b: list[float] = betas.tolist()
    num_steps = len(b) - 2
    z = target.start(start)  # (C, N, F) each
    n = z[0].shape[1]
    step_sizes = _pilot(target, betas, num_leapfrog=num_leapfrog, step_size=step_size) if num_steps else (
        z[0].new_full((1, n), step_size))  # (T, N): fixed before the run's first transition
    log_w = z[0].new_zeros(z[0].shape[:2])
    accepted = z[0].new_zeros(n)
    for t in range(1, num_steps + 1):
        energy, gap, grad = target.energy_and_grad(z, b[t])  # one evaluation: the weight's increment and HMC's start
        log_w += (b[t] - b[t - 1]) * gap
        z, rate = hmc_transition(z, energy, grad, b[t], step_sizes[t - 1], num_leapfrog, target.energy_and_grad,
                                 target.noise)
        accepted += rate
    with torch.no_grad():
        log_q, log_p = target.log_densities(z)
    log_w += (b[-1] - b[-2]) * (log_p - log_q)
    return AISResult(log_w, accepted / max(num_steps, 1), step_sizes[-1], dict(zip(target.latents.sites, z)))


def datapoint_chunks(args: tuple, chunk_size: int | None) -> Iterator[tuple[slice, tuple]]:
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
    max_plate_nesting: int | None = None, noise: Noise = GLOBAL, **kwargs: Any,
) -> AISResult:
    """Forward AIS from the guide to the model with ``num_steps`` HMC transitions along the sigmoid schedule;
    see the module docstring. ``chunk_size`` bounds how many datapoints run at once (positional tensor
    arguments are split along dim 0; None: all). Results are concatenated over chunks. ``noise``: where
    the random numbers come from (streams.py; DatapointStreams make each datapoint's result independent
    of the chunks)."""
    _check_arguments(num_steps, num_chains, num_leapfrog, step_size, args)
    betas = sigmoid_schedule(num_steps)
    parts = [anneal(model, guide, a, kwargs, betas=betas, num_chains=num_chains, plate=plate,
                    num_leapfrog=num_leapfrog, step_size=step_size, max_plate_nesting=max_plate_nesting,
                    noise=noise[rows]) for rows, a in datapoint_chunks(args, chunk_size)]
    return _concatenate(parts)


def _concatenate(parts: list[AISResult]) -> AISResult:
    return AISResult(torch.cat([p.log_weights for p in parts], dim=1), torch.cat([p.acceptance for p in parts]),
                     torch.cat([p.step_size for p in parts]),
                     {name: torch.cat([p.final[name] for p in parts], dim=1) for name in parts[0].final})


def ais_log_marginal_likelihood(
    model: Callable, guide: Callable, *args: Any, num_steps: int, num_chains: int, plate: str = "data",
    num_leapfrog: int = 10, step_size: float = 0.05, chunk_size: int | None = None,
    max_plate_nesting: int | None = None, **kwargs: Any,
) -> Tensor:
    """AIS estimate of log p(x_n) for each datapoint n of ``plate``: a stochastic lower bound, (N,).

    Geometric path from the guide q(z|x) to p(x, z), sigmoid schedule, ``num_steps`` HMC transitions of
    ``num_leapfrog`` leapfrog steps (step sizes per datapoint tuned by a pilot run towards an acceptance rate
    of 0.65, then frozen), ``num_chains`` chains per datapoint. ``num_steps=0`` is importance sampling with
    K = num_chains. Latent sites must be inside ``plate``; a constrained one (positive, unit interval, simplex,
    ...) is moved in the unconstrained space of its support (hmc.Latents), and a discrete one of finite support
    is summed out of q and p (enumeration.py). Gradients are not propagated.
    """
    return ais(model, guide, *args, num_steps=num_steps, num_chains=num_chains, plate=plate,
               num_leapfrog=num_leapfrog, step_size=step_size, chunk_size=chunk_size,
               max_plate_nesting=max_plate_nesting, **kwargs).bound()


def reverse_ais(
    model: Callable, guide: Callable, *args: Any, latents: dict[str, Tensor], num_steps: int, num_chains: int,
    plate: str = "data", num_leapfrog: int = 10, step_size: float = 0.05, chunk_size: int | None = None,
    max_plate_nesting: int | None = None, noise: Noise = GLOBAL, **kwargs: Any,
) -> AISResult:
    """Reverse AIS from exact posterior samples ``latents`` (site -> (N, ...), cut into chunks with the
    data); its log-weights estimate -log p(x_n). ``noise`` as for ais."""
    _check_arguments(num_steps, num_chains, num_leapfrog, step_size, args)
    betas = sigmoid_schedule(num_steps).flip(0)
    parts = [anneal(model, guide, a, kwargs, betas=betas, num_chains=num_chains, plate=plate,
                    start={k: v[rows] for k, v in latents.items()}, num_leapfrog=num_leapfrog, step_size=step_size,
                    max_plate_nesting=max_plate_nesting, noise=noise[rows])
             for rows, a in datapoint_chunks(args, chunk_size)]
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
