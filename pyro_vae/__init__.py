"""pyro_vae: the variational autoencoder of Kingma & Welling in Pyro, with importance-sampled log p(x).

The names below load on first use (PEP 562), so that ``import pyro_vae`` and the scripts' start-up
do not pay for torch, Pyro, torchvision and matplotlib before they need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pyro_vae.ais import (
        AISResult,
        ais,
        ais_log_marginal_likelihood,
        reverse_ais,
        reverse_ais_log_marginal_likelihood,
    )
    from pyro_vae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from pyro_vae.data import Dataset, load_dataset
    from pyro_vae.errors import UsageError
    from pyro_vae.estimators import importance_log_weights, iwae_bound, log_marginal_likelihood, pareto_khat
    from pyro_vae.evaluation import AISEstimate, BoundsReport, evaluate_ais, evaluate_bounds
    from pyro_vae.experiment import build, load_run, run_training
    from pyro_vae.iwae import IWAE_ELBO
    from pyro_vae.likelihoods import LIKELIHOODS, Bernoulli, ContinuousBernoulli, Gaussian, make_likelihood
    from pyro_vae.model import DATA_PLATE, LATENT, OBSERVED
    from pyro_vae.objectives import ELBOS, make_elbo
    from pyro_vae.pixels import PreparedData, likelihood_for, prepare_data
    from pyro_vae.state import EpochRecord, TrainState
    from pyro_vae.train import fit, held_out_bound, make_optimizer
    from pyro_vae.vae import VAE

_EXPORTS = {
    "AISEstimate": "pyro_vae.evaluation",
    "AISResult": "pyro_vae.ais",
    "Bernoulli": "pyro_vae.likelihoods",
    "BoundsReport": "pyro_vae.evaluation",
    "ContinuousBernoulli": "pyro_vae.likelihoods",
    "DATA_PLATE": "pyro_vae.model",
    "DataConfig": "pyro_vae.config",
    "Dataset": "pyro_vae.data",
    "ELBOS": "pyro_vae.objectives",
    "EpochRecord": "pyro_vae.state",
    "Gaussian": "pyro_vae.likelihoods",
    "IWAE_ELBO": "pyro_vae.iwae",
    "LATENT": "pyro_vae.model",
    "LIKELIHOODS": "pyro_vae.likelihoods",
    "ModelConfig": "pyro_vae.config",
    "OBSERVED": "pyro_vae.model",
    "TrainConfig": "pyro_vae.config",
    "PreparedData": "pyro_vae.pixels",
    "RunConfig": "pyro_vae.config",
    "TrainState": "pyro_vae.state",
    "UsageError": "pyro_vae.errors",
    "VAE": "pyro_vae.vae",
    "ais": "pyro_vae.ais",
    "ais_log_marginal_likelihood": "pyro_vae.ais",
    "build": "pyro_vae.experiment",
    "evaluate_ais": "pyro_vae.evaluation",
    "evaluate_bounds": "pyro_vae.evaluation",
    "fit": "pyro_vae.train",
    "held_out_bound": "pyro_vae.train",
    "importance_log_weights": "pyro_vae.estimators",
    "iwae_bound": "pyro_vae.estimators",
    "load_dataset": "pyro_vae.data",
    "load_run": "pyro_vae.experiment",
    "log_marginal_likelihood": "pyro_vae.estimators",
    "likelihood_for": "pyro_vae.pixels",
    "make_elbo": "pyro_vae.objectives",
    "make_likelihood": "pyro_vae.likelihoods",
    "make_optimizer": "pyro_vae.train",
    "pareto_khat": "pyro_vae.estimators",
    "prepare_data": "pyro_vae.pixels",
    "reverse_ais": "pyro_vae.ais",
    "reverse_ais_log_marginal_likelihood": "pyro_vae.ais",
    "run_training": "pyro_vae.experiment",
}
__all__ = sorted(_EXPORTS)
# the model and guide functions are pyro_vae.model.model and pyro_vae.guide.guide (or VAE.model and
# VAE.guide): as package attributes they would collide with their modules' names once those load


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pyro_vae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
