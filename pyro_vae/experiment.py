"""A whole run: data -> VAE -> training -> evaluation -> files. What train_svi.py calls."""

from __future__ import annotations

import csv
import json
import logging
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from pyro_vae import checkpoint
from pyro_vae.config import DataConfig, ModelConfig, TrainConfig
from pyro_vae.data import PreparedData, dequantized_bound, load_dataset, prepare_data, resolve_binarize
from pyro_vae.distributed import SINGLE, Context
from pyro_vae.errors import TrainingDiverged, TrainingInterrupted, UsageError
from pyro_vae.evaluation import evaluate_bounds
from pyro_vae.likelihoods import make_likelihood
from pyro_vae.plots import (
    manifold_grid, plot_history, plot_latent, plot_manifold, plot_reconstructions, plot_samples,
)
from pyro_vae.train import EpochRecord, Snapshot, fit, make_optimizer, objective_name
from pyro_vae.vae import VAE

log = logging.getLogger("pyro_vae")

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when torch sees a GPU, else CPU."""
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False); "
                         "use --device cpu or --device auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build(model_config: ModelConfig, data_config: DataConfig, device: torch.device) -> tuple[VAE, PreparedData, DataConfig]:
    """Load the data, choose the likelihood for it, and build the VAE on ``device``.

    Also returns the data config as actually used (the dataset after any fallback, binarization
    resolved): what a checkpoint records so that evaluation rebuilds the same test set.
    """
    dataset = load_dataset(
        data_config.dataset, data_config.data_dir, data_config.download, data_config.seed, data_config.fallback
    )
    binarize = resolve_binarize(data_config.binarize, model_config.likelihood, dataset.is_binary)
    grey_targets = binarize == "none" and not dataset.is_binary
    likelihood = make_likelihood(model_config, grey_targets=grey_targets)
    if grey_targets and likelihood.wants_binary_data:
        log.warning(
            "warning: --binarize none scores grey pixels as Bernoulli targets (as pytorch/examples does); that "
            "is not a normalized likelihood on [0, 1], so this ELBO and log p(x) are not comparable with others'"
        )
    data = prepare_data(dataset, likelihood, binarize, data_config.seed, device, data_config.dequantize)
    vae = VAE(dataset.train.shape[1], model_config, likelihood).to(device)
    return vae, data, replace(data_config, dataset=dataset.name, binarize=binarize)


def writable_dir(out: str | Path) -> Path:
    """``out``, created if needed; a one-line UsageError when it cannot be written."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # a probe of this process's own: torchrun's ranks probe at once
    except OSError as error:
        raise UsageError(f"--out {out} is not a writable directory ({error.strerror}): choose another --out") from None
    return out


REMEDIES = ("try a lower --lr, --elbo meanfield (analytic KL), or for the gaussian likelihood a larger "
            "--scale-floor")


def _check_resumable(saved: dict, path: Path, data_used: DataConfig, train_config: TrainConfig) -> None:
    """A UsageError when the run asks for other data than the checkpoint's; a logged line for
    changed training settings (allowed, e.g. a lower --lr after a divergence)."""
    old = saved["data_config"]
    differ = [k for k in ("dataset", "binarize", "seed", "dequantize") if old.get(k, False) != getattr(data_used, k)]
    if differ:
        raise UsageError(f"--resume {path}: it was trained on " + ", ".join(f"{k}={old.get(k, False)!r}" for k in differ)
                         + " but this run asks for " + ", ".join(f"{k}={getattr(data_used, k)!r}" for k in differ)
                         + ": pass the flags of the original run")
    changed = [f"{k} {v} -> {getattr(train_config, k)}" for k, v in saved["train_config"].items()
               if k not in ("epochs", "eval_samples", "device") and v != getattr(train_config, k)]
    if changed:
        log.info("resuming with changed training settings (%s): the run will differ from an uninterrupted one",
                 ", ".join(changed))


