"""Importance sampling, AIS and reverse AIS (BDMC) on models shaped like Pyro's examples, which this project
did not write (tests/pyro_shapes.py): a semi-supervised model whose discrete class y is summed out by
enumeration, and a deep Markov model with masked steps, each against its exact log p(x) by float64 quadrature.
On simulated data the latents that made x are an exact posterior draw: reverse AIS starts there.

The SEs in the tolerances are the delta-method SEs of log-mean-exp over the chains (or samples), measured in
each test; the constant part covers what AIS of the stated length has not yet closed (measured below it)."""

import pyro
import pytest
import torch
from pyro import distributions as dist
from pyro_shapes import (
    dmm_data,
    dmm_exact,
    dmm_guide,
    dmm_model,
    ss_data,
    ss_exact,
    ss_fitted_guide,
    ss_model,
)

from pyro_vae.inference.ais import ais, reverse_ais
from pyro_vae.inference.enumeration import enumerated_log_weights
from pyro_vae.inference.estimators import importance_log_weights, log_marginal_likelihood, log_mean_exp
from pyro_vae.inference.gaps import inference_gaps


def delta_se(log_w):
    """The SE of log-mean-exp over chains (C, N) -> (N,), by the delta method."""
    w = (log_w - log_w.max(0).values).exp()
    return w.std(0) / (w.mean(0) * len(w) ** 0.5)


@pytest.fixture(scope="module")
def semi_supervised():
    x, _, z = ss_data()
    return x, z, ss_exact(x), ss_fitted_guide(x)


def test_ais_sums_the_class_out_and_matches_quadrature_and_enumeration(semi_supervised):
    """AIS anneals q(z|x) = sum_y q(y|x) q(z|x, y) to p(x, z) = sum_y p(x, y, z), moving z alone. 50 steps, 64
    chains: forward within 0.05 + 4 SE of the exact log p(x) per datapoint and within 0.1 on average (the issue's
    bar; measured mean 0.016, SEs 0.03 to 0.08); reverse AIS from the z that made x, an upper bound, within
    0.15 + 4 SE per datapoint (measured at most 0.19 above on one with SE 0.055) and 0.1 on average."""
    x, z, exact, guide = semi_supervised
    forward = ais(ss_model, guide, x, num_steps=50, num_chains=64, num_leapfrog=5)
    reverse = reverse_ais(ss_model, guide, x, latents={"z": z}, num_steps=50, num_chains=64, num_leapfrog=5)
    assert set(forward.final) == {"z"}  # HMC moved the continuous site only
    for estimate, log_w, slack in ((forward.bound(), forward.log_weights, 0.05),
                                   (-reverse.bound(), -reverse.log_weights, 0.15)):
        error, se = estimate - exact, delta_se(log_w)
        assert (se < 0.1).all()
        assert (error.abs() < slack + 4 * se).all(), (error, se)
        assert abs(error.mean()) < 0.1


def test_ais_sums_a_discrete_site_that_only_the_model_has():
    """A guide of z alone (the prior, widened): the class is summed out of the model only; 50 steps within
    0.05 + 4 SE of the exact value per datapoint. Importance sampling refuses such a pair (the model's y would be
    drawn from its prior inside every weight)."""
    x, _, _ = ss_data(n=3, seed=1)

    def z_only(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.new_zeros(x.shape[0], 2), 1.5).to_event(1))

    result = ais(ss_model, z_only, x, num_steps=50, num_chains=64, num_leapfrog=5)
    error, se = result.bound() - ss_exact(x), delta_se(result.log_weights)
    assert (error.abs() < 0.05 + 4 * se).all(), (error, se)
    with pytest.raises(ValueError, match=r"model latent site\(s\) \['y'\] not in the guide"):
        log_marginal_likelihood(ss_model, z_only, x, num_samples=10)


