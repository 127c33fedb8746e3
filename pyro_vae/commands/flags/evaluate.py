"""The flags of pyro-vae-evaluate (scripts/evaluate.py)."""

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

EVALUATE = """Compare the ELBO with importance-weighted bounds log p^_K(x) for growing K on the test set.

    pyro-vae-evaluate --checkpoint runs/train_svi/checkpoint.pt
    torchrun --nproc_per_node=4 scripts/evaluate.py --checkpoint runs/train_svi/checkpoint.pt --ais-steps 1000

Every image's random numbers are its own (drawn from streams keyed by --seed and the image's index), so an
image's numbers do not depend on the other images, --images-per-pass, --chunk-size, the number of processes
or an interruption. Writes evaluation.json, per_image.csv and bounds.png; parts saved as it goes (--resume).
"""


def evaluate_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(EVALUATE))
    p.add_argument("--eval-samples", type=positive_int, default=5000,
                   help="K for log p^(x), the largest bound; every bound uses these samples (default: %(default)s)")
    p.add_argument("--ks", type=int_list, default=(1, 10, 100, 1000, 5000),
                   help="the K of each bound to report, comma-separated; those above --eval-samples are dropped "
                        "(default: 1,10,100,1000,5000)")
    p.add_argument("--chunk-size", type=positive_int, default=250,
                   help="importance samples per pass; memory grows with images-per-pass x chunk-size "
                        "(default: %(default)s)")
    p.add_argument("--images", type=positive_int,
                   help="evaluate IMAGES test images drawn at random with --seed (the same ones every time; their "
                        "indices are recorded). Default: every test image")
    p.add_argument("--limit", type=positive_int,
                   help="evaluate only the first LIMIT test images (harder than the test set as a whole on MNIST: "
                        "prefer --images)")
    p.add_argument("--no-khat", action="store_true", help="skip the PSIS k^ diagnostic")
    add_ais_arguments(p, int_list, (), "add a row of annealed importance sampling (AIS) with this many HMC "
                                       "transitions; comma-separated for several rows, e.g. 100,1000 (default: none)")
    p.add_argument("--compare", metavar="PER_IMAGE_CSV",
                   help="another evaluation's per_image.csv: print this one minus that one, image by image, with "
                        "paired standard errors (use the same --images and --seed)")
    add_parts_arguments(p, "evaluation")
    add_checkpoint_arguments(p, seeds="the choice of --images and every image's random numbers",
                             out="evaluation.json, per_image.csv and bounds.png")
    add_common(p, progress=True, example="eval-samples = 5000, images = 500")
    add_renamed(p, RENAMED["evaluate"])
    return p
