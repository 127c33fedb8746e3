import pyro
import pytest
import torch
import torch.distributions as td
from pyro import poutine

from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.data import PreparedData
from pyro_vae.errors import UsageError
from pyro_vae.model import LATENT
from pyro_vae.train import evaluate_elbo, fit, learning_rate, make_elbo, train_epoch
from pyro_vae.vae import VAE

from conftest import binary_data

# float32 sums of ~100 terms of size ~10: 1e-5 relative is rounding.
RTOL = 1e-5


def small_vae(likelihood="bernoulli"):
    return VAE(x_dim=20, config=ModelConfig(z_dim=2, hidden=(16,), likelihood=likelihood))


def hand_elbo_terms(vae, x, z):
    """log p(x|z), log p(z), log q(z|x) per datapoint with torch.distributions directly."""
    loc, scale = vae.encoder(x)
    log_px_z = td.Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)
    log_pz = td.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = td.Normal(loc, scale).log_prob(z).sum(-1)
    return log_px_z, log_pz, log_qz, loc, scale


def guide_sample(vae, x, size, seed):
    pyro.set_rng_seed(seed)
    return poutine.trace(vae.guide).get_trace(x, size=size).nodes[LATENT]["value"]


def test_trace_elbo_equals_hand_computed_elbo_for_the_same_sample():
    vae, x, size = small_vae(), binary_data(8), 80
    z = guide_sample(vae, x, size, seed=3)
    pyro.set_rng_seed(3)  # Trace_ELBO runs the guide first, so it draws the same z
    loss = make_elbo("trace").differentiable_loss(vae.model, vae.guide, x, size=size)
    log_px_z, log_pz, log_qz, _, _ = hand_elbo_terms(vae, x, z)
    expected = -(size / len(x)) * (log_px_z + log_pz - log_qz).sum()  # -(E log p(x|z) - KL), sampled KL
    torch.testing.assert_close(loss, expected, rtol=RTOL, atol=0)


def test_meanfield_elbo_uses_the_closed_form_gaussian_kl():
    vae, x, size = small_vae(), binary_data(8), 80
    z = guide_sample(vae, x, size, seed=4)
    pyro.set_rng_seed(4)
    loss = make_elbo("meanfield").differentiable_loss(vae.model, vae.guide, x, size=size)
    log_px_z, _, _, loc, scale = hand_elbo_terms(vae, x, z)
    kl = 0.5 * (scale**2 + loc**2 - 1 - torch.log(scale**2)).sum(-1)  # KL(N(mu, s^2) || N(0, 1)), App. B
    expected = -(size / len(x)) * (log_px_z - kl).sum()
    torch.testing.assert_close(loss, expected, rtol=RTOL, atol=0)


def test_vectorized_particles_average_the_elbo():
    vae, x = small_vae(), binary_data(8)
    elbo = make_elbo("trace", num_particles=4)
    assert elbo.vectorize_particles and elbo.num_particles == 4
    losses = torch.stack([elbo.differentiable_loss(vae.model, vae.guide, x) for _ in range(200)])
    single = torch.stack([make_elbo("trace").differentiable_loss(vae.model, vae.guide, x) for _ in range(200)])
    # same expectation (difference of means within 4 combined SE), a quarter of the variance (loosely)
    se = (losses.var() / 200 + single.var() / 200).sqrt()
    assert abs(losses.mean() - single.mean()) < 4 * se
    assert losses.var() < 0.6 * single.var()


def test_unknown_elbo_is_a_clear_error():
    with pytest.raises(UsageError, match="unknown ELBO 'renyi'"):
        make_elbo("renyi")


@pytest.mark.parametrize(
    "elbo, particles, jit", [("trace", 1, False), ("meanfield", 2, False), ("trace", 1, True), ("iwae", 5, False)]
)
def test_training_raises_the_elbo_and_changes_every_parameter(elbo, particles, jit):
    x = binary_data(320)
    data = PreparedData(x[:256], x[256:288], x[288:], "none", (4, 5))
    vae = small_vae()
    before = {n: p.detach().clone() for n, p in vae.named_parameters()}
    eval_elbo = make_elbo("meanfield")
    start = evaluate_elbo(vae, eval_elbo, data.test, 64).item()
    config = TrainConfig(epochs=12, batch_size=32, lr=1e-2, elbo=elbo, num_particles=particles, jit=jit)
    history = fit(vae, torch.optim.Adam(vae.parameters(), lr=config.lr), data, config, progress=False).history
    end = evaluate_elbo(vae, eval_elbo, data.test, 64).item()
    # 96 steps on two noisy prototypes: a random decoder scores ~-14 nats (20 pixels x log 2);
    # a fitted one ~-5 (the 5% flips cost ~0.2 nats each). 4 nats is far above the noise (~0.3).
    assert end > start + 4, (start, end)
    assert len(history) == 12 and history[-1].test_elbo > history[0].test_elbo
    assert history[-1].valid_elbo > history[0].valid_elbo
    for name, p in vae.named_parameters():
        assert not torch.equal(p, before[name]), name


