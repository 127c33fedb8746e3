"""pyro-vae-plot: a trained VAE's figures, drawn again from its checkpoint (its flags: flags/plot.py)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro

from pyro_vae.commands.cli import startup_done
from pyro_vae.data.pixels import PreparedData
from pyro_vae.inference.objectives import objective_name
from pyro_vae.models.vae import VAE
from pyro_vae.runs.experiment import load_run
from pyro_vae.runs.plots import plot_history
from pyro_vae.runs.report import plot_learning_curve, write_figures
from pyro_vae.runs.run_folder import held_folder, require_own_folder, writable_dir
from pyro_vae.training import checkpoint
from pyro_vae.training.distributed import SINGLE
from pyro_vae.training.state import EpochRecord

log = logging.getLogger("pyro_vae")


def final_numbers_beside(checkpoint_path: Path, history: Sequence[EpochRecord]) -> dict[str, Any] | None:
    """The test numbers ("final") of the metrics.json beside a checkpoint when the same training wrote
    both (its per-epoch history is the checkpoint's); None when there is none, or when it is another
    run's (e.g. a resumed run stopped before writing its own)."""
    try:
        metrics = json.loads((checkpoint_path.parent / "metrics.json").read_text())
        rows = [(row["epoch"], row["train_bound"], row["valid_bound"]) for row in metrics["history"]]
        final = metrics["final"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    same_run = rows == [(r.epoch, r.train_bound, r.valid_bound) for r in history]
    return final if same_run and isinstance(final, dict) and "test_bound" in final else None


def run(a: argparse.Namespace) -> None:
    pyro.set_rng_seed(a.seed)
    vae, data, state = load_run(a.checkpoint, a.device, a.data_dir)
    startup_done()  # the garbage collector, paused through start-up (cli.pause_collection), resumes
    out = writable_dir(Path(a.checkpoint).parent if a.out is None else a.out)
    require_own_folder(out, a.checkpoint, a.overwrite)
    with held_folder(out, SINGLE):  # no training run or evaluation writes here meanwhile
        redraw(a, vae, data, state, out)


def redraw(a: argparse.Namespace, vae: VAE, data: PreparedData, state: dict, out: Path) -> None:
    written = write_figures(vae, data, out)
    if "train_state" in state:
        train_state, path = checkpoint.train_state(state), out / "learning_curve.png"
        final = final_numbers_beside(Path(a.checkpoint), train_state.history)
        if final is not None:  # the test numbers of the training run that wrote this checkpoint
            plot_learning_curve(train_state.history, final, path)
        else:
            objective = objective_name(state["train_config"]["elbo"], state["train_config"]["num_particles"])
            plot_history(train_state.history, path, objective=objective, kept_epoch=train_state.kept_epoch)
        written.append("learning_curve.png")
    log.info("wrote %s: %s", out, " ".join(written))
