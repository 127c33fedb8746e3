"""Draw a trained VAE's figures from its checkpoint: the same as ``pyro-vae-plot`` (the code is in
pyro_vae/commands/plot.py)."""

from pyro_vae.commands import runner
from pyro_vae.commands.cli import exit_now, main

run = runner("plot")

if __name__ == "__main__":
    exit_now(main(run))
