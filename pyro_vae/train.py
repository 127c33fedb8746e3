"""Stochastic variational inference: Pyro's ELBO objects minimized by a torch optimizer.

``elbo.differentiable_loss(model, guide, x)`` is the same objective ``pyro.infer.SVI`` steps on;
calling it from our own loop lets one Adam own every parameter (one state_dict to checkpoint)
and keeps the loop free of per-step host syncs of our own (SVI.step returns a float each step).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch
from pyro.infer import ELBO, JitTrace_ELBO, JitTraceMeanField_ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch import Tensor
from tqdm.auto import tqdm

from pyro_vae.config import TrainConfig
from pyro_vae.data import PreparedData
from pyro_vae.errors import UsageError
from pyro_vae.iwae import IWAE_ELBO
from pyro_vae.vae import VAE

log = logging.getLogger("pyro_vae")

# name -> (plain, JIT-compiled or None) ELBO class
ELBOS: dict[str, tuple[type[ELBO], type[ELBO] | None]] = {
    "trace": (Trace_ELBO, JitTrace_ELBO),  # KL term sampled: log q(z|x) - log p(z)
    "meanfield": (TraceMeanField_ELBO, JitTraceMeanField_ELBO),  # KL term analytic: lower variance
    "iwae": (IWAE_ELBO, None),  # L_K, K = num_particles (Burda et al. 2016); see iwae.py
}
LR_SCHEDULES = ("constant", "burda")
BURDA_STAGES = 8  # stage i lasts 3^i epochs at lr * 10^(-i/7): 3,280 epochs in all
PROGRESS_EVERY = 25  # steps between progress-bar updates, each one host sync


def make_elbo(name: str, num_particles: int = 1, jit: bool = False) -> ELBO:
    """The ELBO named ``name`` with ``num_particles`` samples of z per datapoint, vectorized."""
    if name not in ELBOS:
        raise UsageError(f"unknown ELBO {name!r}: choose one of {', '.join(ELBOS)}")
    plain, compiled = ELBOS[name]
    if name == "iwae":
        if jit:
            raise UsageError("--jit is not available with --elbo iwae: drop --jit")
        return IWAE_ELBO(num_particles)
    options = dict(num_particles=num_particles, vectorize_particles=num_particles > 1, max_plate_nesting=1)
    if jit:
        return compiled(ignore_jit_warnings=True, **options)
    return plain(**options)


def burda_stage_ends(epochs: int) -> list[int]:
    """Last epoch of each of the 8 stages of Burda et al.'s schedule fitted into ``epochs``.

    The paper's stage i lasts 3^i epochs (3,280 in all). A shorter run keeps the 8 stages with
    lengths growing as b^i, b <= 3 chosen so that they sum to ``epochs``: b = 3 at 3,280 epochs,
    b ~ 1.75 at 100, b = 1 (a stage per epoch) at 8; shrinking 3^i in proportion instead would
    start a 100-epoch run in stage 3, at a third of the paper's first learning rate.
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


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (1-based) under ``config.lr_schedule``: constant, or burda,
    lr * 10^(-i/7) in stage i = 0..7 (Burda et al. 2016, sec. 5; stages from burda_stage_ends)."""
    if config.lr_schedule not in LR_SCHEDULES:
        raise UsageError(f"unknown learning-rate schedule {config.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
    if config.lr_schedule == "constant":
        return config.lr
    ends = burda_stage_ends(config.epochs)
    stage = next((i for i, end in enumerate(ends) if epoch <= end), BURDA_STAGES - 1)
    return config.lr * 10 ** (-stage / 7)


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's numbers, in nats per image. "elbo" is the training objective: the ELBO for
    trace/meanfield, the bound L_K for iwae."""

    epoch: int
    lr: float  # learning rate of the epoch
    train_elbo: float  # averaged over the epoch's minibatches while training
    valid_elbo: float  # at the end of the epoch: what model selection (early stopping) reads
    test_elbo: float  # at the end of the epoch: reported in the learning curve, never used to select
    seconds: float  # wall time of the epoch, evaluations included


