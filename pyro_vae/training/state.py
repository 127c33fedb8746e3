"""Where training stands after an epoch: its records, early-stopping bookkeeping and random states.

What a checkpoint stores and a resumed run goes on from; the training loop (train.py) updates it,
checkpoint.py writes and reads it.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

log = logging.getLogger("pyro_vae")


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's numbers, in nats per image. "bound" is the training objective: the ELBO for
    trace/meanfield, L_K for iwae (see objectives.objective_name). The test set is not scored
    per epoch: report.final_numbers scores it once, with the parameters kept."""

    epoch: int
    lr: float  # learning rate of the epoch
    train_bound: float  # averaged over the epoch's minibatches while training
    valid_bound: float  # at the end of the epoch: the learning curve, and what early stopping reads
    seconds: float  # wall time of the epoch, its validation pass included

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> EpochRecord:
        """A record as metrics.json or a checkpoint holds it, also as earlier versions wrote it:
        train_elbo and valid_elbo before the rename, and a per-epoch test bound, which is dropped."""
        renamed = {key.replace("_elbo", "_bound"): value for key, value in record.items()}
        return cls(**{key: value for key, value in renamed.items() if key != "test_bound"})


RandomState = dict[str, Any]


def rng_state() -> RandomState:
    """Every random number generator training draws from (torch's CPU and CUDA ones drive the
    minibatch order, z and dynamic binarization), in types ``torch.load(weights_only=True)`` reads."""
    state: RandomState = {"torch": torch.get_rng_state(), "random": random.getstate()}
    kind, keys, pos, has_gauss, gauss = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: RandomState) -> None:
    """Restore what rng_state() captured."""
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
    # rng_state() at the end of ``epoch``; a list of one per process in a data-parallel run
    rng: RandomState | list[RandomState] | None = None
    # the epochs the learning-rate schedule was laid out for: the first run's epochs, kept when a
    # resumed run asks for more, so the schedule never jumps back up (see schedule.burda_stage)
    schedule_epochs: int | None = None

    @property
    def kept_epoch(self) -> int:
        """The epoch whose parameters the run keeps: the best validation epoch under early
        stopping, else the last one."""
        return self.best_epoch if self.best_params is not None else self.epoch

    def observe(self, valid: float, patience: int, vae: nn.Module) -> None:
        """Early stopping after an epoch with validation bound ``valid``: remember the best epoch's
        parameters, and stop once ``patience`` epochs brought no better one (0: never)."""
        if not patience:
            return
        if valid > self.best_valid:
            self.best_valid, self.best_epoch = valid, self.epoch
            self.best_params = copy.deepcopy(vae.state_dict())
        elif self.epoch - self.best_epoch >= patience:
            self.stopped_early = True
            log.info("early stop: no better validation bound in %d epochs; keeping epoch %d (valid %.2f)",
                     patience, self.best_epoch, self.best_valid)

    def continue_with(self, epochs: int, patience: int) -> None:
        """Adapt a resumed state to this run's ``epochs`` and ``patience``; a fresh state records
        the length its learning-rate schedule is laid out for."""
        if self.schedule_epochs is None:
            self.schedule_epochs = epochs
        if patience and self.epoch > 0 and self.best_params is None:
            log.info("early stopping starts at epoch %d: the checkpoint holds no parameters of earlier epochs, so "
                     "the kept epoch is the best of epochs %d on", self.epoch + 1, self.epoch + 1)
            self.best_valid, self.best_epoch = -math.inf, 0
        if not patience and self.best_params is not None:
            log.info("early stopping is off: the run keeps its last epoch, not epoch %d", self.best_epoch)
            self.best_valid, self.best_epoch, self.best_params = -math.inf, 0, None


@dataclass(frozen=True)
class Snapshot:
    """Copies of everything a checkpoint holds, taken at the end of an epoch."""

    vae: dict[str, Tensor]
    optimizer: dict[str, Any]
    state: TrainState

    @classmethod
    def take(cls, vae: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState) -> Snapshot:
        return cls(copy.deepcopy(vae.state_dict()), copy.deepcopy(optimizer.state_dict()), copy.deepcopy(state))
