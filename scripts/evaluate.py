"""Compare the ELBO with importance-weighted bounds log p^_K(x) for growing K on the test set: the same as
``pyro-vae-evaluate`` (the code is in pyro_vae/commands/evaluate.py)."""

from pyro_vae.commands import runner
from pyro_vae.commands.cli import exit_now, main

run = runner("evaluate")

if __name__ == "__main__":
    exit_now(main(run))
