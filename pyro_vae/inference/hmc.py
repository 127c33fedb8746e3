"""HMC on the latent sites of any Pyro model/guide, for every datapoint of a data plate at once: the continuous
latents as (C, N, F) tensors (chains, datapoints, flattened values; a constrained site in the unconstrained space
of its support; discrete sites of finite support summed out of both densities, enumeration.py), the geometric
path's energy
-log f_b(z) = -(1 - b) log q(z|x_n) - b log p(x_n, z) with its gradient, and one HMC transition leaving f_b
invariant with a Metropolis test per chain and datapoint. Annealed importance sampling (ais.py) walks them
along its schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
from pyro import poutine
from pyro.distributions import constraints
from torch import Tensor
from torch.distributions import biject_to
from torch.distributions.transforms import Transform

from pyro_vae.inference.enumeration import discrete_latents, joint_values, summed_log_prob
from pyro_vae.inference.sites import PARTICLES, check_sites_match, data_dim, plate_nesting, sample_sites, vectorized
from pyro_vae.inference.streams import GLOBAL, Noise

STEP_JITTER = 0.2  # each transition's step size is drawn uniformly within +-20% of the tuned one


class Latents:
    """The guide's continuous latent sites, moved between their own shapes and (C, N, F) tensors: chains first,
    the data plate second, every other dimension flattened (discrete sites are left out: Target sums them). HMC
    moves each site in the unconstrained space of its support, u = T^-1(z) with T = biject_to(support), as Pyro's
    HMC does: the (C, N, F) tensors hold u, and ``constrain`` gives back z = T(u) with log |det dT/du|. Checks
    that AIS can move the sites."""

    def __init__(self, guide_trace: poutine.Trace, plate: str) -> None:
        self.sites: dict[str, tuple[torch.Size, int]] = {}  # name -> (u's shape with the data dim at 1, data dim)
        self.transforms: dict[str, Transform] = {}  # constrained sites: name -> T, unconstrained u -> value z
        self.supports: dict[str, constraints.Constraint] = {}  # constrained sites: name -> support
        for name, site in sample_sites(guide_trace).items():
            if site["is_observed"] or name == PARTICLES:
                continue
            fn = site["fn"]
            if fn.support.is_discrete:  # summed out by enumeration (Target), not moved
                continue
            value = site["value"]
            position = value.dim() - len(fn.event_shape) + data_dim(site, plate)  # of the data plate in value
            shape = value.shape
            if not is_real(fn.support):
                try:
                    self.transforms[name], self.supports[name] = biject_to(fn.support), fn.support
                except NotImplementedError:
                    raise ValueError(f"AIS moves latents by HMC in unconstrained space: guide site {name!r} has "
                                     f"support {fn.support}, which torch cannot map to the real line (no "
                                     "biject_to); reparameterize it") from None
                shape = self.transforms[name].inverse_shape(shape)
            self.sites[name] = (_moved(shape, position), position)

    def flatten(self, values: dict[str, Tensor]) -> list[Tensor]:
        """Site values z -> one (C, N, F) tensor of u = T^-1(z) per site."""
        return [self.unconstrained(name, values[name]).movedim(dim, 1).reshape(*shape[:2], -1)
                for name, (shape, dim) in self.sites.items()]

    def unconstrained(self, name: str, value: Tensor) -> Tensor:
        """u = T^-1(z) of site ``name``."""
        return self.transforms[name].inv(value) if name in self.transforms else value

    def unflatten(self, flat: list[Tensor]) -> dict[str, Tensor]:
        """(C, N, F) tensors of u -> each site's u in its own layout."""
        return {name: f.reshape(shape).movedim(1, dim) for (name, (shape, dim)), f in zip(self.sites.items(), flat)}

    def constrain(self, flat: list[Tensor]) -> tuple[dict[str, Tensor], Tensor | float]:
        """(C, N, F) tensors of u -> each site's value z = T(u), and log |det dz/du| summed per chain and
        datapoint (C, N) (0.0 when every site is unconstrained)."""
        values: dict[str, Tensor] = {}
        log_det: Tensor | float = 0.0
        for name, u in self.unflatten(flat).items():
            if name not in self.transforms:
                values[name] = u
                continue
            transform, dim = self.transforms[name], self.sites[name][1]
            values[name] = z = transform(u)
            ladj = transform.log_abs_det_jacobian(u, z)  # u's shape less the transform's event dims
            log_det = log_det + ladj.movedim(dim, 1).reshape(ladj.shape[0], ladj.shape[dim], -1).sum(-1)
        return values, log_det

    def inside(self, flat: list[Tensor]) -> Tensor:
        """bool (C, N): every constrained site's z = T(u) lies inside its support. In float32 a finite u can still
        reach the edge (exp(u) is 0 below u = -104), where the densities are not defined."""
        ok = flat[0].new_ones(flat[0].shape[:2], dtype=torch.bool)
        for name, u in self.unflatten(flat).items():
            if name in self.transforms:
                transform, dim = self.transforms[name], self.sites[name][1]
                check = self.supports[name].check(transform(u))  # (torch's transforms' codomains can say real)
                ok = ok & check.movedim(dim, 1).reshape(check.shape[0], check.shape[dim], -1).all(-1)
        return ok


