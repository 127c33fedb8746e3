"""pyro-vae-train: train a VAE by SVI and report its test ELBO and log p(x) (its flags: flags/train.py)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyro

from pyro_vae.commands.cli import STARTED, startup_done
from pyro_vae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.runs.experiment import run_training
from pyro_vae.runs.run_folder import earlier_run, output_path
from pyro_vae.training import distributed

DEFAULT_OUT = Path("runs/train_svi")
log = logging.getLogger("pyro_vae")


def configs(a: argparse.Namespace) -> tuple[ModelConfig, DataConfig, TrainConfig, RunConfig]:
    """The configs that train's flags (flags/train.py) set."""
    z_dim, z2_dim = (a.z_dim, 0) if a.latents is None else (a.latents[0], a.latents[1] if len(a.latents) > 1 else 0)
    model = ModelConfig(z_dim=z_dim, z2_dim=z2_dim, hidden=a.hidden, activation=a.activation, likelihood=a.likelihood,
                        scale_floor=a.scale_floor, guide=a.guide, flow_layers=a.flow_layers, arch=a.arch)
    data = DataConfig(dataset=a.dataset or DataConfig().dataset, data_dir=a.data_dir, binarize=a.binarize,
                      dequantize=a.dequantize, download=not a.no_download, seed=a.seed, fallback=a.dataset is None,
                      channels=a.channels, image_size=a.image_size)
    train = TrainConfig(epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, elbo=a.elbo, num_particles=a.num_particles,
                        lr_schedule=a.lr_schedule, patience=a.patience, jit=a.jit, steps=a.steps or 0)
    run = RunConfig(device=a.device, init_output_bias=a.init_output_bias, eval_samples=a.eval_samples)
    return model, data, train, run


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


def run(args: argparse.Namespace) -> None:
    model, data, train, run_config = configs(args)
    # under torchrun: inside the process group
    distributed.in_process_group(lambda context, _: train_in(args, model, data, train, run_config, context),
                                 run_config.device)


def train_in(args: argparse.Namespace, model: ModelConfig, data: DataConfig, train: TrainConfig,
             run_config: RunConfig, context: distributed.Context) -> None:
    pyro.set_rng_seed((args.seed + context.rank) % 2**32)  # each rank its own z and binarization noise
    out = output_folder(args.out, args.resume, args.overwrite)
    resume = None if args.resume is None else (args.resume or out / "checkpoint.pt")
    tensorboard = None if args.tensorboard is None else (args.tensorboard or out / "tensorboard")
    run_training(model, data, train, out, run_config, progress=not args.no_progress, resume=resume,
                 checkpoint_every=args.checkpoint_every, context=context, tensorboard=tensorboard,
                 overwrite=args.overwrite, started=STARTED, after_startup=startup_done)
