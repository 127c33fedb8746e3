import copy
import math

import pyro
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from pyro_vae.config import ModelConfig, TrainConfig
from pyro_vae.data.pixels import PreparedData
from pyro_vae.errors import TrainingDiverged, UsageError
from pyro_vae.evaluation.bounds import objective_sum
from pyro_vae.inference.objectives import make_elbo
from pyro_vae.models.vae import VAE
from pyro_vae.training.distributed import SINGLE, MinibatchLoss
from pyro_vae.training.loop import fit, train_epoch
from pyro_vae.training.schedule import learning_rate
from pyro_vae.training.state import TrainState

from conftest import binary_data


def small_vae(likelihood="bernoulli"):
    return VAE(x_dim=20, config=ModelConfig(z_dim=2, hidden=(16,), likelihood=likelihood))


def epoch(vae, elbo, optimizer, data, batch_size, drop_last=False):
    """One train_epoch of ``vae`` in one process, minibatches as fit draws them."""
    minibatches = SINGLE.minibatches(len(data.train), batch_size, drop_last)
    return train_epoch(MinibatchLoss(vae, elbo), optimizer, data, minibatches)


def mean_bound(vae, elbo, x, batch_size):
    return objective_sum(vae, elbo, x, batch_size) / len(x)


@pytest.mark.parametrize(
    "elbo, particles, jit", [("trace", 1, False), ("meanfield", 2, False), ("trace", 1, True), ("iwae", 5, False)]
)
def test_training_raises_the_elbo_and_changes_every_parameter(elbo, particles, jit):
    x = binary_data(320)
    data = PreparedData(x[:256], x[256:288], x[288:], "none", (4, 5))
    vae = small_vae()
    before = {n: p.detach().clone() for n, p in vae.named_parameters()}
    # each scored by the objective it maximizes: an IWAE-trained q is broader, and its ELBO gained
    # between 2.8 and 7.1 nats over seeds 0-7 where its L_5 gained 7.9-9.1
    eval_elbo = make_elbo(elbo, particles)
    start = mean_bound(vae, eval_elbo, data.test, 64).item()
    config = TrainConfig(epochs=12, batch_size=32, lr=1e-2, elbo=elbo, num_particles=particles, jit=jit)
    history = fit(vae, torch.optim.Adam(vae.parameters(), lr=config.lr), data, config, progress=False).history
    end = mean_bound(vae, eval_elbo, data.test, 64).item()
    # 96 steps on two noisy prototypes: a random decoder scores ~-14 nats (20 pixels x log 2);
    # a fitted one ~-5 (the 5% flips cost ~0.2 nats each). 4 nats is far above the noise (~0.3).
    assert end > start + 4, (start, end)
    assert len(history) == 12 and history[-1].valid_bound > history[0].valid_bound
    for name, p in vae.named_parameters():
        assert not torch.equal(p, before[name]), name


@pytest.mark.parametrize("validation, message", [(True, "non-finite network output"), (False, "non-finite loss")])
def test_a_nan_minibatch_is_a_divergence_at_its_step(monkeypatch, validation, message):
    # validation on: Pyro refuses the NaN logits at once; off (as run_training trains): the loss goes
    # NaN and the device-side check names the same step
    data = PreparedData(binary_data(64), binary_data(16), binary_data(16), "none", (4, 5))
    real, calls = PreparedData.minibatch, {"n": 0}

    def minibatch(self, index):
        calls["n"] += 1
        x = real(self, index)
        return torch.full_like(x, float("nan")) if calls["n"] == 3 else x

    monkeypatch.setattr(PreparedData, "minibatch", minibatch)
    vae = small_vae()
    expected = f"{message} at epoch 1, step 3 of 4"
    with pyro.validation_enabled(validation), pytest.raises(TrainingDiverged, match=expected):
        fit(vae, torch.optim.Adam(vae.parameters()), data, TrainConfig(epochs=1, batch_size=16), progress=False)


@pytest.mark.parametrize("likelihood, train, binarize, message", [
    ("bernoulli", binary_data(64) * 0.5, "none",
     "the training images cannot be scored: the bernoulli likelihood needs binary pixels"),
    ("gaussian", torch.cat([binary_data(63), torch.full((1, 20), float("nan"))]), "none",
     "the training images cannot be scored: the gaussian likelihood needs finite data"),
    ("bernoulli", torch.cat([binary_data(63), torch.full((1, 20), float("inf"))]), "dynamic",
     "the training images cannot be scored: pixels drawn per minibatch need intensities in \\[0, 1\\]"),
], ids=["grey for bernoulli", "nan", "inf, dynamic"])
def test_data_a_likelihood_cannot_score_is_bad_data_not_a_divergence(likelihood, train, binarize, message):
    """Data built by hand (prepare_data checks its own): grey pixels for the Bernoulli trained and then said
    "training diverged"; NaN or inf said so as an error about the guide's loc."""
    data = PreparedData(train, binary_data(16), binary_data(16), binarize, (4, 5))
    vae = small_vae(likelihood)
    with pytest.raises(UsageError, match=message):
        fit(vae, torch.optim.Adam(vae.parameters()), data, TrainConfig(epochs=1, batch_size=16), progress=False)


