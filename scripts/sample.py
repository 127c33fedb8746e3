"""Draw prior samples, reconstructions and latent interpolations from a trained VAE: the same as
``pyro-vae-sample`` (the code is in pyro_vae/commands/sample.py)."""

from pyro_vae.commands import runner
from pyro_vae.commands.cli import exit_now, main

run = runner("sample")

if __name__ == "__main__":
    exit_now(main(run))
