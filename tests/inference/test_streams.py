"""Per-datapoint random streams: draws that belong to a datapoint, and estimators that still estimate.

The estimators drawn from streams are checked against the linear-Gaussian closed forms (linear_gaussian.py):
log p(x) exactly, and the ELBO of a Gaussian guide, log p(x) - KL(q || p(z|x)), with the KL of two Gaussians.
"""

import math

import pyro
import pytest
import torch
from pyro import distributions as dist
from pyro import poutine
from scipy import stats

from pyro_vae.config import ModelConfig
from pyro_vae.inference.ais import ais
from pyro_vae.inference.estimators import importance_log_weights, log_mean_exp
from pyro_vae.inference.sites import PARTICLES, vectorized
from pyro_vae.inference.streams import (
    FORWARD_AIS,
    IMPORTANCE_SAMPLING,
    LOCAL_FIT,
    REVERSE_AIS,
    DatapointStreams,
    stream_seed,
)
from pyro_vae.models.model import DATA_PLATE, LATENT
from pyro_vae.models.vae import VAE

from linear_gaussian import lg_model, problem, wide_guide  # noqa: F401  (a fixture)


def test_a_datapoint_draws_the_same_numbers_alone_or_among_others():
    among = DatapointStreams(7, [3, 5, 9]).normal(torch.empty(4, 3, 2), dim=1)  # (samples, datapoints, event)
    alone = DatapointStreams(7, [5]).normal(torch.empty(4, 1, 2), dim=1)
    assert torch.equal(among[:, 1], alone[:, 0])
    # a stream goes on where it left off: two draws of 4 and 6 samples are one draw of 10 (exactly)
    streams = DatapointStreams(7, [5])
    cut = torch.cat([streams.normal(torch.empty(4, 1, 2), 1), streams.normal(torch.empty(6, 1, 2), 1)])
    assert torch.equal(cut, DatapointStreams(7, [5]).normal(torch.empty(10, 1, 2), 1))
    # other seeds, indices and purposes are other streams
    keys = {stream_seed(7, 5, IMPORTANCE_SAMPLING), stream_seed(8, 5, IMPORTANCE_SAMPLING),
            stream_seed(7, 6, IMPORTANCE_SAMPLING), stream_seed(7, 5, FORWARD_AIS, 10),
            stream_seed(7, 5, FORWARD_AIS, 100), stream_seed(7, 5, REVERSE_AIS, 10), stream_seed(7, 5, LOCAL_FIT),
            stream_seed(7, 5, FORWARD_AIS)}
    assert len(keys) == 8  # pairs differ only in the seed, the index, the steps, or the purpose alone
    with pytest.raises(ValueError, match="3 random streams for a tensor of 2 datapoints"):
        DatapointStreams(7, [1, 2, 3]).uniform(torch.empty(5, 2), dim=1)
    with pytest.raises(ValueError, match="non-negative"):
        stream_seed(-1, 0, IMPORTANCE_SAMPLING)


def test_the_draws_are_standard_normal_and_uniform():
    """200,000 draws over 50 streams: Kolmogorov-Smirnov against the exact CDFs. The seed is fixed, so the test
    is deterministic; a p-value below 1e-3 would mean a wrong distribution (or a 1-in-1000 fixed draw)."""
    streams = DatapointStreams(0, range(50))
    normal = streams.normal(torch.empty(4000, 50), dim=1).double().flatten().numpy()
    uniform = streams.uniform(torch.empty(4000, 50), dim=1).double().flatten().numpy()
    assert stats.kstest(normal, "norm").pvalue > 1e-3
    assert stats.kstest(uniform, "uniform").pvalue > 1e-3
    # float32 normals from float64 uniforms: the tails are there (|z| > 4 has probability 6.3e-5: ~13 of them)
    assert 3 <= (abs(normal) > 4).sum() <= 30


