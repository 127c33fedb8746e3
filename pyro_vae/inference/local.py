"""q*: the best member of a guide's family for each datapoint alone, by local optimization (Cremer, Li &
Duvenaud 2018, sec. 3): the ELBO of every datapoint maximized over its own variational parameters.

- local_elbo: the diagonal-Gaussian family (q*_FFG), one free (loc, log-scale) per datapoint and latent
  site, all datapoints at once (their ELBOs are separate, so one optimizer over (N, ...) tensors is N
  optimizations). A posterior with several modes has a local optimum in each, so the optimization runs from
  several starts (the guide's moments, given points such as AIS's final chain states, and points of high
  posterior density among draws from the prior and the guide widened) and each datapoint keeps its best.
- local_guide_elbo: the guide's own family (e.g. q*_flow for a flow guide), every parameter of the guide
  optimized for one datapoint at a time (a loop over datapoints), started at the amortized parameters, then
  restored.

Both judge convergence the same way (optimize.py): a second, shorter optimization from the result at a fresh
step size must not raise any datapoint's ELBO by more than CONVERGED_NATS, measured on the same draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pyro
import torch
from pyro import distributions as dist
from pyro import poutine
from pyro.poutine.messenger import Messenger
from torch import Tensor
from torch.distributions.transforms import Transform

from pyro_vae.arguments import require_counts
from pyro_vae.inference.ais import datapoint_chunks
from pyro_vae.inference.enumeration import check_continuous
from pyro_vae.inference.hmc import Latents
from pyro_vae.inference.optimize import (
    CONVERGED_NATS,
    Objective,
    common_draws,
    fresh_seed,
    maximize,
    probe,
    probe_steps,
)
from pyro_vae.inference.sites import per_datapoint_log_prob, plate_nesting, sample_sites, vectorized, vectorized_traces

MOMENT_SAMPLES = 256  # draws that estimate the guide's moments where its distribution has no closed-form mean
LOCAL_LR = 0.05  # Adam's first step size for the free Gaussians (and at least the probe's)
GUIDE_LR = 0.001  # ... for a whole guide's weights (see local_guide_elbo)
LOCAL_STARTS = 8  # starts per datapoint: on a 2-D MNIST VAE's two-mode posterior (test image 216) 8 found the
#                   greater mode, 6 nats above the guide's; on tests/two_modes.py 2 already did
CANDIDATES = 128  # starts at high posterior density: the best of this many draws from the prior and as many from
WIDEN = 3.0  # ... the guide's Gaussian with WIDEN times its standard deviation

__all__ = ["CONVERGED_NATS", "LocalFit", "local_elbo", "local_guide_elbo"]


@dataclass(frozen=True)
class LocalFit:
    """q* of each datapoint, (N,) each."""

    elbo: Tensor  # L[q*]: the mean log-weight of fresh draws from q*
    converged: Tensor  # bool: a further optimization from q* raised its ELBO by at most CONVERGED_NATS
    rise: Tensor  # what that further optimization raised the ELBO by, in nats (on the same draws before and after)
    start_gain: Tensor  # how far the best start's optimum beat the guide's own start's, in nats (same draws); well
    #                     above 0 where the posterior has another, better mode than the one the guide sits in
    best_start: Tensor  # long: the start that won: 0 the guide's moments, then the given starts, then dense points


@dataclass(frozen=True)
class _Site:
    """A latent site of the guide: its moments under the guide, of the site's own shape (in the unconstrained
    space of its support, u = T^-1(z), for a constrained site), and where its datapoints are."""

    mean: Tensor
    sd: Tensor
    event_dim: int
    position: int  # the data plate's dimension in the site's value
    transform: Transform | None  # T = biject_to(support) for a constrained site

    def gaussian(self, loc: Tensor, scale: Tensor) -> dist.TorchDistribution:
        """A diagonal Gaussian in the site's unconstrained coordinates, as a distribution of its value."""
        normal = dist.Normal(loc, scale).to_event(self.event_dim)
        return normal if self.transform is None else dist.TransformedDistribution(normal, [self.transform])

    def unconstrained(self, value: Tensor) -> Tensor:
        return value if self.transform is None else self.transform.inv(value)

    def constrained(self, u: Tensor) -> Tensor:
        return u if self.transform is None else self.transform(u)


