"""Bidirectional Monte Carlo: sandwich log p(x) between forward and reverse AIS on images simulated from a
model: the same as ``pyro-vae-bdmc`` (the code is in pyro_vae/commands/bdmc.py)."""

from pyro_vae.commands import runner
from pyro_vae.commands.cli import exit_now, main

run = runner("bdmc")

if __name__ == "__main__":
    exit_now(main(run))
