"""Stochastic variational inference: Pyro's ELBO objects minimized by a torch optimizer.

``elbo.differentiable_loss(model, guide, x)`` is the same objective ``pyro.infer.SVI`` steps on;
calling it from our own loop lets one Adam own every parameter (one state_dict to checkpoint)
and keeps the loop free of per-step host syncs of our own (SVI.step returns a float each step).

The loop takes tensors and returns numbers. Data-parallel training (distributed.py) enters only
through ``context``: the minibatches it hands this process, and the sums over processes, which
are the identity in one process.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pyro
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from pyro_vae.config import TrainConfig
from pyro_vae.data.pixels import PreparedData
from pyro_vae.errors import TrainingDiverged, TrainingInterrupted, UsageError
from pyro_vae.evaluation.bounds import images_per_pass, objective_sum
from pyro_vae.files import interrupts_deferred
from pyro_vae.inference.objectives import make_elbo, objective_name
from pyro_vae.models.likelihoods import in_unit_interval
from pyro_vae.models.vae import VAE
from pyro_vae.training.distributed import SINGLE, Context, loss_module
from pyro_vae.training.schedule import learning_rate
from pyro_vae.training.state import EpochRecord, Snapshot, TrainState, rng_state, set_rng_state

log = logging.getLogger("pyro_vae")

PROGRESS_EVERY = 25  # steps between progress-bar updates and divergence checks, each one host sync


def make_optimizer(parameters: Any, lr: float) -> torch.optim.Adam:
    """Adam with PyTorch's fused kernel (one kernel for all parameters instead of a loop of small
    ops), a fraction of the time of plain Adam's step on a CPU. Plain Adam where the fused kernel is
    unavailable."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(parameters, lr=lr)


def train_epoch(
    loss: nn.Module, optimizer: torch.optim.Optimizer, data: PreparedData, minibatches: Sequence[tuple[Tensor, float]],
    epoch: int = 0, progress: tqdm | None = None, context: Context = SINGLE,
) -> tuple[Tensor, int]:
    """One optimizer step per minibatch: ``minibatches`` holds each one's training-image indices
    and the weight of its loss (see Context.minibatches), ``loss(x, n, index)`` is minus the
    objective of all n training images estimated from the images x at ``index`` (distributed.MinibatchLoss).

    Returns the sum of the objective's estimates of the images seen (a 0-dim tensor left on the
    device) and how many images that was, both summed over processes.

    Raises TrainingDiverged at the first non-finite loss, checked on the device every
    PROGRESS_EVERY steps (every process at the same step) so that the loop does not wait on the
    device at every step.
    """
    n = len(data.train)
    total = data.train.new_zeros(())
    first_bad = torch.full((), -1, device=data.train.device)  # the first step with a non-finite loss
    seen = 0
    with warnings.catch_warnings():  # Pyro warns of a NaN loss; the check below raises TrainingDiverged for it
        warnings.filterwarnings("ignore", message="Encountered NaN", category=UserWarning)
        for step, (index, weight) in enumerate(minibatches, 1):
            x = data.minibatch(index)  # (B, D)
            try:
                value = loss(x, n, index)  # the plate scales it to all n images: n/B times the minibatch's sum
            except ValueError as error:  # with validation on, Pyro refuses NaN distribution parameters
                if "found invalid values" not in str(error):
                    raise
                raise TrainingDiverged(f"non-finite network output at epoch {epoch}, step {step} of {len(minibatches)}",
                                       epoch, step) from None
            optimizer.zero_grad(set_to_none=True)
            (value * weight).backward()
            optimizer.step()
            total -= value.detach() * (len(index) / n)  # undo the plate's n/B scaling
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(value.detach()), step, first_bad)
            seen += len(index)
            if step % PROGRESS_EVERY == 0 or step == len(minibatches):
                if context.max(first_bad).item() >= 0:
                    raise TrainingDiverged(f"non-finite loss at epoch {epoch}, step {first_bad.item()} of "
                                           f"{len(minibatches)}", epoch, int(first_bad.item()))
                if progress is not None:
                    progress.set_postfix_str(f"ELBO {total.item() / seen:.2f}")
            if progress is not None:
                progress.update(1)
    return context.sum(total), int(context.sum(torch.tensor(seen, device=total.device)).item())


def check_data_support(vae: VAE, data: PreparedData) -> None:
    """A UsageError naming the split when ``data`` holds values the likelihood cannot score: NaN or infinite
    values, grey pixels for the Bernoulli (prepare_data checks this; data built by hand would otherwise fail
    as a "diverged" run or an error about the guide's loc). Training pixels binarized or dequantized per
    minibatch are grey intensities in [0, 1]."""
    drawn = data.binarize == "dynamic" or data.dequantize
    for split, x in (("training", data.train), ("validation", data.valid)):
        try:
            if split == "training" and drawn:
                if not in_unit_interval(x):
                    raise UsageError("pixels drawn per minibatch need intensities in [0, 1] (NaN is not)")
            else:
                vae.likelihood.check_support(x)
        except UsageError as error:
            raise UsageError(f"the {split} images cannot be scored: {error}") from None


