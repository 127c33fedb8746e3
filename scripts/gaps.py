"""Split each test image's inference gap into approximation and amortization gaps: the same as
``pyro-vae-gaps`` (the code is in pyro_vae/commands/gaps.py)."""

from pyro_vae.commands import runner
from pyro_vae.commands.cli import exit_now, main

run = runner("gaps")

if __name__ == "__main__":
    exit_now(main(run))
