"""Maximizing per-datapoint ELBOs, and a convergence test that can fail.

A local optimization whose step size decays stops improving wherever it is when the step size has become
small, so "the ELBO stopped rising" is no evidence of an optimum (measured: with 20 steps, or with a step size
ten times too small, dozens of images ended 0.5 to 12 nats short, all of them flat at the end). The test
here asks the question directly: a second optimization from the result, PROBE_FRACTION as long (at least
PROBE_MIN_STEPS) and at a fresh step size, must not raise the datapoint's ELBO by more than CONVERGED_NATS.
The two ELBOs are compared on the same draws (common random numbers), so their difference carries little
of their noise. What it guarantees: no direction that this optimizer finds in that many steps raises the
ELBO by more than CONVERGED_NATS. It is a statement about the optimum the optimization reached, not about
other modes of the posterior (for those, local.local_elbo runs from several starts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from pyro_vae.inference.estimators import importance_log_weights, trace_log_weights
from pyro_vae.inference.sites import vectorized_traces

CONVERGED_NATS = 0.05  # a probe that raises a datapoint's ELBO by more than this says q* had not converged
PROBE_FRACTION = 0.2  # the probe's steps, as a fraction of the optimization's
PROBE_MIN_STEPS = 50  # ... and at least this many
FINAL_LR_RATIO = 0.01  # the step size decays geometrically to this fraction of where it starts


@dataclass(frozen=True)
class Objective:
    """The per-datapoint ELBO of a model/guide pair on some datapoints."""

    model: Callable
    guide: Callable
    args: tuple
    kwargs: dict
    plate: str
    nesting: int

    def elbo(self, draws: int) -> Callable[[], Tensor]:
        """A function that returns each datapoint's reparameterized ELBO from ``draws`` vectorized draws: (N,)."""
        def value() -> Tensor:
            traces = vectorized_traces(self.model, self.guide, self.args, self.kwargs, draws, self.nesting)
            return trace_log_weights(*traces, self.plate, self.nesting).mean(0)

        return value

    def estimate(self, draws: int) -> Callable[[], Tensor]:
        """A function that returns each datapoint's mean log-weight over ``draws`` draws, without gradients: (N,)."""
        return lambda: importance_log_weights(self.model, self.guide, *self.args, num_samples=draws, plate=self.plate,
                                              max_plate_nesting=self.nesting, **self.kwargs).mean(0)


def probe_steps(steps: int) -> int:
    return max(PROBE_MIN_STEPS, round(PROBE_FRACTION * steps))


def maximize(elbo: Callable[[], Tensor], leaves: list[Tensor], steps: int, lr: float) -> None:
    """Adam on ``leaves`` for ``steps`` steps up the summed per-datapoint ``elbo()`` (N,), its step size decaying
    geometrically from ``lr`` to FINAL_LR_RATIO of it."""
    if steps < 1:
        raise ValueError(f"local_steps must be >= 1, got {steps}")
    optimizer = torch.optim.Adam(leaves, lr=lr)
    decay = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=FINAL_LR_RATIO ** (1 / steps))
    with torch.enable_grad():
        for _ in range(steps):
            grads = torch.autograd.grad(-elbo().sum(), leaves, allow_unused=True)
            if all(grad is None for grad in grads):
                raise ValueError("none of the parameters being optimized changes the ELBO: for a guide's own "
                                 "parameters, Pyro's param store holds other tensors under their names (an earlier "
                                 "model's, e.g. of a second VAE in this process); call pyro.clear_param_store() and "
                                 "run the guide once")
            for leaf, grad in zip(leaves, grads):
                leaf.grad = grad
            optimizer.step()
            decay.step()
    for leaf in leaves:
        leaf.grad = None  # a guide's own parameters are left as they were found, but for their values


def fresh_seed() -> int:
    """A seed for common_draws, from the global generator (so a seeded run repeats)."""
    return int(torch.randint(2**62, ()))


def common_draws(elbo: Callable[[], Tensor], seed: int) -> Tensor:
    """``elbo()`` with torch's generators set to ``seed`` and restored afterwards, without gradients: two
    reparameterized ELBOs evaluated this way with one seed share their standard-normal draws."""
    cuda = torch.cuda.is_initialized()
    with torch.no_grad(), torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed_all(seed)
        return elbo()


def probe(objective: Objective, leaves: list[Tensor], *, steps: int, lr: float, particles: int,
          draws: int) -> Tensor:
    """How much a further optimization raises each datapoint's ELBO (N,): ``leaves``, where the optimization
    left them, are moved by ``steps`` more steps of maximize from step size ``lr``; the ELBO before and after
    on the same ``draws`` draws. The leaves are left at the probe's end."""
    seed = fresh_seed()
    before = common_draws(objective.estimate(draws), seed)
    maximize(objective.elbo(particles), leaves, steps, lr)
    return common_draws(objective.estimate(draws), seed) - before
