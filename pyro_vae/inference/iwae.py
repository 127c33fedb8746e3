"""The importance-weighted bound of Burda et al. (2016) as a Pyro ELBO, per datapoint.

    L_K(x_n) = E_{z_1..z_K ~ q(z|x_n)} [ log (1/K) sum_k p(x_n, z_k) / q(z_k|x_n) ]

L_1 is the ELBO; L_K rises towards log p(x_n) as K grows. The loss is -(size/B) sum_n L_K(x_n)
over a minibatch, the same dataset-level scaling as Trace_ELBO's, and its gradient is the IWAE
estimator: reparameterized samples, each weighted by its normalized importance weight.

Why not ``pyro.infer.RenyiELBO(alpha=0)``, which computes the same bound: in Pyro 1.9 it multiplies
each log-weight by the data plate's subsample scale size/B *inside* the logsumexp, so on minibatches
it optimizes log mean_k w_k^(size/B) instead of (size/B) log mean_k w_k; it only offers
``loss_and_grads`` (it calls backward itself and syncs with the host every step), not the
``differentiable_loss`` that our training loop and ``ELBO()(model, guide)`` modules use. Without
subsampling the two agree, which tests/inference/test_iwae.py checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import ELBO
from torch import Tensor

from pyro_vae.inference.estimators import log_mean_exp, trace_log_weights
from pyro_vae.inference.sites import check_reparameterized, data_scale, plate_nesting, vectorized_traces


class IWAE_ELBO(ELBO):
    """-(size/B) * sum over the minibatch of L_K, with K = ``num_particles`` vectorized samples.

    Every sample site must sit in the plate named ``plate`` (as for the log p(x) estimator).
    """

    def __init__(self, num_particles: int = 5, plate: str = "data", max_plate_nesting: int | None = None) -> None:
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        super().__init__(num_particles=num_particles, vectorize_particles=True)
        self.plate = plate
        self._nesting = max_plate_nesting

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> Any:
        raise NotImplementedError("IWAE_ELBO draws its vectorized traces in sites.vectorized_traces")

    def bound(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Tensor:
        """Per-datapoint L_K estimates: a tensor of shape (N,).

        With gradients on, every guide sample site must be reparameterized (else a ValueError
        names it): the IWAE gradient has no score-function term.
        """
        return self._bound_and_scale(model, guide, args, kwargs)[0]

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Tensor:
        bound, scale = self._bound_and_scale(model, guide, args, kwargs)  # (N,), the data plate's size/B
        return -scale * bound.sum()

    def _bound_and_scale(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[Tensor, float | Tensor]:
        if self._nesting is None:
            self._nesting = plate_nesting(model, guide, args, kwargs, self.plate)
        guide_trace, model_trace = vectorized_traces(model, guide, args, kwargs, self.num_particles, self._nesting)
        if torch.is_grad_enabled():
            check_reparameterized(guide_trace)
        log_w = trace_log_weights(guide_trace, model_trace, self.plate, self._nesting)  # (K, N)
        return log_mean_exp(log_w), data_scale(model_trace)  # (N,)

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """For ``pyro.infer.SVI``: backward through the loss, return its value."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()
