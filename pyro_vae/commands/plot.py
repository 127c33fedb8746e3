"""Draw a trained VAE's figures from its checkpoint: reconstructions, prior samples, the test set's
latent means (PCA above z = 2), the 2-D manifold (z = 2) and the learning curve.

    pyro-vae-plot --checkpoint runs/train_svi/checkpoint.pt
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyro

from pyro_vae import checkpoint
from pyro_vae.cli import ArgumentParser, add_checkpoint_arguments, startup_done
from pyro_vae.experiment import load_run
from pyro_vae.objectives import objective_name
from pyro_vae.plots import plot_history
from pyro_vae.report import write_figures
from pyro_vae.run_folder import writable_dir

log = logging.getLogger("pyro_vae")


def run(argv: list[str] | None) -> None:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    add_checkpoint_arguments(p, seeds="the prior samples", out="the PNGs")
    a = p.parse_args(argv)

    pyro.set_rng_seed(a.seed)
    vae, data, state = load_run(a.checkpoint, a.device, a.data_dir)
    startup_done()  # the garbage collector, paused through start-up (cli.pause_collection), resumes
    out = writable_dir(a.out or Path(a.checkpoint).parent)
    written = write_figures(vae, data, out)
    if "train_state" in state:
        train_state = checkpoint.train_state(state)
        plot_history(train_state.history, out / "learning_curve.png",
                     objective=objective_name(state["train_config"]["elbo"], state["train_config"]["num_particles"]))
        written.append("learning_curve.png")
    log.info("wrote %s: %s", out, " ".join(written))