def train_epoch(
    vae: VAE, elbo: ELBO, optimizer: torch.optim.Optimizer, data: PreparedData, batch_size: int,
    drop_last: bool = False, progress: tqdm | None = None,
) -> tuple[Tensor, int]:
    """One pass over a random permutation of the training set.

    Returns the sum of the ELBO estimates of the images seen (a 0-dim tensor left on the device)
    and how many images that was. ``drop_last`` skips a final partial batch: Pyro's JIT caches
    one trace per argument structure, not per shape, so a smaller batch would reuse a trace
    built for the full batch size.
    """
    n = len(data.train)
    batches = torch.randperm(n, device=data.train.device).split(batch_size)
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches = batches[:-1]
    total = data.train.new_zeros(())
    seen = 0
    for step, index in enumerate(batches, 1):
        x = data.minibatch(index)  # (B, D)
        loss = elbo.differentiable_loss(vae.model, vae.guide, x, size=n)  # -ELBO of all n images
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total -= loss.detach() * (len(index) / n)  # undo the plate's n/B scaling
        seen += len(index)
        if progress is not None:
            progress.update(1)
            if step % PROGRESS_EVERY == 0 or step == len(batches):
                progress.set_postfix_str(f"ELBO {total.item() / seen:.2f}")
    return total, seen


@torch.no_grad()
def evaluate_elbo(vae: VAE, elbo: ELBO, x: Tensor, batch_size: int) -> Tensor:
    """Mean ELBO per image of ``x`` (N, D), as a 0-dim tensor. Use an ELBO without JIT here:
    the last batch may be smaller."""
    total = sum(elbo.differentiable_loss(vae.model, vae.guide, batch).detach() for batch in x.split(batch_size))
    return -total / len(x)


def fit(
    vae: VAE, optimizer: torch.optim.Optimizer, data: PreparedData, config: TrainConfig,
    progress: bool = True, callback: Callable[[EpochRecord], None] | None = None,
) -> list[EpochRecord]:
    """Train for ``config.epochs`` epochs; log and return one record per epoch.

    With ``config.patience``, stops when the validation bound has not improved for that many
    epochs, and leaves ``vae`` at its best-validation parameters. ``callback`` sees each record.
    """
    # pyro.module registers the networks in Pyro's global param store by name; an entry left by an
    # earlier VAE in this process would shadow this one's parameters inside the JIT-compiled ELBO.
    pyro.clear_param_store()
    elbo = make_elbo(config.elbo, config.num_particles, config.jit)
    eval_elbo = make_elbo(config.elbo, config.num_particles)
    steps = -(-len(data.train) // config.batch_size)
    history: list[EpochRecord] = []
    best, best_state = -math.inf, None
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        lr = learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        vae.train()
        with tqdm(total=steps, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False) as bar:
            total, seen = train_epoch(vae, elbo, optimizer, data, config.batch_size, config.jit, bar)
        vae.eval()
        valid, test = (evaluate_elbo(vae, eval_elbo, x, config.batch_size).item() for x in (data.valid, data.test))
        record = EpochRecord(epoch, lr, total.item() / seen, valid, test, time.perf_counter() - start)
        history.append(record)
        log.info(
            "epoch %d/%d  %s train %.2f  valid %.2f  test %.2f nats/image  (%.1f s)",
            epoch, config.epochs, objective_name(config), record.train_elbo, valid, test, record.seconds,
        )
        if callback is not None:
            callback(record)
        if config.patience:
            if valid > best:
                best, best_state, best_epoch = valid, copy.deepcopy(vae.state_dict()), epoch
            elif epoch - best_epoch >= config.patience:
                log.info("early stop: no better validation bound in %d epochs; keeping epoch %d (valid %.2f)",
                         config.patience, best_epoch, best)
                break
    if best_state is not None and history[-1].valid_elbo < best:
        vae.load_state_dict(best_state)
    return history


def objective_name(config: TrainConfig) -> str:
    """How logs and figures name the training objective: ELBO, or L_K for iwae."""
    return f"L_{config.num_particles}" if config.elbo == "iwae" else "ELBO"
