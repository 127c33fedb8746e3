"""Importance-sampled log p(x) per datapoint, for any Pyro model/guide pair.

For each datapoint n of the plate named ``plate`` and K samples z_nk ~ q(.|x_n):

    log w_nk     = log p(x_n, z_nk) - log q(z_nk | x_n)
    log p^(x_n)  = logsumexp_k log w_nk - log K            (Burda et al. 2016, eq. 8)

Unlike ``pyro.infer.Importance``, which sums the log-weights over the whole plate (one joint weight
per batch), the weights here stay per datapoint: each site's log-density is summed over every
dimension except the particle dimension and the data plate's dimension.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import prune_subsample_sites
from torch import Tensor

PARTICLES = "_importance_particles"  # the plate that vectorizes the K samples


def _check_num_samples(num_samples: int) -> None:
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")


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


def per_datapoint_log_prob(trace: poutine.Trace, plate: str, nesting: int) -> Tensor:
    """Sum of the trace's sample-site log-densities, kept per particle and per datapoint: (k, N).

    Masks apply; scales do not: the data plate's size/B subsample scale belongs to the ELBO of a
    dataset, not to the density of one datapoint.
    """
    total: Tensor | None = None
    for site in sample_sites(trace).values():
        dim = data_dim(site, plate)
        log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
        log_p = scale_and_mask(log_p, mask=site["mask"])
        log_p = log_p.reshape((1,) * (nesting + 1 - log_p.dim()) + log_p.shape)  # (k|1, ..., N|1, ...)
        other_dims = [d for d in range(1, nesting + 1) if d != nesting + 1 + dim]
        log_p = log_p.sum(other_dims) if other_dims else log_p  # (k|1, N)
        total = log_p if total is None else total + log_p
    if total is None:
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


def check_sites_match(guide_trace: poutine.Trace, model_trace: poutine.Trace) -> None:
    """A ValueError naming the latent sites that only one of model and guide has. A model latent missing
    from the guide is drawn from the prior inside every weight (IS gave -2.75 for an exact -1.55 on a toy
    model, with no warning); a guide latent missing from the model adds log q without log p. Pyro's
    Trace_ELBO warns of the first; a log p(x) estimate must refuse both."""
    guide_sites, model_sites = sample_sites(guide_trace), sample_sites(model_trace)
    guide_only = sorted(n for n, site in guide_sites.items() if not site["is_observed"] and n not in model_sites)
    model_only = sorted(n for n, site in model_sites.items() if not site["is_observed"] and n not in guide_sites)
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


def trace_log_weights(guide_trace: poutine.Trace, model_trace: poutine.Trace, plate: str, nesting: int) -> Tensor:
    """log w = log p(x, z) - log q(z|x) per sample and per datapoint of ``plate``, from a pair of
    vectorized traces (see vectorized_traces): (K, N); differentiable when the traces are."""
    log_q, log_p = log_densities(guide_trace, model_trace, plate, nesting)
    log_w = log_p - log_q  # (K|1, N)
    particles: Any = guide_trace.nodes[PARTICLES]["value"]  # (K,): the particle plate's indices
    num_samples = particles.shape[0]
    return log_w.reshape(log_w.shape[0], -1).expand(num_samples, -1)  # (K, N)


def _log_weight_chunks(
    model: Callable, guide: Callable, args: tuple, kwargs: dict,
    num_samples: int, plate: str, chunk_size: int | None, max_plate_nesting: int | None,
) -> Iterator[Tensor]:
    """The per-datapoint log-weights of ``num_samples`` draws from the guide, in chunks of at most
    ``chunk_size`` vectorized samples: (k, N) each."""
    _check_num_samples(num_samples)
    if max_plate_nesting is not None and max_plate_nesting < 1:
        raise ValueError(f"max_plate_nesting must be >= 1 (the data plate is one), got {max_plate_nesting}")
    check_has_datapoints(args)
    nesting = plate_nesting(model, guide, args, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
    chunk_size = num_samples if chunk_size is None else chunk_size
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, num_samples, chunk_size):
        traces = vectorized_traces(model, guide, args, kwargs, min(chunk_size, num_samples - start), nesting)
        yield trace_log_weights(*traces, plate, nesting)


@torch.no_grad()
def importance_log_weights(
    model: Callable, guide: Callable, *args: Any, num_samples: int, plate: str = "data",
    chunk_size: int | None = None, max_plate_nesting: int | None = None, **kwargs: Any,
) -> Tensor:
    """log w_nk = log p(x_n, z_nk) - log q(z_nk | x_n) for z_nk ~ q, as a (K, N) tensor.

    ``args``/``kwargs`` go to both model and guide. ``chunk_size`` bounds how many of the K samples
    run at once (None: all). ``max_plate_nesting`` is guessed from one run when not given.
    """
    chunks = _log_weight_chunks(model, guide, args, kwargs, num_samples, plate, chunk_size, max_plate_nesting)
    return torch.cat(list(chunks))


@torch.no_grad()
def log_marginal_likelihood(
    model: Callable, guide: Callable, *args: Any, num_samples: int = 5000, plate: str = "data",
    chunk_size: int | None = None, max_plate_nesting: int | None = None, **kwargs: Any,
) -> Tensor:
    """Importance-sampled log p^(x_n) for each datapoint n of ``plate``: a tensor of shape (N,).

    The K samples run in chunks of ``chunk_size`` with a running logsumexp, so memory grows with
    chunk_size, not K. The estimate is a stochastic lower bound, log p^ <= log p(x) in
    expectation, tightening as K grows (Burda et al. 2016, Theorem 1).
    """
    chunks = _log_weight_chunks(model, guide, args, kwargs, num_samples, plate, chunk_size, max_plate_nesting)
    running = torch.logsumexp(next(chunks), dim=0)  # (k, N) -> (N,)
    for log_w in chunks:
        running = torch.logaddexp(running, torch.logsumexp(log_w, dim=0))
    return running - math.log(num_samples)


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """log (1/K) sum_k exp(log_w_k) along ``dim``, stably: the importance-sampled log p^ from K
    log-weights (Burda et al. 2016, eq. 8).   e.g. (K, N) -> (N,)"""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def iwae_bound(log_w: Tensor, k: int) -> Tensor:
    """Per-datapoint estimate of the IWAE bound L_k from K >= k log-weights (K, N) -> (N,).

    The K samples are cut into K // k disjoint groups of k; each group gives an unbiased estimate of
    L_k = E[log (1/k) sum_j w_j], and their mean has lower variance than one group alone.
    k = 1 is the ELBO estimated from all K samples.
    """
    total, n = log_w.shape
    if not 1 <= k <= total:
        raise ValueError(f"k must be between 1 and the number of samples ({total}), got {k}")
    groups = log_w[: total // k * k].reshape(total // k, k, n)  # (G, k, N)
    return log_mean_exp(groups, dim=1).mean(dim=0)  # (N,)


KHAT_MIN_SAMPLES = 21  # ArviZ fits the Pareto tail to the largest ceil(min(K/5, 3 sqrt K)) weights, and needs 5


def pareto_khat(log_w: Tensor) -> Tensor:
    """PSIS shape estimate k^ of each datapoint's importance weights (K, N) -> (N,), by ArviZ.

    k^ > 0.7 flags a datapoint whose estimate is unreliable (Vehtari et al. 2024; Yao et al. 2018).
    ArviZ 0.x's ``psislw`` takes log-weights with samples on the last axis. With K below
    KHAT_MIN_SAMPLES (or fewer than 5 distinct weights in the tail) there is no tail to fit and k^ is inf.
    """
    with warnings.catch_warnings():  # its once-a-day notice of a coming refactor is not the user's business
        warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)
        import arviz as az

    _, khat = az.psislw(log_w.T.double().cpu().numpy())
    return torch.as_tensor(khat, dtype=log_w.dtype)
