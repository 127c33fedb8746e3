"""The flags of pyro-vae-sample (scripts/sample.py)."""

from __future__ import annotations

import argparse

from pyro_vae.commands.cli import (
    ArgumentParser,
    positive_float,
    positive_int,
    summary,
)
from pyro_vae.commands.flags.common import (
    RENAMED,
    add_checkpoint_arguments,
    add_common,
    add_renamed,
)

SAMPLE = """Draw from a trained VAE: prior samples, reconstructions of test images and latent interpolations
between two test images, as PNG grids and a .pt of the tensors.

    pyro-vae-sample --checkpoint runs/train_svi/checkpoint.pt --num 64
    pyro-vae-sample --checkpoint runs/train_svi/checkpoint.pt --interpolate 3,7 --interpolate-images 10 \\
        --temperature 0.8

Samples come from pyro.infer.Predictive on the model: z ~ N(0, T^2 I) with T = --temperature, then the
decoder's mean image (its pixel probabilities, or the Gaussian's mean). Writes samples.png,
reconstructions.png, interpolation.png (with --interpolate) and samples.pt into --out.
"""


def index_pair(text: str) -> tuple[int, int]:
    """'3,7' -> (3, 7): two test-image indices."""
    try:
        first, second = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two test-image indices like 3,7, got {text!r}") from None
    if min(first, second) < 0:
        raise argparse.ArgumentTypeError(f"test-image indices are 0 or more, got {text!r}")
    return first, second


def sample_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(SAMPLE))
    p.add_argument("--num", type=positive_int, default=64,
                   help="prior samples, and test images reconstructed (default: %(default)s)")
    p.add_argument("--interpolate", type=index_pair, metavar="A,B",
                   help="also decode the straight line between the latent means of test images A and B")
    p.add_argument("--interpolate-images", type=positive_int, default=10, metavar="N",
                   help="--interpolate: images along the line, the two ends included, at least 2 (its old name, "
                        "--steps, works until 0.4.0) (default: %(default)s)")
    p.add_argument("--temperature", type=positive_float, default=1.0,
                   help="scale of the prior's standard deviation for the samples (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into an --out that holds another run (refused without it)")
    add_checkpoint_arguments(p, seeds="the prior samples", out="the PNGs and samples.pt")
    add_common(p, progress=False, example="num = 64, temperature = 0.8")
    add_renamed(p, RENAMED["sample"])
    return p
