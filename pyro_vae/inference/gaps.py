"""Why the ELBO is below log p(x): the inference gap of each datapoint, split in two (Cremer, Li & Duvenaud
2018, "Inference Suboptimality in Variational Autoencoders", sec. 3), for any Pyro model/guide:

    inference gap      log p(x) - L[q_phi(z|x)]      what the amortized guide costs in all
    approximation gap  log p(x) - L[q*]              q*: the best member of the guide's family for this one x
    amortization gap   L[q*]    - L[q_phi]           what sharing one encoder across all x costs

log p(x) comes from AIS (ais.py), L[q_phi] from the guide's own log-weights (estimators.py), and q* for the
diagonal-Gaussian family from a local optimization started at the guide's own moments (local.py). For a
guide of a richer family (a flow) its own q* is local.local_guide_elbo.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pyro_vae.inference.ais import ais_log_marginal_likelihood, datapoint_chunks
from pyro_vae.inference.estimators import (
    importance_log_weights,
    plate_nesting,
)
from pyro_vae.inference.local import local_elbo


@dataclass(frozen=True)
class InferenceGaps:
    """Per-datapoint bounds, (N,) each, and the local optimization's bookkeeping."""

    log_px: Tensor  # AIS estimate of log p(x_n)
    elbo: Tensor  # L[q_phi]: the amortized guide's ELBO
    local_elbo: Tensor  # L[q*]: the ELBO of the best diagonal Gaussian found for x_n alone
    local_steps: int  # Adam steps of the local optimization
    converged: Tensor  # bool: the local ELBO stopped improving (see local.CONVERGED_NATS)

    @property
    def approximation_gap(self) -> Tensor:
        return self.log_px - self.local_elbo

    @property
    def amortization_gap(self) -> Tensor:
        return self.local_elbo - self.elbo

    @property
    def inference_gap(self) -> Tensor:
        return self.log_px - self.elbo

    @classmethod
    def concatenate(cls, parts: list[InferenceGaps]) -> InferenceGaps:
        """The datapoints of several results, in order (of one local_steps)."""
        def joined(name: str) -> Tensor:
            return torch.cat([getattr(part, name) for part in parts])

        return cls(log_px=joined("log_px"), elbo=joined("elbo"), local_elbo=joined("local_elbo"),
                   local_steps=parts[0].local_steps, converged=joined("converged"))

    def summary(self) -> dict[str, tuple[float, float | None]]:
        """name -> (mean over datapoints, its standard error; None for one datapoint), for the three bounds
        and the three gaps. The gaps' SEs are paired, per datapoint, so the datapoints' spread cancels."""
        names = ("log_px", "local_elbo", "elbo", "approximation_gap", "amortization_gap", "inference_gap")
        return {name: _mean_and_se(getattr(self, name)) for name in names}


def _mean_and_se(values: Tensor) -> tuple[float, float | None]:
    n = values.numel()
    return values.mean().item(), (values.std().item() / math.sqrt(n) if n > 1 else None)


def inference_gaps(
    model: Callable, guide: Callable, *args: Any, plate: str = "data", local_steps: int = 500,
    local_lr: float = 0.05, local_particles: int = 16, num_samples: int = 1000, ais_steps: int = 500,
    ais_chains: int = 16, ais_leapfrog: int = 10, ais_model: Callable | None = None, ais_guide: Callable | None = None,
    chunk_size: int | None = None, max_plate_nesting: int | None = None, **kwargs: Any,
) -> InferenceGaps:
    """The inference gap of each datapoint of ``plate`` and its split into approximation and amortization
    gaps (Cremer et al. 2018), see the module docstring. log p(x_n) by forward AIS (``ais_steps``,
    ``ais_chains``, ``ais_leapfrog``), L[q_phi] and L[q*] each the mean log-weight of ``num_samples`` draws,
    q* by ``local_steps`` Adam steps (see local_elbo). ``ais_model``, ``ais_guide``: a pair that AIS anneals
    between instead, for the same log p(x) (e.g. a flow guide's base space, where log q is cheap anywhere).
    ``chunk_size`` bounds how many datapoints run at once (positional tensor arguments are split along dim
    0). Latent sites must be continuous, unconstrained and inside ``plate``, as for AIS."""
    parts = []
    for _, chunk in datapoint_chunks(args, chunk_size):
        nesting = plate_nesting(model, guide, chunk, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
        options = dict(plate=plate, max_plate_nesting=nesting, **kwargs)
        elbo = importance_log_weights(model, guide, *chunk, num_samples=num_samples, **options).mean(0)
        local, converged = local_elbo(model, guide, *chunk, local_steps=local_steps, local_lr=local_lr,
                                      local_particles=local_particles, num_samples=num_samples, **options)
        log_px = ais_log_marginal_likelihood(ais_model or model, ais_guide or guide, *chunk, num_steps=ais_steps,
                                             num_chains=ais_chains, num_leapfrog=ais_leapfrog, **options)
        parts.append(InferenceGaps(log_px, elbo, local, local_steps, converged))
    return InferenceGaps.concatenate(parts)
