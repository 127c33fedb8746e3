import logging
import math
from dataclasses import replace

import pytest

from pyro_vae.config import TrainConfig
from pyro_vae.errors import UsageError
from pyro_vae.training.schedule import MIN_STEPS, epochs_of_steps, learning_rate, too_few_steps


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


@pytest.mark.parametrize("epochs", [2, 3, 4, 5, 7])
def test_burda_schedule_shorter_than_its_stages_starts_at_the_full_rate(epochs):
    # fewer epochs than the 8 stages: from stage 0 (lr) to stage 7 (lr / 10), never increasing
    rates = [learning_rate(TrainConfig(epochs=epochs, lr=1e-3, lr_schedule="burda"), e) for e in range(1, epochs + 1)]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == epochs
    assert learning_rate(TrainConfig(epochs=1, lr=1e-3, lr_schedule="burda"), 1) == pytest.approx(1e-3)


def test_a_run_too_short_to_learn_is_said_before_it_starts():
    """The issue's folder of 279 training images at the default batch of 128 for 30 epochs: 90 steps, a model that
    learned one grey blob. The line names the flags and values that reach MIN_STEPS; the default run (3,334
    mnist5k images: 810 steps) gets none."""
    line = too_few_steps(279, TrainConfig(epochs=30, batch_size=128))
    assert line == ("this run takes only 90 optimizer steps (3 per epoch x 30 epochs of 279 training images at "
                    "`batch_size=128`), fewer than the 500 a VAE needs to learn more than the mean image: lower "
                    "`batch_size` (`batch_size=16` gives 540) or raise `epochs` (`epochs=167`), or give the steps "
                    "(`steps=500` or more)")
    assert 3 * 167 >= MIN_STEPS and math.ceil(279 / 16) * 30 >= MIN_STEPS
    assert too_few_steps(3334, TrainConfig(epochs=30, batch_size=128)) is None
    # where no batch size reaches 500 (54 images, 2 epochs: 108 at a batch of 1), only the epochs are named
    assert too_few_steps(54, TrainConfig(epochs=2, batch_size=16)).endswith(
        ": raise `epochs` (`epochs=125`), or give the steps (`steps=500` or more)")
    assert too_few_steps(0, TrainConfig()) is None
    # the JIT-compiled ELBO drops the partial last minibatch: 279 images at 128 are 2 steps an epoch there
    assert "only 60 optimizer steps (2 per epoch" in too_few_steps(279, TrainConfig(batch_size=128, jit=True))


@pytest.mark.parametrize("images, batch_size, jit, epochs", [
    (279, 32, False, 556),  # 9 steps an epoch (8 full minibatches and one of 23): 5000 / 9 = 555.6, rounded up
    (279, 32, True, 625),  # 8 steps an epoch under the JIT (the partial one dropped)
    (20, 32, True, 5000),  # fewer images than a minibatch: one step an epoch, of all of them
    (50_000, 100, False, 10),
])
def test_steps_set_the_epochs_from_the_training_images(images, batch_size, jit, epochs, caplog):
    config = TrainConfig(batch_size=batch_size, jit=jit, steps=5000)
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        assert epochs_of_steps(config, images) == replace(config, epochs=epochs)
    assert f"5000 optimizer steps: {epochs} epochs of" in caplog.text
    assert epochs_of_steps(TrainConfig(epochs=7), images).epochs == 7  # steps=0: the epochs as given
    with pytest.raises(UsageError, match="`steps` must be >= 0"):
        TrainConfig(steps=-1)