def test_importance_sampling_from_streams_estimates_the_closed_forms(problem):  # noqa: F811
    """K = 20,000 draws per datapoint from the streams, in chunks of 3,000: the mean log-weight is the ELBO
    log p(x) - KL(q || p(z|x)) and log-mean-exp is log p(x), both in closed form; 4 SE each (the ELBO's SE
    from the log-weights' spread, log p^'s by the delta method). A draw that ignored the particle plate (every
    sample the same z, as an earlier version of the messenger did) is off by the log-weights' spread."""
    x, W, b = problem["x"], problem["W"], problem["b"]
    guide = wide_guide(problem["post_mean"], problem["post_cov"], shift=0.3)
    with DatapointStreams(1, range(8)).sampling("data"):
        log_w = importance_log_weights(lg_model, guide, x, W, b, num_samples=20_000, chunk_size=3_000)  # (K, N)
    assert log_w.std(0).min() > 0.1  # 20,000 different samples
    scale = 1.3 * torch.linalg.eigvalsh(problem["post_cov"]).max().sqrt()
    q = dist.MultivariateNormal(problem["post_mean"] + 0.3, scale**2 * torch.eye(2, dtype=x.dtype))
    posterior = dist.MultivariateNormal(problem["post_mean"], problem["post_cov"])
    elbo = problem["exact"] - torch.distributions.kl_divergence(q, posterior)
    assert torch.all((log_w.mean(0) - elbo).abs() < 4 * log_w.std(0) / math.sqrt(len(log_w)))
    w = torch.exp(log_w - log_w.max(0).values)
    se = w.std(0) / (w.mean(0) * math.sqrt(len(w)))
    assert torch.all((log_mean_exp(log_w) - problem["exact"]).abs() < 4 * se + 1e-3)


def test_a_flow_guide_drawn_from_streams_keeps_its_density():
    """The IAF guide's draw goes through the transforms as rsample does: the site's log q (from the transforms'
    cache) equals log q of the same z through a new distribution, which must invert the flow (float32; the
    inverse's rounding is ~1e-5 here: 1e-3 allowed)."""
    pyro.set_rng_seed(0)
    vae = VAE(12, ModelConfig(z_dim=3, hidden=(16,), guide="iaf", flow_layers=2))
    for p in vae.flow.parameters():  # away from the identity it starts at
        p.data.normal_(0, 0.3)
    x = torch.rand(4, 12).round()
    with DatapointStreams(0, range(4)).sampling(DATA_PLATE):
        trace = poutine.trace(vectorized(vae.guide, 5, 1)).get_trace(x)
    site = trace.nodes[LATENT]
    assert site["value"].shape == (5, 4, 3) and trace.nodes[PARTICLES]["value"].shape == (5,)
    loc, scale, h = vae.encoder.with_features(x)
    fresh = vae.flow.distribution(loc, scale, h)
    z = site["value"].detach().clone()
    assert torch.allclose(site["fn"].log_prob(site["value"]), fresh.log_prob(z), atol=1e-3)


def test_ais_from_streams_gives_an_image_its_numbers_in_any_chunk():
    """AIS of 6 datapoints in chunks of 6, and of 4 then 2, and of the last 3 alone: each datapoint draws from
    its own streams, so its estimate is the same up to float rounding (1e-4 nats; measured 0 or 1 ulp)."""
    pyro.set_rng_seed(0)
    vae = VAE(12, ModelConfig(z_dim=2, hidden=(16,)))
    x = torch.rand(6, 12).round()
    options = dict(num_steps=5, num_chains=3, num_leapfrog=2, plate=DATA_PLATE, max_plate_nesting=1)
    whole = ais(vae.model, vae.guide, x, chunk_size=6, noise=DatapointStreams(0, range(6), FORWARD_AIS, 5),
                **options).bound()
    cut = ais(vae.model, vae.guide, x, chunk_size=4, noise=DatapointStreams(0, range(6), FORWARD_AIS, 5),
              **options).bound()
    last = ais(vae.model, vae.guide, x[3:], noise=DatapointStreams(0, range(3, 6), FORWARD_AIS, 5), **options).bound()
    assert torch.allclose(whole, cut, atol=1e-4) and torch.allclose(whole[3:], last, atol=1e-4)
    # and the streams are not the global generator: another global seed changes nothing
    pyro.set_rng_seed(123)
    again = ais(vae.model, vae.guide, x, chunk_size=6, noise=DatapointStreams(0, range(6), FORWARD_AIS, 5),
                **options).bound()
    assert torch.allclose(whole, again, atol=1e-4)