def test_jit_drops_the_partial_last_batch():
    data = PreparedData(binary_data(70), binary_data(10), binary_data(10), "none", (4, 5))
    vae = small_vae()
    optimizer = torch.optim.Adam(vae.parameters())
    _, seen = train_epoch(vae, make_elbo("trace", jit=True), optimizer, data, 32, drop_last=True)
    assert seen == 64
    _, seen = train_epoch(vae, make_elbo("trace"), optimizer, data, 32)
    assert seen == 70


def test_dynamic_binarization_resamples_each_minibatch():
    grey = torch.full((50, 20), 0.5)
    data = PreparedData(grey, grey[:5].bernoulli(), grey[:5].bernoulli(), "dynamic", (4, 5))
    index = torch.arange(50)
    a, b = data.minibatch(index), data.minibatch(index)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and not torch.equal(a, b)
    assert torch.equal(PreparedData(grey, grey, grey, "none", (4, 5)).minibatch(index), grey)


def test_iwae_cannot_be_jit_compiled():
    with pytest.raises(UsageError, match="--jit is not available with --elbo iwae"):
        make_elbo("iwae", 5, jit=True)


def test_burda_schedule_exact_and_shrunk():
    # 3280 epochs: stage i = 3^i epochs at 1e-3 * 10^(-i/7), i = 0..7 (Burda et al. 2016, sec. 5)
    full = TrainConfig(epochs=3280, lr=1e-3, lr_schedule="burda")
    ends = [1, 4, 13, 40, 121, 364, 1093, 3280]
    for stage, end in enumerate(ends):
        assert learning_rate(full, end) == pytest.approx(1e-3 * 10 ** (-stage / 7))
        if end < 3280:
            assert learning_rate(full, end + 1) == pytest.approx(1e-3 * 10 ** (-(stage + 1) / 7))
    assert learning_rate(full, 3280) == pytest.approx(1e-4)
    for epochs in (8, 12, 100, 328):  # shorter runs: all 8 stages, each at least one epoch, 1e-3 down to 1e-4
        short = TrainConfig(epochs=epochs, lr=1e-3, lr_schedule="burda")
        rates = [learning_rate(short, e) for e in range(1, epochs + 1)]
        assert rates == sorted(rates, reverse=True) and len(set(rates)) == 8
        assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
        lengths = [rates.count(r) for r in sorted(set(rates), reverse=True)]
        # stages grow as b^i do, up to rounding to whole epochs
        assert all(later >= earlier - 1 for earlier, later in zip(lengths, lengths[1:])), lengths
        assert lengths[-1] == max(lengths)
    assert all(learning_rate(TrainConfig(lr=3e-4), e) == 3e-4 for e in (1, 30))


def test_early_stopping_keeps_the_best_validation_epoch(monkeypatch):
    """Scripted validation bounds: best at epoch 2, then 3 epochs without improvement."""
    import pyro_vae.train as train_module

    scripted = iter([-10.0, -10.0, -5.0, -5.0, -6.0, -6.0, -7.0, -7.0, -5.5, -5.5] + [0.0] * 30)  # (valid, test) pairs
    snapshots = []

    def fake_evaluate(vae, elbo, x, batch_size, context):  # called for validation, then test, each epoch
        snapshots.append({k: v.clone() for k, v in vae.state_dict().items()})
        return torch.tensor(next(scripted))

    monkeypatch.setattr(train_module, "evaluate_elbo", fake_evaluate)
    x = binary_data(96)
    data = PreparedData(x[:64], x[64:80], x[80:], "none", (4, 5))
    vae = small_vae()
    config = TrainConfig(epochs=20, batch_size=32, lr=1e-2, patience=3)
    history = fit(vae, torch.optim.Adam(vae.parameters(), lr=config.lr), data, config, progress=False).history
    assert [r.epoch for r in history] == [1, 2, 3, 4, 5]  # epoch 5 is the third without improvement
    best = snapshots[2]  # the parameters evaluated at the end of epoch 2
    assert all(torch.equal(v, best[k]) for k, v in vae.state_dict().items())


def test_output_bias_starts_the_decoder_at_the_mean_image():
    x = binary_data(200)
    vae = small_vae()
    vae.init_output_bias(x)
    with torch.no_grad():
        mean = vae.likelihood.distribution(vae.decoder.net[-1].bias).mean
    assert torch.allclose(mean, x.mean(0).clamp(1e-3, 1 - 1e-3), atol=1e-6)