class _LocalGaussians(Messenger):
    """Replaces each latent site's distribution in the guide by N(loc, exp(log_scale)), free tensors of the
    site's own shape (a pair per datapoint). It sits inside the particle plate and outside the guide's
    own plates, so those broadcast the guide's distribution first and the particle plate ours."""

    def __init__(self, params: dict[str, tuple[Tensor, Tensor, _Site]]) -> None:
        super().__init__()
        self.params = params  # name -> (loc, log_scale, the site)

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["name"] in self.params and not msg["is_observed"]:
            loc, log_scale, site = self.params[msg["name"]]
            msg["fn"] = site.gaussian(loc, log_scale.exp())


def _guide_sites(model: Callable, guide: Callable, args: tuple, kwargs: dict, plate: str,
                 nesting: int) -> dict[str, _Site]:
    """Each latent site's mean and standard deviation under the guide: from the distribution where it has them
    in closed form, else from MOMENT_SAMPLES draws."""
    with torch.no_grad():
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
        latents = Latents(trace, plate)  # the sites AIS accepts (continuous, inside the plate), their transforms
        sites = {}
        draws = None
        for name, (_, position) in latents.sites.items():
            site = trace.nodes[name]
            fn: Any = site["fn"]
            transform = latents.transforms.get(name)
            shape = cast(Tensor, site["value"]).shape if transform is None else transform.inverse_shape(
                cast(Tensor, site["value"]).shape)
            try:
                if transform is not None:
                    raise NotImplementedError  # the moments of u = T^-1(z) have no closed form
                mean, sd = fn.mean, fn.variance.sqrt()
            except NotImplementedError:
                if draws is None:
                    draws = sample_sites(vectorized_traces(model, guide, args, kwargs, MOMENT_SAMPLES, nesting)[0])
                u = draws[name]["value"] if transform is None else transform.inv(draws[name]["value"])
                mean, sd = u.mean(0), u.std(0)
            sites[name] = _Site(mean.expand(shape), sd.expand(shape), len(fn.event_shape), position, transform)
    return sites


def _site_layout(flat: Tensor, site: _Site) -> Tensor:
    """Values flattened as AIS's chains are, (A, N, F), in the site's own layout: (A, *site shape)."""
    moved = site.mean.movedim(site.position, 0)  # (N, ...)
    return flat.reshape(len(flat), *moved.shape).movedim(1, site.position + 1)


def _pick(stacked: Tensor, which: Tensor, position: int) -> Tensor:
    """Datapoint n's values from candidate which[n] (N,): (S, *site shape) -> site shape."""
    moved = stacked.movedim(position + 1, 1)  # (S, N, ...)
    return moved[which, torch.arange(len(which), device=which.device)].movedim(0, position)


def _dense_points(model: Callable, args: tuple, kwargs: dict, plate: str, nesting: int, sites: dict[str, _Site],
                  count: int) -> list[dict[str, Tensor]]:
    """``count`` points per datapoint where the posterior density is high: of CANDIDATES draws from the model's
    prior and as many from the guide widened WIDEN times, those with the highest log p(x_n, z), site -> value."""
    with torch.no_grad():
        prior = poutine.trace(vectorized(model, CANDIDATES, nesting)).get_trace(*args, **kwargs)
        candidates, widened = {}, {}
        for name, site in sites.items():
            drawn = cast(Tensor, prior.nodes[name]["value"])  # (M, [1...,] the site's value shape)
            wide = site.mean + WIDEN * site.sd * torch.randn(CANDIDATES, *site.mean.shape, dtype=site.mean.dtype,
                                                               device=site.mean.device)  # (M, *u shape)
            widened[name] = site.constrained(wide).reshape(drawn.shape)
            candidates[name] = torch.cat([site.unconstrained(drawn).reshape(wide.shape), wide])  # (2M, *u shape)
        conditioned = poutine.condition(vectorized(model, CANDIDATES, nesting), data=widened)
        wide_trace = poutine.trace(conditioned).get_trace(*args, **kwargs)
        scores = torch.cat([per_datapoint_log_prob(t, plate, nesting) for t in (prior, wide_trace)])  # (2M, N)
        top = scores.nan_to_num(nan=-math.inf).topk(min(count, len(scores)), dim=0).indices  # (count, N)
        return [{name: _pick(candidates[name], rank, site.position) for name, site in sites.items()} for rank in top]


