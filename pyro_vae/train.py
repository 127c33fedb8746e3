"""Stochastic variational inference: Pyro's ELBO objects minimized by a torch optimizer.

``elbo.differentiable_loss(model, guide, x)`` is the same objective ``pyro.infer.SVI`` steps on;
calling it from our own loop lets one Adam own every parameter (one state_dict to checkpoint)
and keeps the loop free of per-step host syncs of our own (SVI.step returns a float each step).
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import torch
from pyro.infer import ELBO, JitTrace_ELBO, JitTraceMeanField_ELBO, Trace_ELBO, TraceMeanField_ELBO
from torch import Tensor, nn
from tqdm.auto import tqdm

from pyro_vae.config import TrainConfig
from pyro_vae.data import PreparedData
from pyro_vae.distributed import SINGLE, Context, Objective, objective
from pyro_vae.errors import TrainingDiverged, TrainingInterrupted, UsageError
from pyro_vae.files import interrupts_deferred
from pyro_vae.iwae import IWAE_ELBO
from pyro_vae.vae import VAE

log = logging.getLogger("pyro_vae")

class QuietJit:
    """Mixin for Pyro's JIT ELBOs: torch 2.14 deprecates the ``torch.jit.trace`` they are built on and says so
    at every compile. Choosing them is this package's doing (--jit), so that one warning is silenced here."""

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace` is deprecated", category=FutureWarning)
            return super().differentiable_loss(model, guide, *args, **kwargs)  # type: ignore[misc]


class JitTraceELBO(QuietJit, JitTrace_ELBO):
    """Pyro's JitTrace_ELBO without torch's deprecation warning."""


class FixedJitTraceMeanField_ELBO(QuietJit, JitTraceMeanField_ELBO):
    """JitTraceMeanField_ELBO that compiles once. Pyro 1.9's checks for ``_loss_and_surrogate_loss``
    but stores its compiled function as ``_differentiable_loss``, so it traced the model and guide
    again at every step (measured: 2.8x slower than no JIT). Setting the attribute it checks fixes that."""

    def differentiable_loss(self, model: Any, guide: Any, *args: Any, **kwargs: Any) -> Tensor:
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self._loss_and_surrogate_loss = self._differentiable_loss
        return loss


# name -> (plain, JIT-compiled or None) ELBO class
ELBOS: dict[str, tuple[type[ELBO], type[ELBO] | None]] = {
    "trace": (Trace_ELBO, JitTraceELBO),  # KL term sampled: log q(z|x) - log p(z)
    "meanfield": (TraceMeanField_ELBO, FixedJitTraceMeanField_ELBO),  # KL term analytic: lower variance
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


def make_optimizer(parameters: Any, lr: float) -> torch.optim.Adam:
    """Adam with PyTorch's fused kernel (one kernel for all parameters instead of a loop of small
    ops): on a 2-core CPU it takes the Adam step of the 784-400-20 VAE from 1.5 to 0.55 ms, an eighth
    of a training step. Plain Adam where the fused kernel is unavailable."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.Adam(parameters, lr=lr)


def learning_rate(config: TrainConfig, epoch: int, schedule_epochs: int | None = None) -> float:
    """The learning rate of ``epoch`` (1-based) under ``config.lr_schedule``: constant, or burda,
    lr * 10^(-i/7) in stage i = burda_stage(epoch, schedule_epochs) (Burda et al. 2016, sec. 5).
    ``schedule_epochs``, the length the schedule was laid out for, is ``config.epochs`` unless a
    resumed run keeps its first run's layout (see TrainState.schedule_epochs)."""
    if config.lr_schedule not in LR_SCHEDULES:
        raise UsageError(f"unknown learning-rate schedule {config.lr_schedule!r}: choose one of {', '.join(LR_SCHEDULES)}")
    if config.lr_schedule == "constant":
        return config.lr
    return config.lr * 10 ** (-burda_stage(epoch, schedule_epochs or config.epochs) / 7)


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
    drop_last: bool = False, progress: tqdm | None = None, epoch: int = 0,
    context: Context = SINGLE, loss_module: nn.Module | None = None,
) -> tuple[Tensor, int]:
    """One pass over a random permutation of the training set.

    Returns the sum of the ELBO estimates of the images seen (a 0-dim tensor left on the device)
    and how many images that was. ``drop_last`` skips a final partial batch: Pyro's JIT caches
    one trace per argument structure, not per shape, so a smaller batch would reuse a trace
    built for the full batch size.

    The partial last minibatch (b < B images) is weighted by b / B. Pyro's plate scales each
    minibatch's loss to the whole-dataset ELBO, n/b times its sum, so unweighted the b images
    would get as large an Adam step as any full minibatch from a far noisier gradient (measured
    on mnist5k, 26 x 128 + 6 images: 2.3 nats worse than pytorch/examples after 30 epochs). With
    the weight every image counts the same in an epoch, as in pytorch/examples' summed loss, and
    full minibatches keep the unbiased whole-dataset ELBO. Each minibatch's model and guide see
    the images' dataset indices as the data plate's subsample.

    Raises TrainingDiverged at the first non-finite loss, checked on the device every
    PROGRESS_EVERY steps so that the loop does not wait on the device at every step.

    Distributed (``context``): every rank walks rank 0's permutation and takes its shard of each
    global minibatch; ``loss_module`` (DistributedDataParallel around distributed.Objective)
    averages the gradients. A rank's loss is scaled by R * B_r / B (R ranks, shard B_r of B), so the
    averaged gradient is that of the single-process loss of the whole minibatch. A final minibatch
    smaller than R is dropped. Returns the sums over all ranks.
    """
    n = len(data.train)
    permutation = context.broadcast(torch.randperm(n, device=data.train.device))
    batches = permutation.split(batch_size)
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches = batches[:-1]
    if context.distributed and len(batches[-1]) < context.world_size:
        batches = batches[:-1]
    loss_module = loss_module or Objective(vae, elbo)
    full = len(batches[0])  # a full minibatch: batch_size, or n when the dataset is smaller
    total = data.train.new_zeros(())
    first_bad = torch.full((), -1, device=data.train.device)  # the first step with a non-finite loss
    seen = 0
    for step, index in enumerate(batches, 1):
        shard = context.shard(index)
        x = data.minibatch(shard)  # (B_r, D)
        try:
            loss = loss_module(x, n, shard)  # -ELBO of all n images, estimated from this shard
        except ValueError as error:  # with validation on, Pyro refuses NaN distribution parameters
            if "found invalid values" not in str(error):
                raise
            raise TrainingDiverged(f"non-finite network output at epoch {epoch}, step {step} of {len(batches)}",
                                   epoch, step) from None
        optimizer.zero_grad(set_to_none=True)
        # R ranks average their gradients: R * b_r / b makes that the gradient of the whole minibatch's
        # loss (factor 1 in one process); b / full weights a partial last minibatch by its size
        (loss * (context.world_size * len(shard) / full)).backward()
        optimizer.step()
        total -= loss.detach() * (len(shard) / n)  # undo the plate's n/B scaling
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), step, first_bad)
        seen += len(shard)
        if step % PROGRESS_EVERY == 0 or step == len(batches):
            if context.max(first_bad).item() >= 0:  # every rank stops at the same step
                raise TrainingDiverged(f"non-finite loss at epoch {epoch}, step {first_bad.item()} of {len(batches)}",
                                       epoch, int(first_bad.item()))
            if progress is not None:
                progress.set_postfix_str(f"ELBO {total.item() / seen:.2f}")
        if progress is not None:
            progress.update(1)
    return context.sum(total), int(context.sum(torch.tensor(seen, device=total.device)).item())


@torch.no_grad()
def evaluate_elbo(vae: VAE, elbo: ELBO, x: Tensor, batch_size: int, context: Context = SINGLE) -> Tensor:
    """Mean ELBO per image of ``x`` (N, D), as a 0-dim tensor; each rank scores its shard. Use an
    ELBO without JIT here: the last batch may be smaller."""
    total = x.new_zeros(())
    for batch in context.shard(x).split(batch_size):
        total = total + elbo.differentiable_loss(vae.model, vae.guide, batch).detach()
    return -context.sum(total) / len(x)


def rng_state() -> dict[str, Any]:
    """Every random number generator training draws from (torch's CPU and CUDA ones drive the
    minibatch order, z and dynamic binarization), in types ``torch.load(weights_only=True)`` reads."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "random": random.getstate()}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | list[dict[str, Any]], context: Context = SINGLE) -> None:
    """Restore rng_state(); a list holds one state per rank of a distributed run."""
    if isinstance(state, list):
        if len(state) != context.world_size:
            log.warning("the checkpoint holds random states for %d processes, this run has %d: the ranks start "
                        "from fresh seeds, so the run will differ from an uninterrupted one", len(state),
                        context.world_size)
            return
        state = state[context.rank]
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(state["random"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


@dataclass
class TrainState:
    """Where training stands after a completed epoch: with the networks and the optimizer, all
    that a resumed run needs to go on exactly as an uninterrupted one would."""

    epoch: int = 0  # epochs completed
    history: list[EpochRecord] = field(default_factory=list)
    best_valid: float = -math.inf  # early stopping: the best validation bound so far ...
    best_epoch: int = 0  # ... its epoch ...
    best_params: dict[str, Tensor] | None = None  # ... and vae.state_dict() then (patience > 0 only)
    stopped_early: bool = False
    rng: dict[str, Any] | list[dict[str, Any]] | None = None  # rng_state() at the end of ``epoch``, per rank
    # the epochs the learning-rate schedule was laid out for: the first run's config.epochs, kept
    # when a resumed run asks for more, so the schedule never jumps back up (see burda_stage)
    schedule_epochs: int | None = None

    @property
    def kept_epoch(self) -> int:
        """The epoch whose parameters the run keeps: the best validation epoch under early
        stopping, else the last one."""
        return self.best_epoch if self.best_params is not None else self.epoch


@dataclass(frozen=True)
class Snapshot:
    """Copies of everything a checkpoint holds, taken at the end of an epoch."""

    vae: dict[str, Tensor]
    optimizer: dict[str, Any]
    state: TrainState


def take_snapshot(vae: VAE, optimizer: torch.optim.Optimizer, state: TrainState) -> Snapshot:
    return Snapshot(copy.deepcopy(vae.state_dict()), copy.deepcopy(optimizer.state_dict()), copy.deepcopy(state))


def fit(
    vae: VAE, optimizer: torch.optim.Optimizer, data: PreparedData, config: TrainConfig,
    progress: bool = True, callback: Callable[[EpochRecord], None] | None = None,
    state: TrainState | None = None, save: Callable[[Snapshot], None] | None = None, save_every: int = 1,
    context: Context = SINGLE,
) -> TrainState:
    """Train until ``config.epochs`` epochs are done; log one record per epoch; return the state.

    ``state`` (from a checkpoint) resumes: epochs, history, early-stopping bookkeeping and RNG
    states go on from there. ``save`` receives a snapshot every ``save_every`` epochs and after the
    last one. With ``config.patience``, stops when the validation bound has not improved for that
    many epochs, and leaves ``vae`` at its best-validation parameters. ``callback`` sees each record.

    ``context`` trains data-parallel over ranks (see train_epoch); pass ``save`` on rank 0 only.

    Ctrl-C: the partial epoch is dropped, the last completed epoch is saved (when it was not yet)
    and TrainingInterrupted is raised; a Ctrl-C while a checkpoint is written waits for the write. A non-finite loss raises TrainingDiverged; the diverged epoch
    is never saved, the last completed one is (when it was not yet).
    """
    # pyro.module registers the networks in Pyro's global param store by name; an entry left by an
    # earlier VAE in this process would shadow this one's parameters inside the JIT-compiled ELBO.
    # Only those entries go: a user's other pyro.params stay.
    forget_networks()
    if config.jit and context.distributed:
        raise UsageError("--jit is not available with torchrun (data-parallel) training: drop --jit")
    elbo = make_elbo(config.elbo, config.num_particles, config.jit)
    eval_elbo = make_elbo(config.elbo, config.num_particles)
    loss_module = objective(vae, elbo, context)
    steps = -(-len(data.train) // config.batch_size)
    progress = progress and context.is_main
    state = state or TrainState()
    if state.rng is not None:
        set_rng_state(state.rng, context)
    resumed = state.epoch > 0
    if state.schedule_epochs is None:
        state.schedule_epochs = config.epochs
    elif config.lr_schedule != "constant" and state.schedule_epochs != config.epochs:
        log.info("the %s learning-rate schedule stays laid out for %d epochs, as when this run started; epochs after "
                 "%d keep its last rate, %.3g", config.lr_schedule, state.schedule_epochs, state.schedule_epochs,
                 learning_rate(config, state.schedule_epochs, state.schedule_epochs))
    if config.patience and resumed and state.best_params is None:
        log.info("early stopping starts at epoch %d: the checkpoint holds no parameters of earlier epochs, so the "
                 "kept epoch is the best of epochs %d on", state.epoch + 1, state.epoch + 1)
        state.best_valid, state.best_epoch = -math.inf, 0
    if not config.patience and state.best_params is not None:
        log.info("early stopping is off: the run keeps its last epoch, not epoch %d", state.best_epoch)
        state.best_valid, state.best_epoch, state.best_params = -math.inf, 0, None
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
            vae.train()
            with tqdm(total=steps, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False) as bar:
                total, seen = train_epoch(vae, elbo, optimizer, data, config.batch_size, config.jit, bar, epoch,
                                          context, loss_module)
            vae.eval()
            valid, test = (evaluate_elbo(vae, eval_elbo, x, config.batch_size, context).item()
                           for x in (data.valid, data.test))
            if not all(math.isfinite(v) for v in (valid, test)):
                raise TrainingDiverged(f"non-finite validation or test bound at the end of epoch {epoch}", epoch, steps)
            record = EpochRecord(epoch, lr, total.item() / seen, valid, test, time.perf_counter() - start)
            state.history.append(record)
            state.epoch = epoch
            log.info(
                "epoch %d/%d  %s train %.2f  valid %.2f  test %.2f nats/image  (%.1f s)",
                epoch, config.epochs, objective_name(config), record.train_elbo, valid, test, record.seconds,
            )
            if config.patience:
                if valid > state.best_valid:
                    state.best_valid, state.best_epoch = valid, epoch
                    state.best_params = copy.deepcopy(vae.state_dict())
                elif epoch - state.best_epoch >= config.patience:
                    state.stopped_early = True
                    log.info("early stop: no better validation bound in %d epochs; keeping epoch %d (valid %.2f)",
                             config.patience, state.best_epoch, state.best_valid)
            if callback is not None:
                callback(record)
            # after the callback: it may draw random numbers too; one state per rank when distributed
            state.rng = context.gather(rng_state()) if context.distributed else rng_state()
            if save is not None:
                last = take_snapshot(vae, optimizer, state)
                if epoch % save_every == 0:
                    flush()
    except KeyboardInterrupt:
        flush()
        raise TrainingInterrupted(saved if save is not None else state.epoch) from None
    except TrainingDiverged:
        flush()  # the last completed epoch was finite: keep it
        raise
    flush()
    if state.kept_epoch != state.epoch:
        vae.load_state_dict(state.best_params)
    return state


def forget_networks() -> None:
    """Drop the encoder's and decoder's entries (registered by pyro.module) from Pyro's param store."""
    store = pyro.get_param_store()
    for name in [name for name in store.keys() if name.startswith(("encoder$$$", "decoder$$$"))]:
        del store[name]


def objective_name(config: TrainConfig) -> str:
    """How logs and figures name the training objective: ELBO, or L_K for iwae."""
    return f"L_{config.num_particles}" if config.elbo == "iwae" else "ELBO"
