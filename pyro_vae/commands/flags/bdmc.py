"""The flags of pyro-vae-bdmc (scripts/bdmc.py)."""

from __future__ import annotations

from pyro_vae.commands.cli import (
    ArgumentParser,
    int_list,
    positive_int,
    summary,
)
from pyro_vae.commands.flags.common import (
    RENAMED,
    add_ais_arguments,
    add_checkpoint_arguments,
    add_common,
    add_parts_arguments,
    add_renamed,
)

BDMC = """Bidirectional Monte Carlo: sandwich log p(x) between forward and reverse AIS on images simulated from a model.

    pyro-vae-bdmc --checkpoint runs/train_svi/checkpoint.pt --images 100 --ais-steps 100,1000 --ais-chains 16

Draws N images x ~ p(x) from the trained model, keeping the z that generated each: an exact posterior
sample (Grosse et al. 2015). For each step count, forward AIS from the guide gives a stochastic lower bound
on log p(x) and reverse AIS from that z a stochastic upper bound; their gap says how far either can be from
log p(x), and so how many steps are enough. The ELBO and IWAE-K of the same images show where importance
sampling sits inside the sandwich. Prints a table, writes bdmc.json, bdmc_per_image.csv and bdmc.png. Runs
under torchrun and resumes (--resume) as evaluate.py does; the simulated images depend on --seed and
--images, each image's samplers on --seed and its number.
"""


def bdmc_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(BDMC))
    p.add_argument("--images", type=positive_int, default=100, help="images to simulate (default: %(default)s)")
    add_ais_arguments(p, int_list, (100, 1000), "AIS step counts, comma-separated (default: 100,1000)")
    p.add_argument("--eval-samples", type=positive_int, default=5000,
                   help="K of the largest IWAE bound on the same images (default: %(default)s)")
    add_parts_arguments(p, "BDMC run")
    add_checkpoint_arguments(p, seeds="the simulated images and every sampler",
                             out="bdmc.json, bdmc_per_image.csv and bdmc.png")
    add_common(p, progress=True, example="ais-steps = 1000, images = 20")
    add_renamed(p, RENAMED["bdmc"])
    return p
