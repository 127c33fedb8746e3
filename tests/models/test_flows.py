"""The inverse autoregressive flow guide: its log-density against the change of variables with a Jacobian
computed by autograd, its inverse, and the estimators on a linear-Gaussian model with an IAF guide."""

import math

import pyro
import torch
from pyro import distributions as dist

from pyro_vae.config import ModelConfig
from pyro_vae.inference.ais import ais_log_marginal_likelihood, reverse_ais_log_marginal_likelihood
from pyro_vae.inference.estimators import importance_log_weights
from pyro_vae.models import flows
from pyro_vae.models.flows import IAF
from pyro_vae.models.vae import VAE

from linear_gaussian import lg_model, problem  # noqa: F401  (a fixture)


def trained_like(flow, size=0.3):
    """Move the flow's weights away from their start, so that the checks see a real flow."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(size * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


def test_log_q_of_its_own_samples_is_the_change_of_variables():
    """log q(z) = log N(u; loc, scale) - log |det df/du| at z = f(u), with the Jacobian of the whole flow by
    autograd in float64 (not the transforms' own log-determinants): equal to 1e-9 (rounding). A point the
    flow did not just draw (no cached forward pass) goes through the exact inverse: the same value, and
    f(f^-1(z)) = z."""
    torch.manual_seed(0)
    flow = trained_like(IAF(z_dim=4, context_dim=6, num_layers=3).double())
    loc, scale, h = torch.randn(5, 4).double(), torch.rand(5, 4).double() + 0.5, torch.randn(5, 6).double()
    q = flow.distribution(loc, scale, h)
    z = q.rsample()  # (5, 4)
    cached = q.log_prob(z)
    for n in range(5):
        base = dist.Normal(loc[n], scale[n]).to_event(1)
        q_n = flow.distribution(loc[n:n + 1], scale[n:n + 1], h[n:n + 1])

        def forward(u, q_n=q_n):
            for transform in q_n.transforms:
                u = transform(u)
            return u

        u = z[n:n + 1].clone()  # invert layer by layer, last to first
        for transform in reversed(q_n.transforms):
            u = transform.inv(u)
        torch.testing.assert_close(forward(u), z[n:n + 1], rtol=0, atol=1e-9)
        jacobian = torch.autograd.functional.jacobian(lambda v: forward(v[None])[0], u[0])  # (4, 4)
        reference = base.log_prob(u[0]) - torch.linalg.slogdet(jacobian).logabsdet
        torch.testing.assert_close(cached[n], reference, rtol=0, atol=1e-9)
        torch.testing.assert_close(q_n.log_prob(z[n:n + 1].clone())[0], reference, rtol=0, atol=1e-9)


def iaf_guide(problem, flow, shift=0.3, widen=1.5):
    """q(z|x): a Gaussian through ``flow`` (with x as its context), placed so that its image is near
    N(posterior mean + shift, widen * the largest posterior sd): each stable IAF layer starts as z ->
    sigmoid(2) z (Pyro's sigmoid bias 2) and the order of z is reversed between layers, so the base is that
    Gaussian divided by sigmoid(2)^layers, reversed once per reversal."""
    shrink = torch.sigmoid(torch.tensor(2.0, dtype=torch.float64)) ** len(flow.layers)
    target = problem["post_mean"] if len(flow.layers) % 2 else problem["post_mean"].flip(-1)
    loc = (target + shift) / shrink
    scale = (widen * torch.linalg.eigvalsh(problem["post_cov"]).max().sqrt() / shrink).expand_as(loc)

    def guide(x, W, b):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", flow.distribution(loc, scale, x / 10))  # a context of order 1

    return guide


def test_the_estimators_recover_the_exact_log_p_x_with_an_iaf_guide(problem):
    """Importance sampling with K = 20,000 from an IAF guide within 4 delta-method SE of the exact log p(x)
    for every datapoint (measured over 6 seeds: at most 1.9 SE); AIS from the same guide (its exact inverse
    gives log q at the points HMC moves to; 100 steps, 16 chains) within 0.15 nats on average and 0.5 for
    each datapoint (measured: 0.04 and 0.09). A log q that dropped the flow's log-determinant would be
    0.51 nats off (2 layers x 2 dims x log sigmoid(2))."""
    torch.manual_seed(1)
    flow = IAF(z_dim=2, context_dim=5, num_layers=2).double()
    with torch.no_grad():  # the autoregressive networks' output layers start at 0: each layer is z -> sigmoid(2) z
        for layer in flow.layers:
            layer.nn.layers[-1].weight.zero_()
            layer.nn.layers[-1].bias.zero_()
    guide = iaf_guide(problem, trained_like(flow, 0.05))  # then a little away from it, for IS to see a real flow
    args = (problem["x"], problem["W"], problem["b"])
    with torch.no_grad():
        log_w = importance_log_weights(lg_model, guide, *args, num_samples=20_000)  # (K, N)
    estimate = torch.logsumexp(log_w, 0) - math.log(len(log_w))
    w = (log_w - log_w.max(0).values).exp()
    se = w.std(0) / (w.mean(0) * len(w) ** 0.5)
    assert ((estimate - problem["exact"]).abs() < 4 * se).all(), (estimate - problem["exact"], se)
    assert (log_w.mean(0) < problem["exact"] - 0.05).all()  # the guide is not the posterior: the ELBO is below
    pyro.set_rng_seed(0)
    ais = ais_log_marginal_likelihood(lg_model, guide, *args, num_steps=100, num_chains=16, num_leapfrog=5)
    error = ais - problem["exact"]
    assert error.mean().abs() < 0.15 and error.abs().max() < 0.5, error


def test_a_vae_with_an_iaf_guide_anneals_in_the_flows_base_space_to_the_same_log_p_x():
    """A tiny IAF VAE (12 pixels, z in 2-D, the flow moved from its start): forward AIS in the base space
    (u ~ the encoder's Gaussian; target p(x, f(u)) |det df/du|), AIS from the flow guide itself (its exact
    inverse at every HMC point) and importance sampling with 50,000 draws of the flow guide all estimate the
    same log p(x); reverse AIS from the latents that generated the images, pulled back to u, bounds it from
    above. Tolerances: 0.15 nats per image for the AIS rows against IS (200 steps, 8 chains; IS's own
    delta-method SE is up to 0.03 here), reverse AIS at most 0.15 below IS. Measured on another seed: base
    space 0.105, direct 0.067, reverse 0.078 below (0.052, 0.030, 0.021 with 500 steps and 16 chains).
    AIS through the inverse runs on 2 of the 6 images: the slow path, which this test only cross-checks."""
    torch.manual_seed(0)
    vae = VAE(x_dim=12, config=ModelConfig(z_dim=2, hidden=(16,), guide="iaf", flow_layers=2))
    trained_like(vae.flow, 0.1)
    pyro.enable_validation(False)  # as the commands run AIS: a diverging leapfrog proposal is rejected, not checked
    assert vae.annealing_guide == vae.base_guide and vae.annealing_model == vae.base_model
    assert VAE(12, ModelConfig(z_dim=2, hidden=(16,))).annealing_guide.__name__ == "guide"
    with torch.no_grad():
        trace = pyro.poutine.trace(vae.model).get_trace(None, size=6)  # z ~ p(z), x ~ p(x|z)
    x, z = trace.nodes["x"]["value"], trace.nodes["z"]["value"]
    with torch.no_grad():
        log_w = importance_log_weights(vae.model, vae.guide, x, num_samples=50_000)  # (K, 6)
    exact = torch.logsumexp(log_w, 0) - math.log(len(log_w))
    options = dict(num_steps=200, num_chains=8, num_leapfrog=5)
    base = ais_log_marginal_likelihood(vae.annealing_model, vae.annealing_guide, x, **options)
    direct = ais_log_marginal_likelihood(vae.model, vae.guide, x[:2], **options)  # slow: the inverse at each step
    upper = reverse_ais_log_marginal_likelihood(vae.annealing_model, vae.annealing_guide, x,
                                                latents=vae.annealing_latents(x, {"z": z}), **options)
    torch.testing.assert_close(base, exact, rtol=0, atol=0.15)
    torch.testing.assert_close(direct, exact[:2], rtol=0, atol=0.15)
    assert (upper > exact - 0.15).all(), upper - exact
    u = vae.annealing_latents(x, {"z": z})["z_base"]  # and back: f(f^-1(z)) = z
    loc, scale, h = vae.encoder.with_features(x)
    torch.testing.assert_close(flows.push_forward(vae.flow.distribution(loc, scale, h).transforms, u)[0], z)