def fit(
    vae: VAE, optimizer: torch.optim.Optimizer, data: PreparedData, config: TrainConfig,
    progress: bool = True, callback: Callable[[EpochRecord], None] | None = None,
    state: TrainState | None = None, save: Callable[[Snapshot], None] | None = None, save_every: int = 1,
    context: Context = SINGLE,
) -> TrainState:
    """Train until ``config.epochs`` epochs are done; log one record per epoch (the running train
    bound and the validation bound: ``data.test`` is never read); return the state.

    ``state`` (from a checkpoint) resumes: epochs, history, early-stopping bookkeeping and random
    states go on from there. ``save`` receives a snapshot every ``save_every`` epochs and after the
    last one. With ``config.patience``, stops when the validation bound has not improved for that
    many epochs, and leaves ``vae`` at its best-validation parameters. ``callback`` sees each record.
    ``context``: this process's part of a data-parallel run (pass ``save`` to one process only).

    Ctrl-C: the partial epoch is dropped, the last completed epoch is saved (when it was not yet)
    and TrainingInterrupted is raised; a Ctrl-C while a checkpoint is written waits for the write.
    A non-finite loss raises TrainingDiverged; the diverged epoch is never saved, the last
    completed one is (when it was not yet).
    """
    # pyro.module registers the networks in Pyro's global param store by name; an entry left by an
    # earlier VAE in this process would shadow this one's parameters inside the JIT-compiled ELBO.
    if not len(data.train) or not len(data.valid):
        raise UsageError(f"nothing to train on: {len(data.train)} training and {len(data.valid)} validation images; "
                         "pass data that holds both")
    check_data_support(vae, data)
    forget_networks()
    elbo = make_elbo(config.elbo, config.num_particles, config.jit, vae.config.guide, 2 if vae.config.z2_dim else 1)
    loss = loss_module(vae, elbo, context)
    name = objective_name(config.elbo, config.num_particles)
    state = state or TrainState()
    if state.rng is not None and (rng := context.own(state.rng)) is not None:
        set_rng_state(rng)
    if state.schedule_epochs not in (None, config.epochs) and config.lr_schedule != "constant":
        log.info("the %s learning-rate schedule stays laid out for %d epochs, as when this run started; epochs after "
                 "%d keep its last rate, %.3g", config.lr_schedule, state.schedule_epochs, state.schedule_epochs,
                 learning_rate(config, state.schedule_epochs, state.schedule_epochs))
    state.continue_with(config.epochs, config.patience)
    last: Snapshot | None = None  # the latest completed epoch, not yet saved
    saved = state.epoch  # the latest epoch in the checkpoint

    def flush() -> None:
        nonlocal last, saved
        if save is not None and last is not None:
            with interrupts_deferred():  # a Ctrl-C now is raised once the bookkeeping below is done too
                save(last)
                saved, last = last.state.epoch, None

    try:
        while state.epoch < config.epochs and not state.stopped_early:
            epoch = state.epoch + 1
            start = time.perf_counter()
            lr = learning_rate(config, epoch, state.schedule_epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # Pyro's JIT caches one trace per argument structure, not per shape: no smaller last batch
            minibatches = context.minibatches(len(data.train), config.batch_size, drop_last=config.jit,
                                              device=data.train.device)
            vae.train()
            with tqdm(total=len(minibatches), desc=f"epoch {epoch}/{config.epochs}", leave=False,
                      disable=None if progress and context.is_main else True) as bar:  # None: off when not a terminal
                total, seen = train_epoch(loss, optimizer, data, minibatches, epoch, bar, context)
            vae.eval()
            valid = held_out_bound(vae, data.valid, config, context)
            if not math.isfinite(valid):
                raise TrainingDiverged(f"non-finite validation bound at the end of epoch {epoch}", epoch,
                                       len(minibatches))
            record = EpochRecord(epoch, lr, total.item() / seen, valid, time.perf_counter() - start)
            state.history.append(record)
            state.epoch = epoch
            log.info("epoch %d/%d  %s train %.2f  valid %.2f nats/image  (%.1f s)", epoch, config.epochs, name,
                     record.train_bound, valid, record.seconds)
            state.observe(valid, config.patience, vae)
            if callback is not None:
                callback(record)
            state.rng = context.all_ranks(rng_state())  # after the callback: it may draw random numbers too
            if save is not None:
                last = Snapshot.take(vae, optimizer, state)
                if epoch % save_every == 0:
                    flush()
    except KeyboardInterrupt:
        flush()
        raise TrainingInterrupted(saved if save is not None else state.epoch) from None
    except TrainingDiverged:
        flush()  # the last completed epoch was finite: keep it
        raise
    flush()
    if state.best_params is not None and state.kept_epoch != state.epoch:
        vae.load_state_dict(state.best_params)
    return state


def held_out_bound(vae: VAE, x: Tensor, config: TrainConfig, context: Context = SINGLE) -> float:
    """The training objective (``config.elbo`` with ``config.num_particles`` samples) per image of
    the held-out images ``x`` (N, D), in no-grad passes. Not JIT-compiled: the last pass may be
    smaller. In a data-parallel run each process scores its shard of x and the sums are added."""
    if not len(x):
        raise ValueError("x holds no images: a held-out bound is an average over at least one")
    elbo = make_elbo(config.elbo, config.num_particles)
    total = objective_sum(vae, elbo, context.shard(x), images_per_pass(config.num_particles, config.batch_size))
    return (context.sum(total) / len(x)).item()


def forget_networks() -> None:
    """Drop the encoder's, decoder's and flow's entries (registered by pyro.module) from Pyro's param store;
    a user's other pyro.params stay."""
    store = pyro.get_param_store()
    for name in [name for name in store.keys() if name.startswith(("encoder$$$", "decoder$$$", "flow$$$"))]:
        del store[name]