def test_jit_drops_the_partial_last_batch():
    data = PreparedData(binary_data(70), binary_data(10), binary_data(10), "none", (4, 5))
    vae = small_vae()
    optimizer = torch.optim.Adam(vae.parameters())
    _, seen = epoch(vae, make_elbo("trace", jit=True), optimizer, data, 32, drop_last=True)
    assert seen == 64
    _, seen = epoch(vae, make_elbo("trace"), optimizer, data, 32)
    assert seen == 70


def test_dynamic_binarization_resamples_each_minibatch():
    grey = torch.full((50, 20), 0.5)
    data = PreparedData(grey, grey[:5].bernoulli(), grey[:5].bernoulli(), "dynamic", (4, 5))
    index = torch.arange(50)
    a, b = data.minibatch(index), data.minibatch(index)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and not torch.equal(a, b)
    assert torch.equal(PreparedData(grey, grey, grey, "none", (4, 5)).minibatch(index), grey)


def reference_epoch(vae, optimizer, x, batch_size):
    """pytorch/examples' VAE loop (vae/main.py): summed binary cross-entropy + analytic KL of each
    minibatch, the last one smaller; the same randperm and normal draws as our loop consumes."""
    for index in torch.randperm(len(x)).split(batch_size):
        batch = x[index]
        mu, std = vae.encoder(batch)
        z = mu + std * torch.randn_like(std)
        bce = F.binary_cross_entropy_with_logits(vae.decoder(z), batch, reduction="sum")
        kld = 0.5 * torch.sum(std**2 + mu**2 - 1 - 2 * std.log())
        optimizer.zero_grad()
        (bce + kld).backward()
        optimizer.step()


def test_a_partial_last_minibatch_takes_the_steps_of_pytorch_examples():
    """51 images in minibatches of 16: three full and one of 3. Our loss is the whole-dataset ELBO
    (n/b times the minibatch's), pytorch/examples' the minibatch's sum; Adam takes the same steps
    for gradients that differ by one constant factor, so only if the partial minibatch is weighted
    like the full ones do the two loops end at the same weights. Before, its 3 images got a full
    step: after 3 epochs the weights differed by 0.04; now 3e-7 (float32 rounding; 1e-5 allowed)."""
    x = binary_data(51)
    ours = small_vae()
    reference, start = copy.deepcopy(ours), copy.deepcopy(ours)
    data = PreparedData(x, x[:5], x[:5], "none", (4, 5))
    optimizers = [torch.optim.Adam(vae.parameters(), lr=1e-2) for vae in (ours, reference)]
    pyro.set_rng_seed(1)
    for _ in range(3):
        epoch(ours, make_elbo("meanfield"), optimizers[0], data, batch_size=16)
    pyro.set_rng_seed(1)
    for _ in range(3):
        reference_epoch(reference, optimizers[1], x, batch_size=16)
    moved = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), start.parameters()))  # trained
    differ = max((a - b).abs().max().item() for a, b in zip(ours.parameters(), reference.parameters()))
    assert moved > 0.01 and differ < 1e-5, (moved, differ)


def test_each_minibatch_reaches_the_plate_with_its_dataset_indices():
    # A per-datapoint local parameter, pyro.param(...)[index], needs the minibatch's real indices.
    x = binary_data(40)
    vae = small_vae()
    seen = []
    model = vae.model

    def recording_model(batch, size=None, subsample=None):
        with poutine.block():  # a trace of our own, hidden from the ELBO's
            trace = poutine.trace(model).get_trace(batch, size, subsample)
        seen.append((batch, trace.nodes["data"]["value"]))
        return model(batch, size, subsample)

    vae.model = recording_model
    data = PreparedData(x, x[:5], x[:5], "none", (4, 5))
    epoch(vae, make_elbo("trace"), torch.optim.Adam(vae.parameters()), data, batch_size=16)
    assert [len(index) for _, index in seen] == [16, 16, 8]
    assert sorted(torch.cat([index for _, index in seen]).tolist()) == list(range(40))  # a permutation
    assert all(torch.equal(batch, x[index]) for batch, index in seen)


def test_fit_leaves_a_users_other_pyro_params_alone():
    mine = pyro.param("my_scale", torch.tensor(2.5))
    x = binary_data(32)
    vae = small_vae()
    fit(vae, torch.optim.Adam(vae.parameters()), PreparedData(x, x[:8], x[:8], "none", (4, 5)),
        TrainConfig(epochs=1, batch_size=16), progress=False)
    assert "my_scale" in pyro.get_param_store() and torch.equal(pyro.param("my_scale"), mine)


