"""Draw a trained VAE's figures from its checkpoint: the same as ``pyro-vae-plot`` (the code is in pyro_vae/commands/plot.py)."""

import sys

from pyro_vae.cli import main
from pyro_vae.commands import runner

run = runner("plot")

if __name__ == "__main__":
    sys.exit(main(run))
