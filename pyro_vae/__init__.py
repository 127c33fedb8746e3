"""pyro_vae: the variational autoencoder of Kingma & Welling in Pyro, with importance-sampled log p(x).

The names below load on first use (PEP 562), so that ``import pyro_vae`` and the scripts' start-up
do not pay for torch, Pyro, torchvision and matplotlib before they need them.
"""

from __future__ import annotations

import os as _os
import signal as _signal
import sys as _sys

_SCRIPTS = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "scripts")


def _stopped_while_starting(signum: int, frame: object) -> None:
    _sys.stderr.write("interrupted\n" if signum == _signal.SIGINT else "terminated (SIGTERM)\n")
    _os._exit(128 + signum)


# This package's first statements, so that they run before anything heavy is imported: when this process is one
# of the programs (pyro-vae-*, scripts/*.py; never a notebook or pytest that imports the library), a Ctrl-C or
# SIGTERM before cli.main installs its handler ends it at once with one line and 130 or 143, instead of a
# KeyboardInterrupt traceback from inside the imports. Nothing runs yet that could need saving.
if _sys.argv and _sys.argv[0] and (_os.path.basename(_sys.argv[0]).startswith("pyro-vae-")
                                   or _os.path.dirname(_os.path.realpath(_sys.argv[0])) == _os.path.realpath(_SCRIPTS)):
    for _signum in (_signal.SIGINT, _signal.SIGTERM):
        if _signal.getsignal(_signum) is not _signal.SIG_IGN:  # a background job ignores SIGINT: so do we
            _signal.signal(_signum, _stopped_while_starting)

import importlib  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

from pyro_vae import _moved  # noqa: E402

__version__ = "0.2.0"

if TYPE_CHECKING:
    from pyro_vae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from pyro_vae.data.datasets import Dataset, load_dataset
    from pyro_vae.data.pixels import PreparedData, likelihood_for, prepare_data
    from pyro_vae.errors import UsageError
    from pyro_vae.evaluation.bounds import (
        AISEstimate,
        BoundsReport,
        DatapointBounds,
        datapoint_ais,
        datapoint_bounds,
        evaluate_ais,
        evaluate_bounds,
    )
    from pyro_vae.inference.ais import (
        AISResult,
        ais,
        ais_log_marginal_likelihood,
        reverse_ais,
        reverse_ais_log_marginal_likelihood,
    )
    from pyro_vae.inference.estimators import importance_log_weights, iwae_bound, log_marginal_likelihood, pareto_khat
    from pyro_vae.inference.gaps import InferenceGaps, inference_gaps
    from pyro_vae.inference.iwae import IWAE_ELBO
    from pyro_vae.inference.objectives import ELBOS, make_elbo
    from pyro_vae.inference.streams import DatapointStreams
    from pyro_vae.models.likelihoods import LIKELIHOODS, Bernoulli, ContinuousBernoulli, Gaussian, make_likelihood
    from pyro_vae.models.model import DATA_PLATE, LATENT, OBSERVED
    from pyro_vae.models.vae import VAE
    from pyro_vae.runs.experiment import build, load_run, run_training
    from pyro_vae.training.loop import fit, held_out_bound, make_optimizer
    from pyro_vae.training.state import EpochRecord, TrainState

_EXPORTS = {
    "AISEstimate": "pyro_vae.evaluation.bounds",
    "AISResult": "pyro_vae.inference.ais",
    "Bernoulli": "pyro_vae.models.likelihoods",
    "BoundsReport": "pyro_vae.evaluation.bounds",
    "ContinuousBernoulli": "pyro_vae.models.likelihoods",
    "DATA_PLATE": "pyro_vae.models.model",
    "DataConfig": "pyro_vae.config",
    "DatapointBounds": "pyro_vae.evaluation.bounds",
    "DatapointStreams": "pyro_vae.inference.streams",
    "Dataset": "pyro_vae.data.datasets",
    "ELBOS": "pyro_vae.inference.objectives",
    "EpochRecord": "pyro_vae.training.state",
    "Gaussian": "pyro_vae.models.likelihoods",
    "IWAE_ELBO": "pyro_vae.inference.iwae",
    "InferenceGaps": "pyro_vae.inference.gaps",
    "LATENT": "pyro_vae.models.model",
    "LIKELIHOODS": "pyro_vae.models.likelihoods",
    "ModelConfig": "pyro_vae.config",
    "OBSERVED": "pyro_vae.models.model",
    "TrainConfig": "pyro_vae.config",
    "PreparedData": "pyro_vae.data.pixels",
    "RunConfig": "pyro_vae.config",
    "TrainState": "pyro_vae.training.state",
    "UsageError": "pyro_vae.errors",
    "VAE": "pyro_vae.models.vae",
    "ais": "pyro_vae.inference.ais",
    "ais_log_marginal_likelihood": "pyro_vae.inference.ais",
    "build": "pyro_vae.runs.experiment",
    "datapoint_ais": "pyro_vae.evaluation.bounds",
    "datapoint_bounds": "pyro_vae.evaluation.bounds",
    "evaluate_ais": "pyro_vae.evaluation.bounds",
    "evaluate_bounds": "pyro_vae.evaluation.bounds",
    "fit": "pyro_vae.training.loop",
    "held_out_bound": "pyro_vae.training.loop",
    "importance_log_weights": "pyro_vae.inference.estimators",
    "inference_gaps": "pyro_vae.inference.gaps",
    "iwae_bound": "pyro_vae.inference.estimators",
    "load_dataset": "pyro_vae.data.datasets",
    "load_run": "pyro_vae.runs.experiment",
    "log_marginal_likelihood": "pyro_vae.inference.estimators",
    "likelihood_for": "pyro_vae.data.pixels",
    "make_elbo": "pyro_vae.inference.objectives",
    "make_likelihood": "pyro_vae.models.likelihoods",
    "make_optimizer": "pyro_vae.training.loop",
    "pareto_khat": "pyro_vae.inference.estimators",
    "prepare_data": "pyro_vae.data.pixels",
    "reverse_ais": "pyro_vae.inference.ais",
    "reverse_ais_log_marginal_likelihood": "pyro_vae.inference.ais",
    "run_training": "pyro_vae.runs.experiment",
}
__all__ = sorted(_EXPORTS)
# the model and guide functions are pyro_vae.models.model.model and pyro_vae.models.guide.guide (or VAE.model and
# VAE.guide): as package attributes they would collide with 0.1.0's module paths pyro_vae.model and pyro_vae.guide

_moved.install()  # 0.1.0's flat module paths (pyro_vae.estimators, ...) keep working until 0.3.0


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pyro_vae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
