"""Train a VAE by stochastic variational inference and report its test ELBO and log p(x): the same as
``pyro-vae-train`` (the code is in pyro_vae/commands/train.py)."""

from pyro_vae.commands import runner
from pyro_vae.commands.cli import exit_now, main

run = runner("train")

if __name__ == "__main__":
    exit_now(main(run))
