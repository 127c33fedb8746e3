"""The sample sites of a model/guide pair, per datapoint: what every estimator here stands on.

A site's log-density is kept per particle and per datapoint of the data plate (per_datapoint_log_prob), K
samples are drawn at once in a plate of their own left of the pair's plates (vectorized), and a pair is checked
before it is scored: every site inside the data plate, the same latent sites in model and guide.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import prune_subsample_sites
from torch import Tensor

PARTICLES = "_importance_particles"  # the plate that vectorizes the K samples


def sample_sites(trace: poutine.Trace) -> dict[str, Any]:
    """The trace's sample sites (observed and latent) by name, without the plates' subsample sites."""
    return {name: site for name, site in prune_subsample_sites(trace).nodes.items() if site["type"] == "sample"}


def data_dim(site: Any, plate: str) -> int:
    """The (negative) batch dimension of ``plate`` at a sample site."""
    for frame in site["cond_indep_stack"]:
        if frame.name == plate:
            return frame.dim
    raise ValueError(
        f"sample site {site['name']!r} is outside the plate {plate!r}: a per-datapoint log p(x) needs "
        f"every latent and observed site inside the data plate (pass plate=<its name>)"
    )


def check_has_datapoints(args: tuple) -> None:
    """A ValueError when the data, the first positional tensor argument, holds no datapoints (dim 0 of size 0)."""
    data = next((a for a in args if isinstance(a, Tensor)), None)
    if data is not None and data.shape[:1] == (0,):
        raise ValueError("the data holds no datapoints: nothing to estimate")


def plate_nesting(model: Callable, guide: Callable, args: tuple, kwargs: dict, plate: str) -> int:
    """How many plate dimensions the pair uses, from one unvectorized run (as pyro.infer.ELBO does).

    The same run checks that every sample site sits in ``plate``, before a vectorized run could
    fail inside the user's model with a less helpful broadcasting error.
    """
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    sites = [site for trace in (model_trace, guide_trace) for site in sample_sites(trace).values()]
    for site in sites:
        data_dim(site, plate)
    return max((-frame.dim for site in sites for frame in site["cond_indep_stack"] if frame.vectorized), default=0)


def per_datapoint_log_prob(trace: poutine.Trace, plate: str, nesting: int, exclude: Collection[str] = ()) -> Tensor:
    """Sum of the trace's sample-site log-densities (less the sites named in ``exclude``), kept per particle and
    per datapoint: (k, N).

    Masks apply; scales do not: the data plate's size/B subsample scale belongs to the ELBO of a
    dataset, not to the density of one datapoint.
    """
    total: Tensor | None = None
    for name, site in sample_sites(trace).items():
        if name in exclude:
            continue
        dim = data_dim(site, plate)
        log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
        log_p = scale_and_mask(log_p, mask=site["mask"])
        log_p = log_p.reshape((1,) * (nesting + 1 - log_p.dim()) + log_p.shape)  # (k|1, ..., N|1, ...)
        other_dims = [d for d in range(1, nesting + 1) if d != nesting + 1 + dim]
        log_p = log_p.sum(other_dims) if other_dims else log_p  # (k|1, N)
        total = log_p if total is None else total + log_p
    if total is None:
        if exclude:  # every site excluded: a density of 1
            return torch.zeros(())
        raise ValueError("the trace has no sample sites")
    return total


def data_scale(trace: poutine.Trace) -> float | Tensor:
    """The subsample scale (size / B) that the data plate puts on every sample site of ``trace``:
    what a dataset-level objective (IWAE_ELBO) multiplies its per-datapoint bounds by."""
    scales = {float(site["scale"]) for site in sample_sites(trace).values()}
    if len(scales) != 1:
        raise ValueError(f"sample sites carry different scales {sorted(scales)}: a per-datapoint bound needs "
                         "one data plate scaling every site alike (no poutine.scale inside it)")
    return scales.pop()


def check_sites_match(guide_trace: poutine.Trace, model_trace: poutine.Trace, summed: Collection[str] = ()) -> None:
    """A ValueError naming the latent sites that only one of model and guide has. A model latent missing
    from the guide is drawn from the prior inside every weight (IS gave -2.75 for an exact -1.55 on a toy
    model, with no warning); a guide latent missing from the model adds log q without log p. Pyro's
    Trace_ELBO warns of the first; a log p(x) estimate must refuse both. Model sites ``summed`` out by
    enumeration (AIS) need no guide site."""
    guide_sites, model_sites = sample_sites(guide_trace), sample_sites(model_trace)
    guide_only = sorted(n for n, site in guide_sites.items() if not site["is_observed"] and n not in model_sites)
    model_only = sorted(n for n, site in model_sites.items()
                        if not site["is_observed"] and n not in guide_sites and n not in summed)
    if model_only:
        raise ValueError(f"model latent site(s) {model_only} not in the guide: every importance weight would draw "
                         "them from the prior, and the estimate of log p(x) would be wrong; sample them in the guide "
                         "too")
    if guide_only:
        raise ValueError(f"guide site(s) {guide_only} not in the model: the importance weights would count their "
                         "log q without a log p; remove them from the guide or add them to the model")


def check_reparameterized(guide_trace: poutine.Trace) -> None:
    """A ValueError naming the first guide sample site drawn without ``rsample``: a pathwise gradient
    through log-weights is only the gradient of their expectation for reparameterized samples."""
    for name, site in sample_sites(guide_trace).items():
        if not site["is_observed"] and not site["fn"].has_rsample:
            raise ValueError(
                f"guide site {name!r} samples from {type(site['fn']).__name__}, which is not reparameterizable: a "
                "gradient through importance weights would miss its score-function term and be wrong; use a "
                "reparameterizable distribution there, or an ELBO with score-function terms "
                "(pyro.infer.TraceGraph_ELBO)"
            )


def vectorized(fn: Callable, num_samples: int, nesting: int) -> Callable:
    """``fn`` run inside a plate of ``num_samples`` at dim -(nesting + 1), left of the pair's own plates:
    every sample site draws ``num_samples`` values at once."""

    def run(*args: Any, **kwargs: Any) -> Any:
        with pyro.plate(PARTICLES, num_samples, dim=-(nesting + 1)):
            return fn(*args, **kwargs)

    return run


def vectorized_traces(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, num_samples: int, nesting: int
) -> tuple[poutine.Trace, poutine.Trace]:
    """The guide's trace of ``num_samples`` vectorized draws and the model's trace replayed on them.
    ``nesting`` is the pair's max plate nesting (see plate_nesting): the samples take the next dim."""
    guide_trace = poutine.trace(vectorized(guide, num_samples, nesting)).get_trace(*args, **kwargs)
    model = poutine.replay(vectorized(model, num_samples, nesting), trace=guide_trace)
    model_trace = poutine.trace(model).get_trace(*args, **kwargs)
    check_sites_match(guide_trace, model_trace)
    return guide_trace, model_trace


def log_densities(
    guide_trace: poutine.Trace, model_trace: poutine.Trace, plate: str, nesting: int
) -> tuple[Tensor, Tensor]:
    """The kernel every estimator here stands on: log q(z|x_n) and log p(x_n, z) per sample and per
    datapoint of ``plate``, from a guide trace and the model's trace on the same z (vectorized over
    a particle plate or not): (k|1, N) each, differentiable when the traces are. The IWAE bound and
    the IS estimator use their difference, the log-weight; AIS mixes them along its path."""
    return (per_datapoint_log_prob(guide_trace, plate, nesting), per_datapoint_log_prob(model_trace, plate, nesting))
