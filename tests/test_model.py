import pyro
import pytest
import torch
from pyro import poutine

from pyro_vae.config import ModelConfig
from pyro_vae.model import DATA_PLATE, LATENT, OBSERVED
from pyro_vae.vae import VAE


def traces(vae, x, size=None):
    guide_trace = poutine.trace(vae.guide).get_trace(x, size=size)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x, size=size)
    return model_trace, guide_trace


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli", "gaussian"])
def test_sites_plate_and_shapes(likelihood):
    vae = VAE(x_dim=12, config=ModelConfig(z_dim=3, hidden=(8,), likelihood=likelihood))
    x = torch.bernoulli(torch.rand(5, 12))
    model_trace, guide_trace = traces(vae, x, size=50)
    model_sites = {n: s for n, s in model_trace.nodes.items() if s["type"] == "sample"}
    guide_sites = {n: s for n, s in guide_trace.nodes.items() if s["type"] == "sample"}
    assert set(model_sites) == {DATA_PLATE, LATENT, OBSERVED}  # DATA_PLATE: the plate's subsample site
    assert set(guide_sites) == {DATA_PLATE, LATENT}
    for site in (model_sites[LATENT], model_sites[OBSERVED], guide_sites[LATENT]):
        (frame,) = site["cond_indep_stack"]
        assert (frame.name, frame.size, frame.dim) == (DATA_PLATE, 5, -1)  # the frame holds the subsample
        assert site["scale"] == pytest.approx(50 / 5)  # the whole-dataset ELBO from a minibatch
    assert model_sites[DATA_PLATE]["fn"].size == 50 and len(model_sites[DATA_PLATE]["value"]) == 5
    assert model_sites[LATENT]["fn"].batch_shape == (5,) and model_sites[LATENT]["fn"].event_shape == (3,)
    assert model_sites[OBSERVED]["fn"].event_shape == (12,) and model_sites[OBSERVED]["is_observed"]
    assert guide_sites[LATENT]["value"].shape == (5, 3)
    assert guide_sites[LATENT]["fn"].has_rsample  # reparameterized
    # the prior is N(0, I)
    prior = model_sites[LATENT]["fn"].base_dist
    assert (prior.loc == 0).all() and (prior.scale == 1).all()


def test_plate_size_defaults_to_the_batch():
    vae = VAE(x_dim=12, config=ModelConfig(z_dim=3, hidden=(8,)))
    model_trace, _ = traces(vae, torch.bernoulli(torch.rand(5, 12)))
    assert model_trace.nodes[LATENT]["cond_indep_stack"][0].size == 5
    assert model_trace.nodes[LATENT]["scale"] == 1.0


def test_networks_are_registered_with_pyro_module():
    vae = VAE(x_dim=12, config=ModelConfig(z_dim=3, hidden=(8,)))
    traces(vae, torch.bernoulli(torch.rand(5, 12)))
    names = set(pyro.get_param_store().keys())
    assert {f"decoder$$${n}" for n, _ in vae.decoder.named_parameters()} <= names
    assert {f"encoder$$${n}" for n, _ in vae.encoder.named_parameters()} <= names


def test_decoder_mirrors_encoder_and_output_matches_likelihood():
    vae = VAE(x_dim=12, config=ModelConfig(z_dim=3, hidden=(9, 7), likelihood="gaussian"))
    widths = [m.out_features for m in vae.encoder.net if isinstance(m, torch.nn.Linear)]
    assert widths == [9, 7, 6]  # loc and log-variance heads fused
    widths = [m.out_features for m in vae.decoder.net if isinstance(m, torch.nn.Linear)]
    assert widths == [7, 9, 24]  # mean and log-variance per pixel
    assert vae.reconstruct(torch.rand(4, 12)).shape == (4, 12)