def test_a_resumed_run_keeps_its_schedule_and_never_raises_the_rate(caplog):
    # a 10-epoch burda run stopped after 4, resumed with --epochs 14: epochs 5-10 follow the
    # 10-epoch layout, 11-14 stay at its last rate. Before, the stages were laid out anew for 14
    # epochs and the rate jumped back up at the resume.
    x = binary_data(32)
    data = PreparedData(x, x[:8], x[:8], "none", (4, 5))
    config = TrainConfig(epochs=10, batch_size=16, lr=1e-3, lr_schedule="burda")
    uninterrupted = [learning_rate(config, e) for e in range(1, 11)]
    vae = small_vae()
    optimizer = torch.optim.Adam(vae.parameters())
    state = fit(vae, optimizer, data, TrainConfig(**{**config.__dict__, "epochs": 4}), progress=False,
                state=TrainState(schedule_epochs=10))  # as a checkpoint of the 10-epoch run holds it
    with caplog.at_level("INFO", logger="pyro_vae"):
        state = fit(vae, optimizer, data, TrainConfig(**{**config.__dict__, "epochs": 14}), progress=False, state=state)
    rates = [record.lr for record in state.history]
    assert rates[:10] == pytest.approx(uninterrupted)
    assert rates[10:] == pytest.approx([1e-4] * 4)
    assert "stays laid out for 10 epochs" in caplog.text


def test_training_never_scores_the_test_set():
    # a NaN test set would make any per-epoch test bound non-finite, which fit refuses as a divergence
    x = binary_data(96)
    data = PreparedData(x[:64], x[64:80], torch.full((16, 20), float("nan")), "none", (4, 5))
    vae = small_vae()
    config = TrainConfig(epochs=2, batch_size=32)
    history = fit(vae, torch.optim.Adam(vae.parameters()), data, config, progress=False).history
    assert len(history) == 2 and all(math.isfinite(r.valid_bound) for r in history)


def test_early_stopping_keeps_the_best_validation_epoch(monkeypatch):
    """Scripted validation bounds: best at epoch 2, then 3 epochs without improvement."""
    import pyro_vae.training.loop as train_module

    scripted = iter([-10.0, -5.0, -6.0, -7.0, -5.5] + [0.0] * 15)  # one validation bound per epoch
    snapshots = []

    def fake_evaluate(vae, elbo, x, batch_size):  # called for the validation set at the end of each epoch
        snapshots.append({k: v.clone() for k, v in vae.state_dict().items()})
        return torch.tensor(next(scripted) * len(x))  # a sum over the images

    monkeypatch.setattr(train_module, "objective_sum", fake_evaluate)
    x = binary_data(96)
    data = PreparedData(x[:64], x[64:80], x[80:], "none", (4, 5))
    vae = small_vae()
    config = TrainConfig(epochs=20, batch_size=32, lr=1e-2, patience=3)
    history = fit(vae, torch.optim.Adam(vae.parameters(), lr=config.lr), data, config, progress=False).history
    assert [r.epoch for r in history] == [1, 2, 3, 4, 5]  # epoch 5 is the third without improvement
    best = snapshots[1]  # the parameters evaluated at the end of epoch 2
    assert all(torch.equal(v, best[k]) for k, v in vae.state_dict().items())


def test_output_bias_starts_the_decoder_at_the_mean_image():
    x = binary_data(200)
    vae = small_vae()
    vae.init_output_bias(x)
    with torch.no_grad():
        mean = vae.likelihood.distribution(vae.decoder.net[-1].bias).mean
    assert torch.allclose(mean, x.mean(0).clamp(1e-3, 1 - 1e-3), atol=1e-6)


def test_early_stopping_switched_on_at_a_resume_keeps_an_epoch_whose_parameters_it_holds(monkeypatch, caplog):
    """Epochs 1-3 without early stopping (epoch 1 has the best validation bound, but its parameters
    were never kept), then resumed with patience 2: the kept epoch is the best of epochs 4 on."""
    import pyro_vae.training.loop as train_module

    valid = iter([-5.0, -8.0, -9.0, -7.0, -8.0, -8.0, -9.0])
    snapshots = {}

    def fake_evaluate(vae, elbo, x, batch_size):
        if x is data.valid:
            snapshots[len(snapshots) + 1] = copy.deepcopy(vae.state_dict())
            return torch.tensor(next(valid) * len(x))  # a sum over the images
        return torch.tensor(0.0)

    monkeypatch.setattr(train_module, "objective_sum", fake_evaluate)
    x = binary_data(64)
    data = PreparedData(x[:32], x[32:48], x[48:], "none", (4, 5))
    vae = small_vae()
    optimizer = torch.optim.Adam(vae.parameters())
    state = fit(vae, optimizer, data, TrainConfig(epochs=3, batch_size=16), progress=False)
    assert state.kept_epoch == 3
    with caplog.at_level("INFO", logger="pyro_vae"):
        config = TrainConfig(epochs=10, batch_size=16, patience=2)
        state = fit(vae, optimizer, data, config, progress=False, state=state)
    assert [r.epoch for r in state.history] == [1, 2, 3, 4, 5, 6] and state.stopped_early
    assert state.kept_epoch == 4 and "early stopping starts at epoch 4" in caplog.text
    assert all(torch.equal(v, snapshots[4][k]) for k, v in vae.state_dict().items())
