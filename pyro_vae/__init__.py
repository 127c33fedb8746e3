"""pyro_vae: the variational autoencoder of Kingma & Welling in Pyro, with importance-sampled log p(x)."""

__version__ = "0.1.0"

from pyro_vae.ais import AISResult, ais, ais_log_marginal_likelihood, reverse_ais, reverse_ais_log_marginal_likelihood
from pyro_vae.config import DataConfig, ModelConfig, TrainConfig
from pyro_vae.data import Dataset, load_dataset, prepare_data
from pyro_vae.errors import UsageError
from pyro_vae.estimators import importance_log_weights, iwae_bound, log_marginal_likelihood, pareto_khat
from pyro_vae.evaluation import AISEstimate, BoundsReport, evaluate_ais, evaluate_bounds
from pyro_vae.experiment import build, load_run, run_training
from pyro_vae.guide import guide
from pyro_vae.iwae import IWAE_ELBO
from pyro_vae.likelihoods import LIKELIHOODS, Bernoulli, ContinuousBernoulli, Gaussian, make_likelihood
from pyro_vae.model import DATA_PLATE, LATENT, OBSERVED, model
from pyro_vae.train import ELBOS, TrainState, fit, make_elbo, make_optimizer
from pyro_vae.vae import VAE

__all__ = [
    "AISEstimate", "AISResult", "ais", "ais_log_marginal_likelihood", "evaluate_ais", "reverse_ais",
    "reverse_ais_log_marginal_likelihood", "BoundsReport", "Bernoulli", "IWAE_ELBO", "TrainState", "make_optimizer", "ContinuousBernoulli", "DATA_PLATE", "DataConfig", "Dataset", "ELBOS",
    "Gaussian", "LATENT", "LIKELIHOODS", "ModelConfig", "OBSERVED", "TrainConfig", "UsageError", "VAE",
    "build", "evaluate_bounds", "fit", "guide", "importance_log_weights", "iwae_bound", "load_dataset",
    "load_run", "log_marginal_likelihood", "make_elbo", "make_likelihood", "model", "pareto_khat",
    "prepare_data", "run_training",
]
