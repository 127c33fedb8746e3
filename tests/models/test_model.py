import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

from pyro_vae.config import ModelConfig
from pyro_vae.models.model import DATA_PLATE, LATENT, OBSERVED
from pyro_vae.models.vae import VAE


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


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous-bernoulli", "gaussian"])
def test_model_without_data_draws_images_from_the_prior(likelihood):
    # Pyro's idiom: Predictive(model, num_samples=S)(None, size=B)["x"] has shape (S, B, D)
    vae = VAE(x_dim=12, config=ModelConfig(z_dim=3, hidden=(8,), likelihood=likelihood))
    draws = Predictive(vae.model, num_samples=4)(None, size=5)
    assert draws["z"].shape == (4, 5, 3) and draws["x"].shape == (4, 5, 12)
    assert not torch.equal(draws["x"][0], draws["x"][1])  # a new image per draw
    if likelihood == "bernoulli":
        assert set(draws["x"].unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="pass size"):
        vae.model(None)


def test_prior_draws_follow_the_decoder():
    # a decoder that ignores z and outputs logit 3 everywhere: pixels are 1 with probability sigmoid(3)
    vae = VAE(x_dim=50, config=ModelConfig(z_dim=2, hidden=(4,)))
    with torch.no_grad():
        vae.decoder.net[-1].weight.zero_()
        vae.decoder.net[-1].bias.fill_(3.0)
    x = Predictive(vae.model, num_samples=40)(None, size=50)["x"]  # 100,000 pixels
    # sd of the mean of 100,000 Bernoulli(0.953) draws is 6.7e-4; 5 sd
    assert x.mean().item() == pytest.approx(torch.sigmoid(torch.tensor(3.0)).item(), abs=5 * 6.7e-4)


def test_reconstruction_by_predictive_through_the_guide():
    vae = VAE(x_dim=12, config=ModelConfig(z_dim=3, hidden=(8,)))
    x = torch.bernoulli(torch.full((5, 12), 0.3))
    z = Predictive(vae.guide, num_samples=4000)(x)["z"]  # (S, B, Z) from q(z|x)
    x_hat = Predictive(vae.model, posterior_samples={LATENT: z})(None, size=5)[OBSERVED]
    assert z.shape == (4000, 5, 3) and x_hat.shape == (4000, 5, 12)
    with torch.no_grad():
        loc, scale = vae.encoder(x)  # (B, Z) each
        probs = vae.decode_mean(z)  # (S, B, D): each draw's Bernoulli means
    # the draws of z are q's: their mean within 4 SE (scale / sqrt(S)) of the encoder's loc
    assert ((z.mean(0) - loc).abs() < 4 * scale / 4000**0.5).all()
    # each x_hat is a Bernoulli draw at its own z: the mean over draws within 4 SE of the mean probability
    se = (probs * (1 - probs)).mean(0).sqrt() / 4000**0.5
    assert ((x_hat.mean(0) - probs.mean(0)).abs() < 4 * se + 1e-6).all()
    assert set(x_hat.unique().tolist()) <= {0.0, 1.0}
