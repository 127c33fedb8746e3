"""Why the ELBO is below log p(x): the inference gap of each datapoint, split in two (Cremer, Li & Duvenaud
2018, "Inference Suboptimality in Variational Autoencoders", sec. 3), for any Pyro model/guide:

    inference gap      log p(x) - L[q_phi(z|x)]      what the amortized guide costs in all
    approximation gap  log p(x) - L[q*]              q*: the best member of the guide's family for this one x
    amortization gap   L[q*]    - L[q_phi]           what sharing one encoder across all x costs

log p(x) comes from AIS (ais.py), L[q_phi] from the guide's own log-weights (estimators.py), and q* for the
diagonal-Gaussian family from a local optimization: one free (loc, log-scale) per datapoint and latent
site, started at the guide's own moments and moved by Adam on the reparameterized ELBO, all datapoints at
once (their ELBOs are separate, so one optimizer over (N, ...) tensors is N optimizations).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro import distributions as dist
from pyro import poutine
from pyro.poutine.messenger import Messenger
from torch import Tensor

from pyro_vae.inference.ais import ais_log_marginal_likelihood, datapoint_chunks
from pyro_vae.inference.estimators import (
    importance_log_weights,
    plate_nesting,
    sample_sites,
    trace_log_weights,
    vectorized_traces,
)
from pyro_vae.inference.hmc import Latents

MOMENT_SAMPLES = 256  # draws that estimate the guide's moments where its distribution has no closed-form mean
CONVERGED_NATS = 0.05  # a local ELBO that rose less than this (beyond 3 SE of its noise) over the last tenth
#                        of the steps has stopped improving
FINAL_LR_RATIO = 0.01  # the local step size decays geometrically to this fraction of local_lr


@dataclass(frozen=True)
class InferenceGaps:
    """Per-datapoint bounds, (N,) each, and the local optimization's bookkeeping."""

    log_px: Tensor  # AIS estimate of log p(x_n)
    elbo: Tensor  # L[q_phi]: the amortized guide's ELBO
    local_elbo: Tensor  # L[q*]: the ELBO of the best diagonal Gaussian found for x_n alone
    local_steps: int  # Adam steps of the local optimization
    converged: Tensor  # bool: the local ELBO stopped improving (see CONVERGED_NATS)

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


class _LocalGaussians(Messenger):
    """Replaces each latent site's distribution in the guide by N(loc, exp(log_scale)), free tensors of the
    site's own shape (a pair per datapoint). It sits inside the particle plate and outside the guide's
    own plates, so those broadcast the guide's distribution first and the particle plate ours."""

    def __init__(self, params: dict[str, tuple[Tensor, Tensor, int]]) -> None:
        super().__init__()
        self.params = params  # name -> (loc, log_scale, event_dim)

    def _pyro_sample(self, msg: dict[str, Any]) -> None:
        if msg["name"] in self.params and not msg["is_observed"]:
            loc, log_scale, event_dim = self.params[msg["name"]]
            msg["fn"] = dist.Normal(loc, log_scale.exp()).to_event(event_dim)


def _guide_moments(model: Callable, guide: Callable, args: tuple, kwargs: dict, plate: str,
                   nesting: int) -> dict[str, tuple[Tensor, Tensor, int]]:
    """Each latent site's mean and standard deviation under the guide, of the site's own shape, and its
    event dim: from the distribution where it has them in closed form, else from MOMENT_SAMPLES draws."""
    with torch.no_grad():
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
        Latents(trace, plate)  # the sites AIS accepts: continuous, unconstrained, inside the plate
        moments = {}
        draws = None
        for name, site in sample_sites(trace).items():
            if site["is_observed"]:
                continue
            fn = site["fn"]
            try:
                mean, sd = fn.mean, fn.variance.sqrt()
            except NotImplementedError:
                if draws is None:
                    draws = sample_sites(vectorized_traces(model, guide, args, kwargs, MOMENT_SAMPLES, nesting)[0])
                mean, sd = draws[name]["value"].mean(0), draws[name]["value"].std(0)
            moments[name] = (mean.expand(site["value"].shape), sd.expand(site["value"].shape), len(fn.event_shape))
    return moments