def run_training(
    model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig, out: str | Path,
    progress: bool = True, resume: str | Path | None = None, checkpoint_every: int = 1,
    context: Context = SINGLE, tensorboard: str | Path | None = None,
) -> dict:
    """Train, evaluate on the test set, and write checkpoint.pt, metrics.json, history.csv and
    PNG figures into ``out``. Returns the metrics. Seeds are the caller's to set.

    checkpoint.pt is rewritten (atomically) every ``checkpoint_every`` epochs and after the last;
    ``resume`` names a checkpoint to go on from (same model and data; see _check_resumable).
    ``context``: data-parallel training and evaluation over torchrun's processes; rank 0 alone
    writes files (see distributed.py). ``tensorboard``: a folder for TensorBoard event files
    (see tensorboard.py), continued across resumes.
    """
    start = time.perf_counter()
    out = writable_dir(out)
    path = out / "checkpoint.pt"
    device = resolve_device(train_config.device)
    if context.distributed and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (distributed.init)
    saved = checkpoint.read(resume, device) if resume is not None else None
    vae, data, data_used = build(model_config, data_config, device)
    if data_used.dataset != data_config.dataset:
        log.info("dataset used: %s (%d training, %d validation, %d test images)", data_used.dataset,
                 len(data.train), len(data.valid), len(data.test))
    optimizer = make_optimizer(vae.parameters(), train_config.lr)
    state = None
    if saved is not None:
        checkpoint.check_compatible(vae, saved, f"--resume {resume}")
        _check_resumable(saved, Path(resume), data_used, train_config)
        state = checkpoint.train_state(saved)
        checkpoint.restore(vae, saved, kept=False)
        optimizer.load_state_dict(saved["optimizer"])
        log.info("resuming %s after epoch %d of %d", resume, state.epoch, train_config.epochs)
    elif train_config.init_output_bias:
        vae.init_output_bias(data.train)

    def save(snapshot: Snapshot) -> None:
        checkpoint.save(path, vae, optimizer, data_used, train_config, snapshot=snapshot)

    board = None
    if tensorboard is not None and context.is_main:
        from pyro_vae.tensorboard import TensorBoardWriter  # optional dependency: imported when asked for

        board = TensorBoardWriter(tensorboard, resumed_epoch=state.epoch if state else 0)
        board.config({"model": asdict(model_config), "data": asdict(data_used), "train": asdict(train_config)})

    def on_epoch(record: EpochRecord) -> None:
        if board is not None:
            board.epoch(record, objective_name(train_config), vae, data)

    try:
        state = fit(vae, optimizer, data, train_config, progress, callback=on_epoch, state=state,
                    save=save if context.is_main else None, save_every=checkpoint_every, context=context)
    except TrainingDiverged as error:
        if path.exists():
            after = (f"the last good checkpoint, {path}, holds epoch {error.epoch - 1}; {REMEDIES}, and pass --resume "
                     "to go on from it")
        else:
            after = f"no checkpoint was written yet; {REMEDIES}"
        raise TrainingDiverged(f"training diverged: {error}; {after}", error.epoch, error.step) from None
    except TrainingInterrupted as error:
        where = f"epoch {error.epoch} is saved in {path}" if error.epoch else "no epoch was completed, nothing saved"
        raise TrainingInterrupted(error.epoch, f"interrupted: {where}; to go on, run the same command with --resume"
                                  if error.epoch else f"interrupted: {where}") from None
    history = state.history

    # the epoch whose parameters the VAE holds now: the best validation one under early stopping
    kept = history[state.kept_epoch - 1]
    final = {"epoch": kept.epoch, "epochs_run": len(history), "objective": objective_name(train_config),
             "train_elbo": kept.train_elbo, "valid_elbo": kept.valid_elbo, "test_elbo": kept.test_elbo}
    if train_config.eval_samples:
        report = evaluate_bounds(vae, data.test, ks=(train_config.eval_samples,), context=context)
        final["test_log_likelihood"] = {"num_samples": report.num_samples, **asdict(report.log_likelihood)}
        final["test_elbo_from_importance_samples"] = asdict(report.elbo)
        final["khat_above_0.7"] = report.khat_above
        if data_config.dequantize:  # a density on [0, 1]^D bounds the probability of the 8-bit image
            nats, final["bits_per_dim"] = dequantized_bound(report.log_likelihood.mean, data.test.shape[1])
            final["test_log_likelihood_8bit"] = nats
            log.info("8-bit test images: log P(x) >= %.2f nats, %.3f bits/dim", nats, final["bits_per_dim"])
        log.info(
            "test log p^(x) %s nats/image (K=%d importance samples); test ELBO %.2f; gap %.2f",
            str(report.log_likelihood).strip(), report.num_samples, report.elbo.mean,
            report.gap.mean,
        )

    if board is not None:
        board.final(final, len(history))
        board.close()

    metrics = {
        "config": {"model": asdict(model_config), "data": asdict(data_config), "train": asdict(train_config)},
        "dataset": data_used.dataset,
        "binarize": data_used.binarize,
        "x_dim": data.test.shape[1],
        "num_train": len(data.train),
        "num_valid": len(data.valid),
        "num_test": len(data.test),
        "final": final,
        "history": [asdict(record) for record in history],
        "processes": context.world_size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "versions": checkpoint.versions(),
    }
    if not context.is_main:
        return metrics
    figures = write_figures(vae, data, out)
    log_likelihood = final.get("test_log_likelihood", {}).get("mean")
    plot_history(history, out / "learning_curve.png", log_likelihood, objective_name(train_config), kept.epoch)
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(history[0])))
        writer.writeheader()
        writer.writerows(asdict(record) for record in history)
    metrics["wall_seconds"] = time.perf_counter() - start
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("wrote %s: checkpoint.pt metrics.json history.csv learning_curve.png %s", out, " ".join(figures))
    return metrics


@torch.no_grad()
def write_figures(vae: VAE, data: PreparedData, out: Path) -> list[str]:
    """Reconstructions, prior samples, the test set's latent means (scatter for z = 2, PCA above)
    and, for z = 2, the decoded manifold, as PNGs in ``out``; returns the file names."""
    x, z_dim = data.test[:32], vae.config.z_dim
    plot_reconstructions(x, vae.reconstruct(x), data.image_shape, out / "reconstructions.png")
    plot_samples(vae.decode_mean(torch.randn(64, z_dim, device=x.device)), data.image_shape, out / "samples.png")
    loc = torch.cat([vae.encoder(batch)[0] for batch in data.test.split(1000)])  # (M, Z)
    plot_latent(loc, data.test_labels, out / "latent.png")
    written = ["reconstructions.png", "samples.png", "latent.png"]
    if z_dim == 2:
        plot_manifold(vae.decode_mean(manifold_grid().to(x.device)), data.image_shape, out / "manifold.png")
        written.append("manifold.png")
    return written


def load_run(path: str | Path, device: str = "auto", data_dir: str | None = None) -> tuple[VAE, PreparedData, dict]:
    """The trained VAE of a checkpoint (eval mode), its data rebuilt as in training, and the
    checkpoint dict. ``data_dir`` overrides where the data is read from."""
    device = resolve_device(device)
    state = checkpoint.read(path, device)
    model_config, data_config = checkpoint.configs(state)
    if data_dir is not None:
        data_config = replace(data_config, data_dir=data_dir)
    vae, data, _ = build(model_config, data_config, device)
    checkpoint.restore(vae, state)
    return vae.eval(), data, state