def _start_locations(model: Callable, args: tuple, kwargs: dict, plate: str, nesting: int, sites: dict[str, _Site],
                     starts: dict[str, Tensor] | None, local_starts: int) -> list[dict[str, Tensor]]:
    """The starts' locations, site -> value: the guide's means; up to half of the rest from ``starts`` (site ->
    (A, N, F)); the rest at points of high posterior density (_dense_points)."""
    given = 0 if starts is None else min(len(next(iter(starts.values()))), (local_starts - 1) // 2)
    locations = [{name: site.mean for name, site in sites.items()}]
    for a in range(given):
        locations.append({name: _site_layout(cast(dict, starts)[name][a:a + 1], site)[0]
                          for name, site in sites.items()})
    if len(locations) < local_starts:
        locations += _dense_points(model, args, kwargs, plate, nesting, sites, local_starts - len(locations))
    return locations


def local_elbo(
    model: Callable, guide: Callable, *args: Any, plate: str = "data", local_steps: int = 500,
    local_lr: float = LOCAL_LR, local_particles: int = 16, num_samples: int = 1000,
    local_starts: int = LOCAL_STARTS, starts: dict[str, Tensor] | None = None, max_plate_nesting: int | None = None,
    **kwargs: Any,
) -> LocalFit:
    """L[q*] per datapoint for the diagonal-Gaussian family, and how it was found (LocalFit).

    q* is optimized from ``local_starts`` starts per datapoint, each with the guide's standard deviations:
    the guide's moments; up to half of the others from ``starts`` (site -> (A, N, F), flattened as AIS's final
    chain states, AISResult.final, which sit where the posterior has mass); the rest at the points of highest
    log p(x, z) among CANDIDATES draws from the prior and as many from the guide widened WIDEN times. From
    each, Adam takes ``local_steps`` steps on the reparameterized ELBO of ``local_particles`` draws, its step
    size decaying from ``local_lr`` (optimize.maximize). Each datapoint keeps the start whose ELBO is highest
    on ``num_samples`` draws shared by all starts; optimize.probe then judges convergence (see
    LocalFit.converged) and keeps the probe's end where it is better; L[q*] is the mean log-weight of
    ``num_samples`` fresh draws. Latent sites must be continuous and inside ``plate``, as for
    AIS; q* of a constrained site is a diagonal Gaussian in the unconstrained space of its support (a log-normal
    for a positive site), pushed through T = biject_to(support)."""
    if local_starts < 1:
        raise ValueError(f"local_starts must be >= 1 (the first start is the guide's moments), got {local_starts}")
    require_counts(local_steps=local_steps, local_particles=local_particles, num_samples=num_samples)
    check_continuous(model, guide, args, kwargs)
    nesting = plate_nesting(model, guide, args, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
    sites = _guide_sites(model, guide, args, kwargs, plate, nesting)

    def objective(params: dict[str, tuple[Tensor, Tensor, _Site]]) -> Objective:
        def local_guide(*args: Any, **kwargs: Any) -> Any:
            with _LocalGaussians(params):
                return guide(*args, **kwargs)

        return Objective(model, local_guide, args, kwargs, plate, nesting)

    def free(locs: dict[str, Tensor], log_scales: dict[str, Tensor]) -> dict[str, tuple[Tensor, Tensor, _Site]]:
        return {name: (locs[name].detach().clone().requires_grad_(), log_scales[name].detach().clone().requires_grad_(),
                       site) for name, site in sites.items()}

    def choose(candidates: list[dict], which: Tensor) -> dict[str, tuple[Tensor, Tensor, _Site]]:
        """Datapoint n's parameters from candidate which[n]."""
        stacked = {name: [torch.stack([c[name][i].detach() for c in candidates]) for i in (0, 1)] for name in sites}
        return free({name: _pick(loc, which, sites[name].position) for name, (loc, _) in stacked.items()},
                    {name: _pick(log_scale, which, sites[name].position) for name, (_, log_scale) in stacked.items()})

    guide_log_scales = {name: site.sd.log() for name, site in sites.items()}
    fitted = []
    for locs in _start_locations(model, args, kwargs, plate, nesting, sites, starts, local_starts):
        params = free(locs, guide_log_scales)
        maximize(objective(params).elbo(local_particles), _leaves(params), local_steps, local_lr)
        fitted.append(params)
    seed = fresh_seed()  # every start's ELBO on the same draws: their differences carry little noise
    values = torch.stack([common_draws(objective(p).estimate(num_samples), seed) for p in fitted])  # (S, N)
    best = values.argmax(0)  # (N,)
    chosen = choose(fitted, best)
    continued = choose([chosen], torch.zeros_like(best))  # a copy of its own, which the probe moves
    rise = probe(objective(continued), _leaves(continued), steps=probe_steps(local_steps),
                 lr=max(local_lr, LOCAL_LR), particles=local_particles, draws=num_samples)
    elbo = objective(choose([chosen, continued], (rise > 0).long())).estimate(num_samples)()
    return LocalFit(elbo, rise <= CONVERGED_NATS, rise, values.max(0).values - values[0], best)


def _leaves(params: dict[str, tuple[Tensor, Tensor, _Site]]) -> list[Tensor]:
    return [t for loc, log_scale, _ in params.values() for t in (loc, log_scale)]


def local_guide_elbo(
    model: Callable, guide: Callable, *args: Any, plate: str = "data", local_steps: int = 500,
    local_lr: float = GUIDE_LR, local_particles: int = 16, num_samples: int = 1000,
    max_plate_nesting: int | None = None, **kwargs: Any,
) -> LocalFit:
    """L[q*] per datapoint for the guide's own family (LocalFit): for one datapoint at a time, every parameter
    of the guide (its networks, registered with pyro.module, and its pyro.params) is optimized on that
    datapoint's ELBO as in local_elbo, convergence judged by the same probe (at a step size of at least
    GUIDE_LR), the ELBO measured with ``num_samples`` draws, and the parameters restored (also when an
    exception or Ctrl-C stops it). For a flow guide this is Cremer et al.'s q*_flow: the encoder's Gaussian,
    its context and the flow's weights all free for the one x. It starts only at the amortized parameters
    (start_gain is 0): on a posterior with several modes it finds the one the guide sits in, where local_elbo's
    starts may find a better one. The default step size is small because Adam moves every weight by about
    ``local_lr`` per step, and an encoder's hidden units sum hundreds of them (on a 784-400-20 IAF VAE, 300
    steps at 1e-3 rose 5.5 nats above L[q]; at 5e-3 and 40 steps the ELBO fell)."""
    require_counts(local_steps=local_steps, local_particles=local_particles, num_samples=num_samples)
    nesting = plate_nesting(model, guide, args, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
    names = [name for name, site in poutine.trace(guide, param_only=True).get_trace(*args, **kwargs).nodes.items()
             if site["type"] == "param"]
    leaves = [cast(Any, pyro.param(name)).unconstrained() for name in names]  # the leaves Adam moves
    kept = [leaf.detach().clone() for leaf in leaves]

    def restore(values: list[Tensor]) -> None:
        with torch.no_grad():
            for leaf, value in zip(leaves, values):
                leaf.copy_(value)

    finals, rises = [], []
    try:
        for _, one in datapoint_chunks(args, 1):
            objective = Objective(model, guide, one, kwargs, plate, nesting)
            maximize(objective.elbo(local_particles), leaves, local_steps, local_lr)
            fitted = [leaf.detach().clone() for leaf in leaves]
            rise = probe(objective, leaves, steps=probe_steps(local_steps), lr=max(local_lr, GUIDE_LR),
                         particles=local_particles, draws=num_samples)
            if rise.item() <= 0:
                restore(fitted)  # the probe's end is no better
            finals.append(objective.estimate(num_samples)())
            rises.append(rise)
            restore(kept)
    finally:
        restore(kept)  # also after an exception or Ctrl-C: the amortized guide is left as it was
    rise = torch.cat(rises)
    zeros = torch.zeros_like(rise)
    return LocalFit(torch.cat(finals), rise <= CONVERGED_NATS, rise, zeros, zeros.long())
