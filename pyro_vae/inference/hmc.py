"""HMC on the latent sites of any Pyro model/guide, for every datapoint of a data plate at once: the latents
as (C, N, F) tensors (chains, datapoints, flattened values), the geometric path's energy
-log f_b(z) = -(1 - b) log q(z|x_n) - b log p(x_n, z) with its gradient, and one HMC transition leaving f_b
invariant with a Metropolis test per chain and datapoint. Annealed importance sampling (ais.py) walks them
along its schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from pyro import poutine
from pyro.distributions import constraints
from torch import Tensor

from pyro_vae.inference import estimators
from pyro_vae.inference.estimators import (
    PARTICLES,
    check_sites_match,
    data_dim,
    plate_nesting,
    sample_sites,
    vectorized,
)
from pyro_vae.inference.streams import GLOBAL, Noise

STEP_JITTER = 0.2  # each transition's step size is drawn uniformly within +-20% of the tuned one


class Latents:
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
            if not is_real(fn.support):
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


def check_start(start: dict[str, Tensor], drawn: dict[str, Tensor]) -> None:
    """A ValueError unless ``start`` gives every latent site (and no other) a finite value that broadcasts to
    the chains' shape, as ``drawn`` from the guide: reverse AIS's exact posterior samples."""
    if set(start) != set(drawn):
        raise ValueError(f"the start (latents) names sites {sorted(start)}, and the guide's latent sites are "
                         f"{sorted(drawn)}: give one value for each of them")
    for name, value in start.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"the start of site {name!r} is a {type(value).__name__}, not a tensor")
        try:
            torch.broadcast_shapes(value.shape, drawn[name].shape)
        except RuntimeError:
            raise ValueError(f"the start of site {name!r} has shape {tuple(value.shape)}, and the chains' values "
                             f"have shape {tuple(drawn[name].shape)} (chains, datapoints, ...): pass (N, ...) per "
                             "datapoint") from None
        if torch.broadcast_shapes(value.shape, drawn[name].shape) != drawn[name].shape:
            raise ValueError(f"the start of site {name!r} has shape {tuple(value.shape)}, larger than the chains' "
                             f"{tuple(drawn[name].shape)}")
        if not torch.isfinite(value).all():
            raise ValueError(f"the start of site {name!r} holds NaN or infinite values")


def is_real(support: constraints.Constraint) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


class Target:
    """The annealing path of one chunk of datapoints: the vectorized model and guide, their latent sites as
    (C, N, F) tensors, and the energy -log f_b(z) with its gradient."""

    def __init__(self, model: Callable, guide: Callable, args: tuple, kwargs: dict, *, num_chains: int, plate: str,
                 max_plate_nesting: int | None, noise: Noise = GLOBAL) -> None:
        nesting = plate_nesting(model, guide, args, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
        self.model, self.guide = vectorized(model, num_chains, nesting), vectorized(guide, num_chains, nesting)
        self.noise = noise  # where the chains' starts and every transition draw their random numbers
        self.args, self.kwargs, self.plate, self.nesting = args, kwargs, plate, nesting
        with torch.no_grad(), noise.sampling(plate):
            self.first = poutine.trace(self.guide).get_trace(*args, **kwargs)
        self.latents = Latents(self.first, plate)  # first: the guide's sites must be ones AIS can move
        with torch.no_grad():
            model_trace = poutine.trace(poutine.replay(self.model, trace=self.first)).get_trace(*args, **kwargs)
        check_sites_match(self.first, model_trace)

    def start(self, start: dict[str, Tensor] | None, fresh: bool = False) -> list[Tensor]:
        """Chains at ``start``, or (None) at the guide's draws: those of the first trace, or new ones
        (``fresh``, for chains that must be independent of the first): (C, N, F) each."""
        trace = self.first
        if fresh and start is None:
            with torch.no_grad(), self.noise.sampling(self.plate):
                trace = poutine.trace(self.guide).get_trace(*self.args, **self.kwargs)
        drawn = {name: site["value"] for name, site in sample_sites(trace).items()}
        if start is not None:
            check_start(start, {name: drawn[name] for name in self.latents.sites})
        values = {name: drawn[name] if start is None else start[name].expand(drawn[name].shape)
                  for name in self.latents.sites}
        return [v.detach().clone() for v in self.latents.flatten(values)]

    def log_densities(self, z: list[Tensor]) -> tuple[Tensor, Tensor]:
        """log q(z|x_n) and log p(x_n, z) per chain and datapoint: (C, N) each."""
        conditioned, args, kwargs = self.latents.unflatten(z), self.args, self.kwargs
        guide_trace = poutine.trace(poutine.condition(self.guide, data=conditioned)).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.condition(self.model, data=conditioned)).get_trace(*args, **kwargs)
        log_q, log_p = estimators.log_densities(guide_trace, model_trace, self.plate, self.nesting)  # (C|1, N) each
        return log_q.expand(z[0].shape[:2]), log_p.expand(z[0].shape[:2])

    def energy_and_grad(self, z: list[Tensor], beta: float) -> tuple[Tensor, Tensor, list[Tensor]]:
        """U = -log f_b(z) (C, N), log p - log q (C, N), and the gradient of U in z."""
        with torch.enable_grad():
            z = [zi.detach().requires_grad_() for zi in z]
            log_q, log_p = self.log_densities(z)
            energy = -((1 - beta) * log_q + beta * log_p)
            grads = torch.autograd.grad(energy.sum(), z)
        return energy.detach(), (log_p - log_q).detach(), list(grads)


def hmc_transition(
    z: list[Tensor], energy: Tensor, grad: list[Tensor], beta: float, eps: Tensor, num_leapfrog: int,
    energy_and_grad: Callable[[list[Tensor], float], tuple[Tensor, Tensor, list[Tensor]]], noise: Noise = GLOBAL,
) -> tuple[list[Tensor], Tensor]:
    """One HMC transition leaving f_beta invariant, for every chain and datapoint at once, from z with its
    energy (C, N) and gradient: leapfrog with step eps_n, then a Metropolis test per (chain, datapoint).
    Returns the new z and each datapoint's acceptance probability averaged over chains (N,). The random
    numbers come from ``noise``, datapoints along dim 1."""
    # (C, N, 1): each datapoint its own step size, jittered per chain (independently of where the chain is, so
    # every transition still leaves f_beta invariant): a fixed step and leapfrog count can resonate with
    # a Gaussian-like target and barely move it (Neal 2011, sec. 5.4.2.2)
    step = eps.view(1, -1, 1) * (1 + STEP_JITTER * (2 * noise.uniform(z[0][..., :1], 1) - 1))
    momentum = [noise.normal(zi, 1) for zi in z]
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
    accept = torch.log(noise.uniform(log_accept, 1)) < log_accept
    z = [torch.where(accept.unsqueeze(-1), qi, zi) for qi, zi in zip(q, z)]
    return z, log_accept.clamp(max=0).exp().mean(0)
