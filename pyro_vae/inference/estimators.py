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

import torch
from pyro import poutine
from torch import Tensor

from pyro_vae.arguments import require_count
from pyro_vae.inference.enumeration import enumerated_log_weights
from pyro_vae.inference.sites import (
    PARTICLES,
    check_has_datapoints,
    log_densities,
    plate_nesting,
    vectorized_traces,
)


def _check_num_samples(num_samples: int) -> None:
    require_count("num_samples", num_samples)


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
    num_samples: int, plate: str, chunk_size: int | None, max_plate_nesting: int | None, enumerate: bool = False,
) -> Iterator[Tensor]:
    """The per-datapoint log-weights of ``num_samples`` draws from the guide, in chunks of at most
    ``chunk_size`` vectorized samples: (k, N) each; with ``enumerate``, (Y k, N) (see enumerated_log_weights)."""
    _check_num_samples(num_samples)
    if max_plate_nesting is not None and max_plate_nesting < 1:
        raise ValueError(f"max_plate_nesting must be >= 1 (the data plate is one), got {max_plate_nesting}")
    check_has_datapoints(args)
    nesting = plate_nesting(model, guide, args, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
    chunk_size = num_samples if chunk_size is None else require_count("chunk_size", chunk_size)
    for start in range(0, num_samples, chunk_size):
        k = min(chunk_size, num_samples - start)
        if enumerate:
            yield enumerated_log_weights(model, guide, args, kwargs, k, plate, nesting)
        else:
            yield trace_log_weights(*vectorized_traces(model, guide, args, kwargs, k, nesting), plate, nesting)


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
    chunk_size: int | None = None, max_plate_nesting: int | None = None, enumerate: bool = False, **kwargs: Any,
) -> Tensor:
    """Importance-sampled log p^(x_n) for each datapoint n of ``plate``: a tensor of shape (N,).

    The K samples run in chunks of ``chunk_size`` with a running logsumexp, so memory grows with
    chunk_size, not K. The estimate is a stochastic lower bound, log p^ <= log p(x) in
    expectation, tightening as K grows (Burda et al. 2016, Theorem 1). ``enumerate``: the guide's discrete
    sites of finite support are not drawn but summed over, K draws of the continuous sites for each of their
    Y joint values (enumerated_log_weights; Y times the cost). Where q(y|x) misses the class this is right and
    sampling is off by nats; where q(y|x) is good, sampling y is the better use of the same cost
    (docs/benchmarks.md).
    """
    chunks = _log_weight_chunks(model, guide, args, kwargs, num_samples, plate, chunk_size, max_plate_nesting,
                                enumerate)
    first = next(chunks)  # (k, N), or (Y k, N) enumerated
    running, count = torch.logsumexp(first, dim=0), len(first)  # (N,)
    for log_w in chunks:
        running, count = torch.logaddexp(running, torch.logsumexp(log_w, dim=0)), count + len(log_w)
    return running - math.log(count)


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
    if not require_count("k", k) <= total:
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
