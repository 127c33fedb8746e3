"""Why the ELBO is below log p(x): the inference gap of each datapoint, split in two (Cremer, Li & Duvenaud
2018, "Inference Suboptimality in Variational Autoencoders", sec. 3), for any Pyro model/guide:

    inference gap      log p(x) - L[q_phi(z|x)]      what the amortized guide costs in all
    approximation gap  log p(x) - L[q*]              q*: the best member of the guide's family for this one x
    amortization gap   L[q*]    - L[q_phi]           what sharing one encoder across all x costs

log p(x) comes from AIS (ais.py), L[q_phi] from the guide's own log-weights (estimators.py), and q* for the
diagonal-Gaussian family from local optimizations started at the guide's own moments, at AIS's final chain
states and at points of high posterior density, the best kept per datapoint (local.py). For a guide of a
richer family (a flow) its own q* is local.local_guide_elbo.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from pyro_vae.inference.ais import ais, datapoint_chunks
from pyro_vae.inference.enumeration import check_continuous
from pyro_vae.inference.estimators import importance_log_weights
from pyro_vae.inference.local import LOCAL_LR, LOCAL_STARTS, LocalFit, local_elbo
from pyro_vae.inference.sites import plate_nesting


@dataclass(frozen=True)
class InferenceGaps:
    """Per-datapoint bounds, (N,) each, and how q* was found."""

    log_px: Tensor  # AIS estimate of log p(x_n)
    elbo: Tensor  # L[q_phi]: the amortized guide's ELBO
    local: LocalFit  # q*: L[q*] (local.elbo), whether it converged, how much the best start beat the guide's
    local_steps: int  # Adam steps of each local optimization
    local_starts: int  # starts of the local optimization per datapoint

    @property
    def local_elbo(self) -> Tensor:
        """L[q*]: the ELBO of the best diagonal Gaussian found for x_n alone."""
        return self.local.elbo

    @property
    def converged(self) -> Tensor:
        """bool: a further optimization from q* raised its ELBO by at most local.CONVERGED_NATS."""
        return self.local.converged

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
        """The datapoints of several results, in order (of one local_steps and local_starts)."""
        def joined(name: str, of: Callable[[InferenceGaps], Any] = lambda part: part) -> Tensor:
            return torch.cat([getattr(of(part), name) for part in parts])

        local = LocalFit(*(joined(f.name, lambda part: part.local) for f in fields(LocalFit)))
        return cls(log_px=joined("log_px"), elbo=joined("elbo"), local=local, local_steps=parts[0].local_steps,
                   local_starts=parts[0].local_starts)

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
    local_lr: float = LOCAL_LR, local_particles: int = 16, local_starts: int = LOCAL_STARTS, num_samples: int = 1000,
    ais_steps: int = 500, ais_chains: int = 16, ais_leapfrog: int = 10, ais_model: Callable | None = None,
    ais_guide: Callable | None = None, chunk_size: int | None = None, max_plate_nesting: int | None = None,
    **kwargs: Any,
) -> InferenceGaps:
    """The inference gap of each datapoint of ``plate`` and its split into approximation and amortization
    gaps (Cremer et al. 2018), see the module docstring. log p(x_n) by forward AIS (``ais_steps``,
    ``ais_chains``, ``ais_leapfrog``), L[q_phi] and L[q*] each the mean log-weight of ``num_samples`` draws,
    q* by ``local_steps`` Adam steps from each of ``local_starts`` starts (see local_elbo), among them the
    final states of the AIS chains, which sit where the posterior has mass. ``ais_model``, ``ais_guide``: a
    pair that AIS anneals between instead, for the same log p(x) (e.g. a flow guide's base space, where log q
    is cheap anywhere, or a broader guide); with another model its chains live in other coordinates and are
    not used as starts. ``chunk_size``
    bounds how many datapoints run at once (positional tensor arguments are split along dim 0). Latent sites
    must be continuous (a discrete one is refused: its q* is not defined here, enumeration.check_continuous) and inside
    ``plate`` (constrained ones are moved, and q* is Gaussian, in the unconstrained space of their support)."""
    check_continuous(model, guide, args, kwargs)  # before AIS's long run, not after it
    chains_in_z = ais_model in (None, model)  # AIS moved the model's own latents: its chains can start q*
    parts = []
    for _, chunk in datapoint_chunks(args, chunk_size):
        nesting = plate_nesting(model, guide, chunk, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
        options = dict(plate=plate, max_plate_nesting=nesting, **kwargs)
        annealed = ais(ais_model or model, ais_guide or guide, *chunk, num_steps=ais_steps, num_chains=ais_chains,
                       num_leapfrog=ais_leapfrog, **options)
        elbo = importance_log_weights(model, guide, *chunk, num_samples=num_samples, **options).mean(0)
        local = local_elbo(model, guide, *chunk, local_steps=local_steps, local_lr=local_lr,
                           local_particles=local_particles, num_samples=num_samples, local_starts=local_starts,
                           starts=annealed.final if chains_in_z else None, **options)
        parts.append(InferenceGaps(annealed.bound(), elbo, local, local_steps, local_starts))
    return InferenceGaps.concatenate(parts)
