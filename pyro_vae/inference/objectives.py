"""The training objectives: Pyro's ELBOs by name, the IWAE bound, and fixes to Pyro's JIT ELBOs.

    trace      Trace_ELBO: KL(q || p) sampled, log q(z|x) - log p(z)
    meanfield  TraceMeanField_ELBO: KL(q || p) in closed form, lower gradient variance
    iwae       the importance-weighted bound L_K of Burda et al. (2016), K = num_particles (iwae.py)

Each is available JIT-compiled (``jit=True``) except iwae.
"""

from __future__ import annotations

import warnings
from typing import Any

from pyro.infer import ELBO, JitTrace_ELBO, JitTraceMeanField_ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch import Tensor

from pyro_vae.errors import UsageError
from pyro_vae.inference.iwae import IWAE_ELBO


class QuietJit:
    """Mixin for Pyro's JIT ELBOs: torch 2.14 deprecates the ``torch.jit.trace`` they are built on and says so
    at every compile. Choosing them is this package's doing (``jit=True``), so that one warning is silenced here."""

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace` is deprecated", category=FutureWarning)
            return super().differentiable_loss(model, guide, *args, **kwargs)  # type: ignore[misc]


class JitTraceELBO(QuietJit, JitTrace_ELBO):
    """Pyro's JitTrace_ELBO without torch's deprecation warning."""


class FixedJitTraceMeanField_ELBO(QuietJit, JitTraceMeanField_ELBO):
    """JitTraceMeanField_ELBO that compiles once. Pyro 1.9's checks for ``_loss_and_surrogate_loss``
    but stores its compiled function as ``_differentiable_loss``, so it traced the model and guide
    again at every step (slower than no JIT at all). Setting the attribute it checks fixes that."""

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> Tensor:
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self._loss_and_surrogate_loss = self._differentiable_loss
        return loss


# name -> (plain, JIT-compiled or None) ELBO class
ELBOS: dict[str, tuple[type[ELBO], type[ELBO] | None]] = {
    "trace": (Trace_ELBO, JitTraceELBO),  # KL term sampled: log q(z|x) - log p(z)
    "meanfield": (TraceMeanField_ELBO, FixedJitTraceMeanField_ELBO),  # KL term analytic: lower variance
    "iwae": (IWAE_ELBO, None),  # L_K, K = num_particles (Burda et al. 2016); see iwae.py
}


def make_elbo(name: str, num_particles: int = 1, jit: bool = False, guide: str = "gaussian",
              layers: int = 1) -> ELBO:
    """The ELBO named ``name`` with ``num_particles`` samples of z per datapoint, vectorized. ``guide`` names
    the guide's family: meanfield needs a closed-form KL(q || p(z)), which only the Gaussian one has (for
    others Pyro would fall back to a sampled entropy without saying so), and a guide that factorizes as the
    prior does, which two stochastic ``layers`` (q(z2|z1) against p(z1|z2)) do not."""
    if name not in ELBOS:
        raise UsageError(f"unknown ELBO {name!r}: choose one of {', '.join(ELBOS)}")
    if isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1:
        raise UsageError(f"`num_particles` must be a positive integer, got {num_particles!r}")
    if name == "meanfield" and guide != "gaussian":
        raise UsageError(f"`elbo=meanfield` needs the analytic KL of a Gaussian guide; `guide={guide}` has none: "
                         "use `elbo=trace` or `elbo=iwae`")
    if name == "meanfield" and layers > 1:
        raise UsageError("`elbo=meanfield` takes each layer's KL(q || p) in closed form, which needs q and p to "
                         "factorize alike; two stochastic layers' q(z2|z1) and p(z1|z2) do not (the KL of z1 would "
                         "hold z2 fixed while z2 depends on z1): use `elbo=trace` or `elbo=iwae`")
    plain, compiled = ELBOS[name]
    if jit and compiled is None:
        raise UsageError(f"`jit` is not available with `elbo={name}`: drop `jit`")
    if plain is IWAE_ELBO:
        return IWAE_ELBO(num_particles)
    options = dict(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
    if jit and compiled is not None:
        return compiled(ignore_jit_warnings=True, **options)
    return plain(**options)


def objective_name(elbo: str, num_particles: int) -> str:
    """How logs and figures name the training objective: ELBO, or L_K for iwae."""
    return f"L_{num_particles}" if elbo == "iwae" else "ELBO"
