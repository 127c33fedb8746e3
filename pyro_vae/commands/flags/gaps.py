"""The flags of pyro-vae-gaps (scripts/gaps.py)."""

from __future__ import annotations

from pyro_vae.commands.cli import (
    ArgumentParser,
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

GAPS = """Split each test image's inference gap into approximation and amortization gaps (Cremer et al. 2018).

    pyro-vae-gaps --checkpoint runs/train_svi/checkpoint.pt --images 100

For N test images drawn at random (--seed): log p(x) by AIS, the amortized guide's ELBO L[q], and L[q*] of
the best diagonal Gaussian for each image alone (local optimizations from --local-starts starts). The
approximation gap log p(x) - L[q*] is what the Gaussian family costs; the amortization gap L[q*] - L[q]
what sharing one encoder across images costs. Prints a table, writes gaps.json and gaps.png. Runs under
torchrun and resumes (--resume) as evaluate.py does, in parts of --images-per-pass images, each seeded from
--seed and its first image: the numbers do not depend on the number of processes or an interruption.
"""


def gaps_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(GAPS))
    p.add_argument("--images", type=positive_int, default=100,
                   help="test images drawn at random with --seed (default: %(default)s)")
    p.add_argument("--local-steps", type=positive_int, default=500,
                   help="Adam steps of each image's local optimization for q*, from each start (default: "
                        "%(default)s)")
    p.add_argument("--local-starts", type=positive_int, default=8,
                   help="starts of each image's q*: the guide's moments, final AIS chain states and draws from the "
                        "guide widened; the best is kept, so a posterior with several modes gets its best one "
                        "(default: %(default)s)")
    p.add_argument("--elbo-samples", type=positive_int, default=1000,
                   help="draws that estimate each ELBO, L[q] and L[q*]: an average of log-weights, not the K of "
                        "an importance-sampled log p(x) that --eval-samples sets elsewhere (default: %(default)s)")
    add_ais_arguments(p, positive_int, 500, "AIS transitions (default: %(default)s)")
    add_parts_arguments(p, "run")
    add_checkpoint_arguments(p, seeds="the choice of images and every sampler", out="gaps.json and gaps.png")
    add_common(p, progress=True, example="images = 50, ais-steps = 500")
    add_renamed(p, RENAMED["gaps"])
    return p