def _moved(shape: torch.Size, position: int) -> torch.Size:
    """``shape`` with its dimension ``position`` moved to 1 (a shape of one dimension, a site of an unvectorized
    trace with a scalar per datapoint, has no chains to put first: as it is)."""
    return shape if len(shape) < 2 else torch.empty(shape, device="meta").movedim(position, 1).shape


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
        # discrete sites of finite support, summed out of q(z|x) and p(x, z) in one run each of J C particles
        # (enumeration.py): each is (J, the pair run over J C particles, name -> the J joint values)
        self.summed: dict[str, tuple[int, Callable, dict[str, Tensor]]] = {}
        for who, fn, trace in (("guide", guide, self.first), ("model", model, model_trace)):
            count, values = joint_values(discrete_latents(trace, (plate, PARTICLES), who))
            self.summed[who] = (count, vectorized(fn, count * num_chains, nesting), values)
        check_sites_match(self.first, model_trace, summed=self.summed["model"][2])
        if not self.latents.sites:
            raise ValueError(f"AIS anneals continuous latents, and the guide has none besides the discrete sites "
                             f"{list(self.summed['guide'][2])}: summed out, they give log p(x) exactly, with no AIS "
                             "(log_marginal_likelihood with enumerate=True)")

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
        flat = [v.detach().clone() for v in self.latents.flatten(values)]
        if start is not None:  # a given start may lie outside a constrained site's support: u = T^-1(z) is not finite
            for name, u in zip(self.latents.sites, flat):
                if not torch.isfinite(u).all():
                    raise ValueError(f"the start of site {name!r} lies outside (or on the edge of) the site's "
                                     f"support {cast(Any, self.first.nodes[name]['fn']).support}")
        return flat

    def log_densities(self, z: list[Tensor]) -> tuple[Tensor, Tensor]:
        """log q(z|x_n) and log p(x_n, z) per chain and datapoint at the unconstrained u (C, N, F): (C, N) each,
        discrete sites summed out of each (q(z|x) = sum_y q(y|x) q(z|x, y), p(x, z) = sum_y p(x, y, z))."""
        log_q, log_p, _ = self.densities(z)
        return log_q, log_p

    def densities(self, z: list[Tensor]) -> tuple[Tensor, Tensor, Tensor | float]:
        """log q, log p (as log_densities) and log |det dz/du| (C, N) (0.0 where every site is unconstrained)."""
        conditioned, log_det = self.latents.constrain(z)
        log_q, log_p = (self._summed(who, conditioned) for who in ("guide", "model"))  # (C|1, N) each
        return log_q.expand(z[0].shape[:2]), log_p.expand(z[0].shape[:2]), log_det

    def _summed(self, who: str, conditioned: dict[str, Tensor]) -> Tensor:
        """log q(z|x) (who = "guide") or log p(x, z) ("model") at the continuous values ``conditioned``, their
        discrete sites summed out: (C|1, N)."""
        count, fn, values = self.summed[who]
        if count > 1:  # C values for each of the J blocks: (J C, ...)
            conditioned = {name: v.repeat(count, *(1,) * (v.dim() - 1)) for name, v in conditioned.items()}
        return summed_log_prob(poutine.condition(fn, data=conditioned), self.args, self.kwargs, values=values,
                               plate=self.plate, nesting=self.nesting)

    def energy_and_grad(self, z: list[Tensor], beta: float) -> tuple[Tensor, Tensor, list[Tensor]]:
        """U = -log f_b(u) (C, N), log p - log q (C, N), and the gradient of U in u. In the unconstrained
        coordinates q and p both gain log |det dz/du|: it enters the energy, and cancels in log p - log q."""
        # a leapfrog step too long for a chain can throw it to inf or NaN (e.g. u = log z past 709), or to the edge of
        # a support (z = exp(u) = 0 in float32 below u = -104): such a chain is evaluated at u = 0 instead, so that
        # the model never sees it, and given infinite energy, so that the Metropolis test rejects it
        finite = torch.stack([torch.isfinite(zi).all(-1) for zi in z]).all(0)  # (C, N)
        if self.latents.transforms:  # and a constrained site's value inside its support
            finite = finite & self.latents.inside([torch.where(finite.unsqueeze(-1), zi, 0.0) for zi in z])
        with torch.enable_grad():
            z = [torch.where(finite.unsqueeze(-1), zi, 0.0).detach().requires_grad_() for zi in z]
            log_q, log_p, log_det = self.densities(z)
            energy = -((1 - beta) * log_q + beta * log_p + log_det)
            grads = torch.autograd.grad(energy.sum(), z)
        finite = finite & torch.isfinite(energy)  # e.g. z = 0 on the closed edge of a Gamma's support: log p = -inf
        energy = torch.where(finite, energy.detach(), math.inf)
        return energy, (log_p - log_q).detach(), [torch.where(finite.unsqueeze(-1), g, 0.0) for g in grads]


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
