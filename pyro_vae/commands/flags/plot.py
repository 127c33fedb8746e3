"""The flags of pyro-vae-plot (scripts/plot.py)."""

from __future__ import annotations

from pyro_vae.commands.cli import (
    ArgumentParser,
    summary,
)
from pyro_vae.commands.flags.common import (
    add_checkpoint_arguments,
    add_common,
)

PLOT = """Draw a trained VAE's figures from its checkpoint: reconstructions, prior samples, the test set's
latent means (PCA above z = 2), the 2-D manifold (z = 2) and the learning curve.

    pyro-vae-plot --checkpoint runs/train_svi/checkpoint.pt
"""


def plot_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(PLOT))
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out that holds another run (refused without it)")
    add_checkpoint_arguments(p, seeds="the prior samples", out="the PNGs")
    add_common(p, progress=False, example="seed = 1, device = \"cpu\"")
    return p
