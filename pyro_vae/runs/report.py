"""The end of a run: the test log p^(x), metrics.json, history.csv and the figures."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pyro_vae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.data.pixels import PreparedData, dequantized_bound
from pyro_vae.evaluation.bounds import datapoint_bounds, images_per_pass
from pyro_vae.files import atomic_write_text
from pyro_vae.inference.objectives import objective_name
from pyro_vae.models.vae import VAE
from pyro_vae.runs.parts import LONG, duration
from pyro_vae.training import checkpoint
from pyro_vae.training.distributed import SINGLE, Context
from pyro_vae.training.loop import held_out_bound
from pyro_vae.training.state import EpochRecord, TrainState

log = logging.getLogger("pyro_vae")


def final_numbers(vae: VAE, data: PreparedData, state: TrainState, train_config: TrainConfig, eval_samples: int,
                  context: Context = SINGLE, progress: bool = False) -> dict[str, Any]:
    """The kept epoch's bounds, the test bound (the training objective on the test set, scored here,
    once, with the kept parameters) and, with ``eval_samples`` > 0, the test log p^(x) from that many
    importance samples (``progress``: with a bar on a terminal). Each process scores its part of the test set. The
    test numbers are logged."""
    kept = state.history[state.kept_epoch - 1]  # the best validation epoch under early stopping
    objective = objective_name(train_config.elbo, train_config.num_particles)
    final: dict[str, Any] = {
        "epoch": kept.epoch, "epochs_run": len(state.history), "objective": objective,
        "train_bound": kept.train_bound, "valid_bound": kept.valid_bound,
    }
    final.update(reconstruction_error(vae, data))
    report = None
    if eval_samples:
        mine = context.shard(data.test)
        # 100 images a pass (datapoint_bounds' default), and at least PROGRESS_STEPS passes: a bar that moves
        batch_size = max(1, min(images_per_pass(eval_samples, at_least=100), -(-len(mine) // PROGRESS_STEPS)))
        report = datapoint_bounds(vae, mine, ks=(eval_samples,), batch_size=batch_size,
                                  progress=progress and context.is_main,
                                  first_batch=lambda seconds, batches: say_final_time(
                                      seconds * batches, eval_samples, len(data.test), context.is_main)).map(
            context.cat).report()
    if report is not None and train_config.elbo != "iwae":
        # an ELBO objective's test bound is the importance samples' mean log-weight: the same ELBO,
        # averaged over K draws per image instead of one, with no pass of its own
        final["test_bound"] = report.elbo.mean
    else:
        final["test_bound"] = held_out_bound(vae, data.test, train_config, context)
        log.info("test %s %.2f nats/image (the parameters of epoch %d)", objective, final["test_bound"], kept.epoch)
    if report is None:
        return final
    final["test_log_likelihood"] = {"num_samples": report.num_samples, **asdict(report.log_likelihood)}
    final["test_elbo_from_importance_samples"] = asdict(report.elbo)
    final["khat_above_0.7"] = report.khat_above
    if data.dequantize:  # a density on [0, 1]^D bounds the probability of the 8-bit image
        nats, final["bits_per_dim"] = dequantized_bound(report.log_likelihood.mean, data.test.shape[1])
        final["test_log_likelihood_8bit"] = nats
        log.info("8-bit test images: log P(x) >= %.2f nats, %.3f bits/dim", nats, final["bits_per_dim"])
    log.info("test log p^(x) %s nats/image (K=%d importance samples); test ELBO %.2f; gap %.2f",
             str(report.log_likelihood).strip(), report.num_samples, report.elbo.mean, report.gap.mean)
    return final


PROGRESS_STEPS = 20  # the final estimate scores the test set in at least this many passes, for its progress bar


def say_final_time(seconds: float, eval_samples: int, images: int, is_main: bool) -> None:
    """After the final estimate's first pass: one line when the whole will take longer than parts.LONG (66 images
    of a conv VAE at K = 1,000 ran 11.5 minutes without a word), naming how to skip it and do it later."""
    if seconds > LONG and is_main:
        log.info("the final estimate (K = %d on %d test images) will take about %s: `eval_samples=0` skips it, and "
                 "pyro-vae-evaluate does it later, saved part by part", eval_samples, images, duration(seconds))


LEARNED_LITTLE = 0.9  # reconstructions whose squared error is above this fraction of the mean image's: said so
CHECKED_IMAGES = 1000  # test images the reconstructions are checked on


@torch.no_grad()
def reconstruction_error(vae: VAE, data: PreparedData) -> dict[str, float]:
    """The mean squared error per pixel of the reconstructions (the decoder's mean at the encoder's mean) of up to
    CHECKED_IMAGES test images, and that of the training images' mean image on them; logs one line when the
    reconstructions are no better than the mean image: a model that learned one blob for every image."""
    x = data.test[:CHECKED_IMAGES]
    if not len(x) or not len(data.train):
        return {}
    mean_image = data.train.mean(0)  # (D,)
    error = (vae.reconstruct(x) - x).square().mean().item()
    floor = (mean_image - x).square().mean().item()
    if error > LEARNED_LITTLE * floor:
        log.warning("the reconstructions are no better than the training images' mean image (squared error %.4f "
                    "per pixel against its %.4f): the model has learned little; train with more optimizer steps "
                    "(a smaller `batch_size`, more `epochs`) or check the data", error, floor)
    return {"reconstruction_mse": error, "mean_image_mse": floor}


def metrics(final: dict[str, Any], state: TrainState, data: PreparedData, configs: dict[str, Any],
            data_used: DataConfig, processes: int) -> dict[str, Any]:
    """What metrics.json holds (write_report adds wall_seconds and startup_seconds)."""
    return {
        "config": configs,
        "dataset": data_used.dataset,
        "binarize": data_used.binarize,
        "x_dim": data.test.shape[1],
        "num_train": len(data.train),
        "num_valid": len(data.valid),
        "num_test": len(data.test),
        **({"classes": list(data.classes)} if data.classes else {}),
        "final": final,
        "history": [asdict(record) for record in state.history],
        "processes": processes,
        "device": torch.cuda.get_device_name(data.test.device) if data.test.is_cuda else "cpu",
        "versions": checkpoint.versions(),
    }


def configs(model: ModelConfig, data: DataConfig, train: TrainConfig, run: RunConfig) -> dict[str, Any]:
    """A run's configuration as JSON holds it."""
    return {"model": asdict(model), "data": asdict(data), "train": asdict(train), "run": asdict(run)}


