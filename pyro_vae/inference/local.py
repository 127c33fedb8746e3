"""q*: the best member of a guide's family for each datapoint alone, by local optimization (Cremer, Li &
Duvenaud 2018, sec. 3): the ELBO of every datapoint maximized over its own variational parameters, started
from the amortized guide.

- local_elbo: the diagonal-Gaussian family (q*_FFG), one free (loc, log-scale) per datapoint and latent
  site, all datapoints at once (their ELBOs are separate, so one optimizer over (N, ...) tensors is N
  optimizations).
- local_guide_elbo: the guide's own family (e.g. q*_flow for a flow guide), every parameter of the guide
  optimized for one datapoint at a time (a loop over datapoints), then restored.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, cast

import pyro
import torch
from pyro import distributions as dist
from pyro import poutine
from pyro.poutine.messenger import Messenger
from torch import Tensor

from pyro_vae.inference.ais import datapoint_chunks
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


def _check_local_steps(local_steps: int) -> None:
    if local_steps < 20:
        raise ValueError(f"local_steps must be >= 20 (convergence is judged on the last two tenths), got {local_steps}")


def _maximize(elbo: Callable[[], Tensor], leaves: list[Tensor], steps: int, lr: float) -> Tensor:
    """Adam on ``leaves`` for ``steps`` steps up the summed per-datapoint ``elbo()`` (N,), its step size
    decaying geometrically from ``lr`` to FINAL_LR_RATIO of it. Returns whether each datapoint's ELBO
    stopped improving (N,) bool: the last tenth's mean within CONVERGED_NATS + 3 SE of the tenth before."""
    optimizer = torch.optim.Adam(leaves, lr=lr)
    decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=FINAL_LR_RATIO ** (1 / steps))
    history = []
    for _ in range(steps):
        value = elbo()  # (N,)
        grads = torch.autograd.grad(-value.sum(), leaves, allow_unused=True)
        if all(grad is None for grad in grads):
            raise ValueError("none of the parameters being optimized changes the ELBO: for a guide's own parameters, "
                             "Pyro's param store holds other tensors under their names (an earlier model's, e.g. "
                             "of a second VAE in this process); call pyro.clear_param_store() and run the guide once")
        for leaf, grad in zip(leaves, grads):
            leaf.grad = grad
        optimizer.step()
        decay.step()
        history.append(value.detach())
    for leaf in leaves:
        leaf.grad = None  # the guide's own parameters (local_guide_elbo) are left as they were found
    tenth = steps // 10
    last, before = torch.stack(history[-tenth:]), torch.stack(history[-2 * tenth:-tenth])  # (tenth, N) each
    rise = last.mean(0) - before.mean(0)
    noise = ((last.var(0) + before.var(0)) / tenth).sqrt()  # SE of the rise (steps taken as independent)
    return rise < CONVERGED_NATS + 3 * noise


def _mean_log_weight(model: Callable, guide: Callable, args: tuple, kwargs: dict, num_particles: int, plate: str,
                     nesting: int) -> Tensor:
    """The reparameterized ELBO of each datapoint from ``num_particles`` vectorized draws: (N,)."""
    traces = vectorized_traces(model, guide, args, kwargs, num_particles, nesting)
    return trace_log_weights(*traces, plate, nesting).mean(0)


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
    _check_local_steps(local_steps)
    nesting = plate_nesting(model, guide, args, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
    params = {name: (mean.clone().requires_grad_(), sd.log().requires_grad_(), event_dim)
              for name, (mean, sd, event_dim) in _guide_moments(model, guide, args, kwargs, plate, nesting).items()}
    leaves = [t for loc, log_scale, _ in params.values() for t in (loc, log_scale)]

    def local_guide(*args: Any, **kwargs: Any) -> Any:
        with _LocalGaussians(params):
            return guide(*args, **kwargs)

    with torch.enable_grad():
        converged = _maximize(
            lambda: _mean_log_weight(model, local_guide, args, kwargs, local_particles, plate, nesting),
            leaves, local_steps, local_lr)
    final = importance_log_weights(model, local_guide, *args, num_samples=num_samples, plate=plate,
                                   max_plate_nesting=nesting, **kwargs).mean(0)  # (N,)
    return final, converged


def local_guide_elbo(
    model: Callable, guide: Callable, *args: Any, plate: str = "data", local_steps: int = 500,
    local_lr: float = 0.001, local_particles: int = 16, num_samples: int = 1000, max_plate_nesting: int | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """L[q*] per datapoint (N,) for the guide's own family, and whether each stopped improving (N,) bool:
    for one datapoint at a time, every parameter of the guide (its networks, registered with pyro.module,
    and its pyro.params) is optimized on that datapoint's ELBO as in local_elbo, the ELBO measured with
    ``num_samples`` draws, and the parameters restored. For a flow guide this is Cremer et al.'s q*_flow:
    the encoder's Gaussian, its context and the flow's weights all free for the one x. The default step
    size is small because Adam moves every weight by about ``local_lr`` per step, and an encoder's hidden
    units sum hundreds of them (on a 784-400-20 IAF VAE, 300 steps at 1e-3 rose 5.5 nats above L[q]; at
    5e-3 and 40 steps the ELBO fell)."""
    _check_local_steps(local_steps)
    nesting = plate_nesting(model, guide, args, kwargs, plate) if max_plate_nesting is None else max_plate_nesting
    names = [name for name, site in poutine.trace(guide, param_only=True).get_trace(*args, **kwargs).nodes.items()
             if site["type"] == "param"]
    leaves = [cast(Any, pyro.param(name)).unconstrained() for name in names]  # the leaves Adam moves
    kept = [leaf.detach().clone() for leaf in leaves]
    finals, converged = [], []
    for _, one in datapoint_chunks(args, 1):
        with torch.enable_grad():
            elbo = partial(_mean_log_weight, model, guide, one, kwargs, local_particles, plate, nesting)
            converged.append(_maximize(elbo, leaves, local_steps, local_lr))
        finals.append(importance_log_weights(model, guide, *one, num_samples=num_samples, plate=plate,
                                             max_plate_nesting=nesting, **kwargs).mean(0))
        with torch.no_grad():
            for leaf, value in zip(leaves, kept):
                leaf.copy_(value)
    return torch.cat(finals), torch.cat(converged)
