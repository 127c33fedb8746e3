"""Where training stands: records under their old names, early-stopping bookkeeping, random states."""

import math
import random

import numpy as np
import pyro
import torch

from pyro_vae.training import checkpoint
from pyro_vae.training.state import EpochRecord, TrainState, rng_state, set_rng_state


def test_a_checkpoint_written_before_the_rename_resumes_with_its_records():
    # history records were once stored as train_elbo/valid_elbo/test_elbo (the objective is L_K under iwae),
    # then with a per-epoch test_bound; the test set is now scored once, at the end, so that is dropped
    oldest = {"epoch": 1, "lr": 1e-3, "train_elbo": -101.5, "valid_elbo": -99.0, "test_elbo": -98.5, "seconds": 0.7}
    old = {"epoch": 2, "lr": 1e-3, "train_bound": -98.0, "valid_bound": -97.0, "test_bound": -96.5, "seconds": 0.6}
    saved = {"train_state": {"epoch": 2, "history": [oldest, old]}, "train_config": {"epochs": 3}, "optimizer": {}}
    state = checkpoint.train_state(saved)
    assert state.history == [EpochRecord(1, 1e-3, -101.5, -99.0, 0.7), EpochRecord(2, 1e-3, -98.0, -97.0, 0.6)]
    assert state.schedule_epochs == 3  # older checkpoints: the run's epochs


def test_early_stopping_keeps_the_best_epochs_parameters_and_stops_after_patience():
    vae = torch.nn.Linear(2, 1)
    state = TrainState()
    for epoch, valid in enumerate([-5.0, -4.0, -4.5, -4.2], 1):
        state.epoch = epoch
        with torch.no_grad():
            vae.weight.fill_(epoch)  # each epoch's parameters, told apart
        state.observe(valid, patience=2, vae=vae)
    assert state.stopped_early and state.best_epoch == 2 and state.best_valid == -4.0
    assert state.kept_epoch == 2 and bool((state.best_params["weight"] == 2).all())
    unpatient = TrainState(epoch=1)
    unpatient.observe(-1.0, patience=0, vae=vae)
    assert unpatient.best_params is None and unpatient.best_valid == -math.inf and unpatient.kept_epoch == 1


def test_random_states_are_restored_for_torch_numpy_and_python():
    pyro.set_rng_seed(11)
    saved = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(saved)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
