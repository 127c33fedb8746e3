"""The up-front memory estimates: parameter counts against the networks torch builds."""

import pytest

from pyro_vae.config import ModelConfig
from pyro_vae.evaluation.memory import parameter_count
from pyro_vae.models.likelihoods import make_likelihood
from pyro_vae.models.vae import VAE


@pytest.mark.parametrize(
    "config",
    [ModelConfig(), ModelConfig(z_dim=50, hidden=(200, 200), activation="tanh"), ModelConfig(likelihood="gaussian"),
     ModelConfig(likelihood="continuous-bernoulli", z_dim=2, hidden=(16,)),
     ModelConfig(z_dim=100, z2_dim=50, hidden=(200, 200), activation="tanh"),
     ModelConfig(guide="iaf", flow_layers=3, z_dim=7, hidden=(30, 20))],  # --flow-layers 1e6 was built, then ran out
    ids=["784-400-20", "784-200-200-50", "gaussian", "continuous-bernoulli", "two-layers", "iaf"],
)
def test_parameter_count_is_what_torch_builds_before_it_builds_it(config):
    likelihood = make_likelihood(config)
    vae = VAE(784, config, likelihood)
    built = sum(p.numel() for p in vae.parameters())
    assert parameter_count(config, 784, likelihood.params_per_pixel) == built
