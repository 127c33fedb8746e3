"""Learning-rate schedules: constant, or Burda et al. (2016)'s eight stages decaying by 10^(1/7)."""

from __future__ import annotations

import logging
import math
from dataclasses import replace

from pyro_vae.config import LR_SCHEDULES, TrainConfig
from pyro_vae.errors import UsageError

log = logging.getLogger("pyro_vae")

BURDA_STAGES = 8  # stage i lasts 3^i epochs at lr * 10^(-i/7): 3,280 epochs in all
MIN_STEPS = 500  # optimizer steps below which a run is said to be too short to learn: 90 steps (a folder of 279
#                  images at the default batch of 128, 30 epochs) gave one grey blob for every image and sample;
#                  the default run on mnist5k takes 810


def steps_per_epoch(train_images: int, config: TrainConfig) -> int:
    """The optimizer steps of one epoch: a minibatch each (the JIT-compiled ELBO drops a partial last one)."""
    full, rest = divmod(train_images, config.batch_size)
    return max(1, full if config.jit and full else full + (rest > 0))


def epochs_of_steps(config: TrainConfig, train_images: int) -> TrainConfig:
    """``config`` with ``epochs`` enough for its ``steps`` optimizer steps on ``train_images`` images (a whole last
    epoch), logged; unchanged when ``steps`` is 0 (train ``epochs``)."""
    if not config.steps:
        return config
    per_epoch = steps_per_epoch(train_images, config)
    epochs = math.ceil(config.steps / per_epoch)
    log.info("%d optimizer steps: %d epochs of %d steps (%d training images at `batch_size=%d`)", config.steps,
             epochs, per_epoch, train_images, config.batch_size)
    return replace(config, epochs=epochs)


def too_few_steps(train_images: int, config: TrainConfig) -> str | None:
    """One line when ``config`` gives ``train_images`` images fewer than MIN_STEPS optimizer steps in all, naming
    what fixes it; None otherwise."""
    per_epoch = steps_per_epoch(train_images, config)
    steps = per_epoch * config.epochs
    if steps >= MIN_STEPS or train_images == 0:
        return None
    batch = max(1, 2 ** math.floor(math.log2(max(1, train_images * config.epochs // MIN_STEPS))))
    batch_steps = math.ceil(train_images / batch) * config.epochs
    epochs = math.ceil(MIN_STEPS / per_epoch)
    fixes = (f"lower `batch_size` (`batch_size={batch}` gives {batch_steps}) or raise `epochs` (`epochs={epochs}`), "
             f"or give the steps (`steps={MIN_STEPS}` or more)" if batch_steps >= MIN_STEPS else
             f"raise `epochs` (`epochs={epochs}`), or give the steps (`steps={MIN_STEPS}` or more)")
    return (f"this run takes only {steps} optimizer steps ({per_epoch} per epoch x {config.epochs} epochs of "
            f"{train_images} training images at `batch_size={config.batch_size}`), fewer than the {MIN_STEPS} a VAE "
            f"needs to learn more than the mean image: {fixes}")


def burda_stage_ends(epochs: int) -> list[int]:
    """Last epoch of each of the 8 stages of Burda et al.'s schedule fitted into ``epochs`` >= 8.

    The paper's stage i lasts 3^i epochs (3,280 in all). A shorter run keeps the 8 stages with
    lengths growing as b^i, b <= 3 chosen so that they sum to ``epochs``: b = 3 at 3,280 epochs,
    b ~ 1.75 at 100, b = 1 (a stage per epoch) at 8; shrinking 3^i in proportion instead would
    start a 100-epoch run in stage 3, at a third of the paper's first learning rate. Stage 0
    always lasts at least one epoch (its length is 1 in units of b^0).
    """
    def total(base: float) -> float:
        return sum(base**i for i in range(BURDA_STAGES))

    low, high = 1.0, 3.0
    if epochs >= total(high):
        low = high
    for _ in range(60):  # bisection on the growth factor b in [1, 3]
        middle = (low + high) / 2
        low, high = (middle, high) if total(middle) < epochs else (low, middle)
    lengths = [low**i for i in range(BURDA_STAGES)]
    return [round(epochs * sum(lengths[: i + 1]) / sum(lengths)) for i in range(BURDA_STAGES)]


def burda_stage(epoch: int, schedule_epochs: int) -> int:
    """The stage (0..7) of ``epoch`` (1-based) in Burda et al.'s schedule laid out for
    ``schedule_epochs``. Fewer than 8 epochs spread evenly over the stages, from the first (epoch
    1 at the full lr) to the last; epochs past ``schedule_epochs`` (a resumed run that trains
    longer) stay in the last stage."""
    if schedule_epochs < BURDA_STAGES:
        progress = min(max(epoch - 1, 0) / max(schedule_epochs - 1, 1), 1.0)  # 0 at the first epoch, 1 at the last
        return round((BURDA_STAGES - 1) * progress)
    ends = burda_stage_ends(schedule_epochs)
    return next((i for i, end in enumerate(ends) if epoch <= end), BURDA_STAGES - 1)


def learning_rate(config: TrainConfig, epoch: int, schedule_epochs: int | None = None) -> float:
    """The learning rate of ``epoch`` (1-based) under ``config.lr_schedule``: constant, or burda,
    lr * 10^(-i/7) in stage i = burda_stage(epoch, schedule_epochs) (Burda et al. 2016, sec. 5).
    ``schedule_epochs``, the length the schedule was laid out for, is ``config.epochs`` unless a
    resumed run keeps its first run's layout (see TrainState.schedule_epochs)."""
    if config.lr_schedule not in LR_SCHEDULES:
        raise UsageError(f"unknown learning-rate schedule {config.lr_schedule!r}: choose one of "
                         f"{', '.join(LR_SCHEDULES)}")
    if config.lr_schedule == "constant":
        return config.lr
    return config.lr * 10 ** (-burda_stage(epoch, schedule_epochs or config.epochs) / 7)