def write_report(vae: VAE, data: PreparedData, state: TrainState, metrics: dict[str, Any], out: Path,
                 started: float, startup: float, also: Sequence[str] = ()) -> None:
    """metrics.json, history.csv, the learning curve and the figures of write_figures, in ``out``; the closing
    line names them, and ``also`` (what else the run wrote, e.g. its TensorBoard folder)."""
    figures = write_figures(vae, data, out)
    plot_learning_curve(state.history, metrics["final"], out / "learning_curve.png")
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(metrics["history"][0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(metrics["history"])
    atomic_write_text(out / "history.csv", table.getvalue())
    metrics["wall_seconds"] = time.perf_counter() - started
    metrics["startup_seconds"] = startup
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    log.info("wrote %s: checkpoint.pt metrics.json history.csv learning_curve.png %s", out, " ".join([*figures, *also]))


def plot_learning_curve(history: Sequence[EpochRecord], final: dict[str, Any], path: Path) -> None:
    """The train and validation curves of ``history``, with the test bound and log p^(x) of
    ``final`` (metrics.json's "final") at the epoch it kept."""
    from pyro_vae.runs.plots import plot_history  # matplotlib loads when the figures are drawn, not at start-up

    log_likelihood = final.get("test_log_likelihood", {}).get("mean")
    plot_history(history, path, final["test_bound"], log_likelihood, final["objective"], final["epoch"])


@torch.no_grad()
def write_figures(vae: VAE, data: PreparedData, out: Path) -> list[str]:
    """Reconstructions, prior samples, the test set's latent means (scatter for z = 2, PCA above)
    and, for z = 2, the decoded manifold, as PNGs in ``out``; returns the file names."""
    from pyro_vae.runs.plots import manifold_grid, plot_latent, plot_manifold, plot_reconstructions, plot_samples

    x, z_dim = data.test[:32], vae.config.z_dim
    plot_reconstructions(x, vae.reconstruct(x), data.image_shape, out / "reconstructions.png")
    plot_samples(vae.decode_mean(vae.prior_z(64)), data.image_shape, out / "samples.png")
    loc = torch.cat([vae.guide_center(batch) for batch in data.test.split(1000)])  # (M, Z)
    plot_latent(loc, data.test_labels, out / "latent.png", classes=data.classes)
    written = ["reconstructions.png", "samples.png", "latent.png"]
    if z_dim == 2 and not vae.config.z2_dim:  # the grid's quantiles are those of N(0, I), one layer's prior
        plot_manifold(vae.decode_mean(manifold_grid().to(x.device)), data.image_shape, out / "manifold.png")
        written.append("manifold.png")
    return written
