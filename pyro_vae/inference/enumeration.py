"""Discrete latents of finite support, summed out exactly: the densities of a model and guide over their
continuous sites only.

A model with a discrete latent y (a class, a switch) beside continuous z has p(x, z) = sum_y p(x, y, z); a
guide that draws y has q(z|x) = sum_y q(y|x) q(z|x, y). AIS and reverse AIS move z alone by HMC along the path
between these two sums (hmc.Target); importance sampling can draw z for every value of y in turn instead of
sampling y (estimators.log_marginal_likelihood with ``enumerate=True``). Pyro enumerates such sites with
``infer={"enumerate": "parallel"}``, a new tensor dimension per site that the model's code must broadcast
along; here the J joint values go into blocks of the particle plate instead (Assign), so that any model that
runs vectorized runs unchanged: its code sees an ordinary value of the site's usual shape, and one run scores
every joint value.

A site is summed out when its distribution has a finite support (``has_enumerate_support``: Bernoulli,
Categorical, OneHotCategorical, Binomial) and holds one value per datapoint (and particle); the joint values
are the product of the sites' supports, at most MAX_ASSIGNMENTS.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites
from torch import Tensor

from pyro_vae.inference.sites import PARTICLES, check_sites_match, per_datapoint_log_prob, vectorized

MAX_ASSIGNMENTS = 1024  # joint values summed per datapoint: each multiplies the particles of the run (time, memory)


def discrete_latents(trace: poutine.Trace, plates: tuple[str, ...], who: str) -> dict[str, Tensor]:
    """The ``who`` (model or guide) trace's discrete latent sites, which are summed out, name -> their support
    values (S, *event); a ValueError naming a site that cannot be (an infinite support, or several values per
    datapoint: inside a plate other than ``plates``, the data plate and the particle plate)."""
    found = {}
    for name, site in prune_subsample_sites(trace).nodes.items():
        if site["type"] != "sample" or site["is_observed"]:
            continue
        fn: Any = site["fn"]
        if not fn.support.is_discrete:
            continue
        if not fn.has_enumerate_support:
            raise ValueError(f"{who} site {name!r} samples from {type(fn).__name__}, a discrete distribution with "
                             f"an infinite support ({fn.support}): HMC cannot move it and enumeration cannot sum it "
                             "out; give it a finite support (e.g. a Categorical over 0..K-1) or leave it to "
                             "importance sampling without enumeration (log_marginal_likelihood)")
        inner = [f.name for f in site["cond_indep_stack"] if f.name not in plates and f.size > 1]
        if inner:
            raise ValueError(f"{who} site {name!r} is discrete and inside plate(s) {inner} besides the data plate: "
                             "summing it out needs one value per datapoint (a value per plate element would make "
                             "the sum exponentially long); leave it to importance sampling without enumeration "
                             "(log_marginal_likelihood)")
        found[name] = fn.enumerate_support(expand=False).reshape(-1, *fn.event_shape)  # (S, *event)
    count = math.prod(len(values) for values in found.values())
    if count > MAX_ASSIGNMENTS:
        raise ValueError(f"the {who}'s discrete sites {sorted(found)} have {count} joint values per datapoint, more "
                         f"than the {MAX_ASSIGNMENTS} that enumeration sums; leave them to importance sampling")
    return found


def joint_values(supports: dict[str, Tensor]) -> tuple[int, dict[str, Tensor]]:
    """The sites' J joint values, each site's value in each: (J, name -> (J, *event)). J = 1 for no site."""
    names = list(supports)
    chosen = list(itertools.product(*(range(len(supports[name])) for name in names)))
    return len(chosen), {name: supports[name][[c[i] for c in chosen]] for i, name in enumerate(names)}


class Assign(Messenger):
    """Gives each site of ``values`` (name -> (J, *event): J joint values) its values in J blocks of the
    particle plate (of J C particles, at dim -(nesting + 1)): particle j C + c holds joint value j, at every
    datapoint, expanded to the site's shape so that the model's code sees an ordinary draw. One vectorized run
    of a model then evaluates every joint value for C particles of its other latents (repeated J times). Unlike
    poutine.condition it leaves the site latent, so that a model replayed on the guide's trace takes the value
    from there. Entered outside the particle plate, it sees each site once every plate has broadcast its
    distribution."""

    def __init__(self, values: dict[str, Tensor], nesting: int) -> None:
        super().__init__()
        self.values, self.nesting = values, nesting

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["name"] not in self.values:
            return
        fn, value = msg["fn"], self.values[msg["name"]]  # (J, *event)
        batch = fn.batch_shape
        first = len(batch) - (self.nesting + 1)  # the particle plate's position in the batch shape
        event = value.shape[1:]
        blocks = value.reshape(*(1,) * first, len(value), 1, *(1,) * (len(batch) - first - 1), *event)
        blocks = blocks.expand(*batch[:first], len(value), batch[first] // len(value), *batch[first + 1:], *event)
        msg["value"] = blocks.reshape(batch + event)


def summed_log_prob(fn: Callable, args: tuple, kwargs: dict, *, values: dict[str, Tensor], plate: str,
                    nesting: int) -> Tensor:
    """log sum_y exp(log-density of fn's trace with its discrete sites at y), per particle and datapoint
    (C, N): ``fn`` (a model or guide vectorized over J C particles, its continuous latents conditioned on C
    values repeated J times) run once, its discrete sites at their J joint values ``values`` (name -> (J, *event),
    enumeration.joint_values) in J blocks of C particles (enumeration.Assign)."""
    with Assign(values, nesting):
        trace = poutine.trace(fn).get_trace(*args, **kwargs)
    log_p = per_datapoint_log_prob(trace, plate, nesting)  # (J C|1, N)
    count = len(next(iter(values.values()))) if values else 1
    if count == 1:
        return log_p
    particles: Any = trace.nodes[PARTICLES]["value"]
    return log_p.expand(len(particles), -1).reshape(count, len(particles) // count, -1).logsumexp(0)  # (C, N)


def enumerated_log_weights(model: Callable, guide: Callable, args: tuple, kwargs: dict, num_samples: int,
                           plate: str, nesting: int) -> Tensor:
    """Importance sampling stratified over the guide's discrete sites (enumeration.py): for each of their Y joint
    values y, ``num_samples`` draws z_k ~ q(z|x, y) and

        log w_yk = log p(x_n, y, z_k) - log q(z_k|x_n, y) + log Y,      (Y K, N)

    whose log-mean-exp estimates log p(x_n) without the variance of drawing y: p(x) = sum_y E_q(z|x,y)
    [p(x, y, z) / q(z|x, y)]. The log Y makes the mean over all Y K weights that sum. Each weight is not a
    draw's log p(x, z) - log q(z|x), so their mean is no ELBO."""
    with torch.no_grad():
        first = poutine.trace(vectorized(guide, 1, nesting)).get_trace(*args, **kwargs)
    supports = discrete_latents(first, (plate, PARTICLES), "guide")
    count, values = joint_values(supports)  # Y
    with Assign(values, nesting):  # particle y K + k draws z ~ q(z|x, y)
        guide_trace = poutine.trace(vectorized(guide, count * num_samples, nesting)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(vectorized(model, count * num_samples, nesting), trace=guide_trace)
                                ).get_trace(*args, **kwargs)
    check_sites_match(guide_trace, model_trace)
    log_q = per_datapoint_log_prob(guide_trace, plate, nesting, exclude=supports)  # log q(z|x, y): (Y k|1, N)
    log_p = per_datapoint_log_prob(model_trace, plate, nesting)  # log p(x, y, z)
    return (log_p - log_q).expand(count * num_samples, -1) + math.log(count)


def check_continuous(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> None:
    """A ValueError naming a discrete latent site of the guide or the model: q* here is a diagonal Gaussian per
    continuous site, and a q* over discrete ones is not defined (one that mirrors the guide, free logits per
    site and a free Gaussian per value, would be; it is not built)."""
    with torch.no_grad(), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    for who, trace in (("guide", guide_trace), ("model", model_trace)):
        for name, site in prune_subsample_sites(trace).nodes.items():
            fn: Any = site.get("fn")
            if site["type"] == "sample" and not site["is_observed"] and fn.support.is_discrete:
                raise ValueError(f"{who} site {name!r} is discrete: q* of the gap decomposition is a diagonal "
                                 "Gaussian per continuous site, and a q* over discrete sites is not defined here; the "
                                 "inference gap is still AIS (ais_log_marginal_likelihood, which sums them out) minus "
                                 "the guide's ELBO")