def test_enumerated_importance_sampling_does_not_need_the_guide_to_find_the_class(semi_supervised):
    """With q(y|x) sure of the wrong class (all but 1e-9 on class 0 where another made x), sampled IS almost
    never draws the right one and is off by nats; enumerated IS draws z (from the prior) for every class and is
    within 0.03 + 4 SE of the exact value (SE by the delta method from its weights: conservative, as it ignores
    the stratification; measured 0.01 to 0.03)."""
    x, _, exact, _ = semi_supervised

    def wrong_classifier(x):
        with pyro.plate("data", x.shape[0]):
            logits = x.new_tensor([20.0] + [0.0] * 9).expand(x.shape[0], 10)
            y = pyro.sample("y", dist.OneHotCategorical(logits=logits))
            pyro.sample("z", dist.Normal(x.new_zeros(y.shape[:-1] + (2,)), 1.0).to_event(1))

    log_w = enumerated_log_weights(ss_model, wrong_classifier, (x,), {}, 5000, "data", 1)  # (10 x 5000, N)
    enumerated, se = log_mean_exp(log_w), delta_se(log_w)
    sampled = log_marginal_likelihood(ss_model, wrong_classifier, x, num_samples=5000)
    assert ((enumerated - exact).abs() < 0.03 + 4 * se).all(), (enumerated - exact, se)
    assert (exact - sampled > 2.0).sum() >= 4  # the classes of 5 of the 6 datapoints are not class 0


def test_enumerated_importance_sampling_is_exact_in_expectation(semi_supervised):
    """The stratified estimator p^ = sum_y mean_k w_yk with the fitted guide: the mean of exp(log p^ - log p(x))
    over 200 runs of 20 draws per class within 4 SE of 1 on every datapoint (unbiased in p(x))."""
    x, _, exact, guide = semi_supervised
    ratios = torch.stack([(log_marginal_likelihood(ss_model, guide, x, num_samples=20, enumerate=True) - exact).exp()
                          for _ in range(200)])
    mean, se = ratios.mean(0), ratios.std(0) / 200 ** 0.5
    assert ((mean - 1).abs() < 4 * se).all(), (mean, se)


def test_a_discrete_site_of_infinite_support_is_refused_in_one_line():
    def poisson_model(x):
        with pyro.plate("data", x.shape[0]):
            k = pyro.sample("k", dist.Poisson(torch.full_like(x, 3.0)))
            pyro.sample("x", dist.Normal(k, 1.0), obs=x)

    def poisson_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("k", dist.Poisson(torch.full_like(x, 3.0)))

    x = torch.tensor([1.0, 4.0])
    message = r"guide site 'k' samples from Poisson, a discrete distribution with an infinite support"
    with pytest.raises(ValueError, match=message):
        ais(poisson_model, poisson_guide, x, num_steps=2, num_chains=2)
    with pytest.raises(ValueError, match=message):
        log_marginal_likelihood(poisson_model, poisson_guide, x, num_samples=4, enumerate=True)
    assert log_marginal_likelihood(poisson_model, poisson_guide, x, num_samples=4).isfinite().all()  # sampled: fine


def test_the_gap_decomposition_refuses_a_discrete_site_with_its_reason(semi_supervised):
    x, _, _, guide = semi_supervised
    with pytest.raises(ValueError, match=r"guide site .y. is discrete: q\* of the gap decomposition .* not defined"):
        inference_gaps(ss_model, guide, x, local_steps=2, num_samples=4, ais_steps=2, ais_chains=2)


def test_ais_and_reverse_ais_on_a_masked_deep_markov_model():
    """Three masked steps (lengths 1 to 3), one latent each: 50 steps, 64 chains, forward within 0.05 + 4 SE of
    the exact log p(x) per datapoint (measured SEs 0.04 to 0.1), reverse from the z that made x within
    0.1 + 4 SE; importance sampling of 5,000 draws within 0.05 + 4 SE."""
    x, lengths, z = dmm_data()
    exact = dmm_exact(x, lengths)
    forward = ais(dmm_model, dmm_guide, x, lengths, num_steps=50, num_chains=64, num_leapfrog=5)
    reverse = reverse_ais(dmm_model, dmm_guide, x, lengths, latents={f"z_{t + 1}": z[:, t] for t in range(3)},
                          num_steps=50, num_chains=64, num_leapfrog=5)
    log_w = importance_log_weights(dmm_model, dmm_guide, x, lengths, num_samples=5000)
    for estimate, weights, slack in ((forward.bound(), forward.log_weights, 0.05),
                                     (-reverse.bound(), -reverse.log_weights, 0.1),
                                     (torch.logsumexp(log_w, 0) - torch.log(torch.tensor(5000.0)), log_w, 0.05)):
        error, se = estimate - exact, delta_se(weights)
        assert (error.abs() < slack + 4 * se).all(), (error, se)