def local_elbo(
    model: Callable, guide: Callable, *args: Any, plate: str = "data", local_steps: int = 500,
    local_lr: float = 0.05, local_particles: int = 16, num_samples: int = 1000, max_plate_nesting: int | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """L[q*] per datapoint (N,) for the diagonal-Gaussian family, and whether each datapoint's ELBO stopped
    improving (N,) bool. q* starts at the guide's moments; Adam takes ``local_steps`` steps on the
    reparameterized ELBO of ``local_particles`` draws, its step size decaying geometrically from ``local_lr``
    to FINAL_LR_RATIO of it; the final L[q*] is the mean log-weight of ``num_samples`` fresh draws."""
    if local_steps < 20:
        raise ValueError(f"local_steps must be >= 20 (convergence is judged on the last two tenths), got {local_steps}")
    nesting = plate_nesting(model, guide, args, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
    params = {name: (mean.clone().requires_grad_(), sd.log().requires_grad_(), event_dim)
              for name, (mean, sd, event_dim) in _guide_moments(model, guide, args, kwargs, plate, nesting).items()}
    leaves = [t for loc, log_scale, _ in params.values() for t in (loc, log_scale)]

    def local_guide(*args: Any, **kwargs: Any) -> Any:
        with _LocalGaussians(params):
            return guide(*args, **kwargs)

    optimizer = torch.optim.Adam(leaves, lr=local_lr)
    decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=FINAL_LR_RATIO ** (1 / local_steps))
    history = []
    with torch.enable_grad():
        for _ in range(local_steps):
            traces = vectorized_traces(model, local_guide, args, kwargs, local_particles, nesting)
            elbo = trace_log_weights(*traces, plate, nesting).mean(0)  # (N,)
            grads = torch.autograd.grad(-elbo.sum(), leaves)  # the datapoints' ELBOs are separate
            for leaf, grad in zip(leaves, grads):
                leaf.grad = grad
            optimizer.step()
            decay.step()
            history.append(elbo.detach())
    # stopped improving: the last tenth's mean ELBO within CONVERGED_NATS + 3 SE of the tenth before it
    tenth = local_steps // 10
    last, before = torch.stack(history[-tenth:]), torch.stack(history[-2 * tenth:-tenth])  # (tenth, N) each
    rise = last.mean(0) - before.mean(0)
    noise = ((last.var(0) + before.var(0)) / tenth).sqrt()  # SE of the rise (steps taken as independent)
    final = importance_log_weights(model, local_guide, *args, num_samples=num_samples, plate=plate,
                                   max_plate_nesting=nesting, **kwargs).mean(0)  # (N,)
    return final, rise < CONVERGED_NATS + 3 * noise


def inference_gaps(
    model: Callable, guide: Callable, *args: Any, plate: str = "data", local_steps: int = 500,
    local_lr: float = 0.05, local_particles: int = 16, num_samples: int = 1000, ais_steps: int = 500,
    ais_chains: int = 16, ais_leapfrog: int = 10, ais_guide: Callable | None = None,
    chunk_size: int | None = None, max_plate_nesting: int | None = None, **kwargs: Any,
) -> InferenceGaps:
    """The inference gap of each datapoint of ``plate`` and its split into approximation and amortization
    gaps (Cremer et al. 2018), see the module docstring. log p(x_n) by forward AIS (``ais_steps``,
    ``ais_chains``, ``ais_leapfrog``), L[q_phi] and L[q*] each the mean log-weight of ``num_samples`` draws,
    q* by ``local_steps`` Adam steps (see local_elbo). ``ais_guide``: where AIS starts, if not at the guide
    (e.g. a flow guide's base Gaussian, whose log-density is cheap at any point). ``chunk_size`` bounds how
    many datapoints run at once (positional tensor arguments are split along dim 0). Latent sites must be
    continuous, unconstrained and inside ``plate``, as for AIS."""
    parts = []
    for _, chunk in datapoint_chunks(args, chunk_size):
        nesting = plate_nesting(model, guide, chunk, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
        options = dict(plate=plate, max_plate_nesting=nesting, **kwargs)
        elbo = importance_log_weights(model, guide, *chunk, num_samples=num_samples, **options).mean(0)
        local, converged = local_elbo(model, guide, *chunk, local_steps=local_steps, local_lr=local_lr,
                                      local_particles=local_particles, num_samples=num_samples, **options)
        log_px = ais_log_marginal_likelihood(model, ais_guide or guide, *chunk, num_steps=ais_steps,
                                             num_chains=ais_chains, num_leapfrog=ais_leapfrog, **options)
        parts.append(InferenceGaps(log_px, elbo, local, local_steps, converged))
    return InferenceGaps.concatenate(parts)
