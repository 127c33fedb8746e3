"""A whole run: data -> VAE -> training -> evaluation -> files. What train_svi.py calls."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from pyro_vae import checkpoint
from pyro_vae.config import DataConfig, ModelConfig, TrainConfig
from pyro_vae.data import PreparedData, dequantized_bound, load_dataset, prepare_data, resolve_binarize
from pyro_vae.distributed import SINGLE, Context
from pyro_vae.errors import OutputError, TrainingDiverged, TrainingInterrupted, UsageError
from pyro_vae.evaluation import evaluate_bounds
from pyro_vae.files import RunFolder, atomic_write_text
from pyro_vae.likelihoods import make_likelihood
from pyro_vae.memory import FLOAT, parameter_count, require_memory, training_bytes
from pyro_vae.train import EpochRecord, Snapshot, TrainState, fit, make_optimizer, objective_name
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
    x_dim = dataset.train.shape[1]
    weights = parameter_count(model_config, x_dim, likelihood.params_per_pixel)
    require_memory(FLOAT * weights, device, f"a VAE with z_dim={model_config.z_dim} and hidden="
                   f"{','.join(map(str, model_config.hidden))} ({weights:,} parameters)", "choose a smaller --z-dim or --hidden")
    vae = VAE(x_dim, model_config, likelihood).to(device)
    return vae, data, replace(data_config, dataset=dataset.name, binarize=binarize)


def output_path(out: str | Path) -> Path:
    """``out`` as a Path; a UsageError for an empty one, which Path would turn into the current folder."""
    if not str(out).strip():
        raise UsageError("--out is empty: name the folder to write into")
    return Path(out)


def writable_dir(out: str | Path) -> Path:
    """``out``, created if needed; a one-line UsageError when it cannot be written."""
    out = output_path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # a probe of this process's own: torchrun's ranks probe at once
    except OSError as error:
        raise UsageError(f"--out {out} is not a writable directory ({error.strerror}): choose another --out") from None
    return out


# what a run writes into its folder (train_svi.py, then evaluate.py beside the checkpoint)
RUN_FILES = ("checkpoint.pt", "metrics.json", "history.csv", "learning_curve.png", "reconstructions.png",
             "samples.png", "latent.png", "manifold.png", "evaluation.json", "bounds.png")
TENSORBOARD = "tensorboard"  # the default TensorBoard folder inside a run folder


def earlier_run(out: Path) -> list[str]:
    """The files of an earlier run in ``out`` (empty when there is none)."""
    return [name for name in (*RUN_FILES, TENSORBOARD) if (out / name).exists()]


def check_run_folder(out: Path, resume: Path | None, overwrite: bool) -> None:
    """Refuse to mix runs: ``out`` may hold an earlier run only when this run continues it
    (``resume`` is its checkpoint) or ``overwrite`` says to replace it (its files are removed
    first). A folder where a result file should go is refused before any training."""
    for name in RUN_FILES:
        if (out / name).exists() and not (out / name).is_file():
            raise UsageError(f"{out / name} is a folder, not a file, and the run writes its {name} there: remove it "
                             "or choose another --out")
    earlier = earlier_run(out)
    continuing = resume is not None and resume.resolve() == (out / "checkpoint.pt").resolve()
    if not earlier or continuing:
        return
    if not overwrite:
        raise UsageError(f"{out} holds an earlier run ({', '.join(earlier)}): pass --resume to go on with it, "
                         "--overwrite to replace it, or choose another --out")
    for name in earlier:
        shutil.rmtree(out / name) if name == TENSORBOARD else (out / name).unlink()
    log.info("--overwrite: removed the earlier run's %s from %s", ", ".join(earlier), out)


@contextmanager
def owned_run_folder(out: Path, resume: Path | None, overwrite: bool, context: Context) -> Iterator[None]:
    """Rank 0 holds ``out`` (files.RunFolder: one process at a time; stale temporary files go)
    for the block, once check_run_folder allows the run there. Every rank learns rank 0's verdict,
    so that a refusal stops them all."""
    with ExitStack() as stack:
        problem = None
        if context.is_main:
            try:
                folder = stack.enter_context(RunFolder(out))
                if folder.removed:
                    log.info("removed %d temporary files that an interrupted run left in %s", len(folder.removed), out)
                check_run_folder(out, resume, overwrite)
            except UsageError as error:
                problem = str(error)
        if context.distributed:
            problem = context.gather(problem)[0]
        if problem is not None:
            raise UsageError(problem)
        yield


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
    context: Context = SINGLE, tensorboard: str | Path | None = None, overwrite: bool = False,
    started: float | None = None,
) -> dict:
    """Train, evaluate on the test set, and write checkpoint.pt, metrics.json, history.csv and
    PNG figures into ``out``. Returns the metrics. Seeds are the caller's to set.

    checkpoint.pt is rewritten (atomically) every ``checkpoint_every`` epochs and after the last;
    ``resume`` names a checkpoint to go on from (same model and data; see _check_resumable).
    ``out`` must not hold another run unless ``overwrite`` (see check_run_folder), and no other
    process may write into it meanwhile (see owned_run_folder). ``context``: data-parallel
    training and evaluation over torchrun's processes; rank 0 alone writes files (see
    distributed.py). ``tensorboard``: a folder for TensorBoard event files (see tensorboard.py),
    continued across resumes. ``started``: time.perf_counter() when the process began (the
    scripts pass it), so that the log and metrics.json say how long start-up took; default: now.
    """
    start = time.perf_counter() if started is None else started
    out = writable_dir(out)
    resume = Path(resume) if resume is not None else None
    with owned_run_folder(out, resume, overwrite, context):
        return _run(model_config, data_config, train_config, out, progress, resume, checkpoint_every, context,
                    tensorboard, start)


def _run(
    model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig, out: Path, progress: bool,
    resume: Path | None, checkpoint_every: int, context: Context, tensorboard: str | Path | None, start: float,
) -> dict:
    path = out / "checkpoint.pt"
    device = resolve_device(train_config.device)
    if context.distributed and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU (distributed.init)
    saved = checkpoint.read(resume, device) if resume is not None else None
    vae, data, data_used = build(model_config, data_config, device)
    if data_used.dataset != data_config.dataset:
        log.info("dataset used: %s (%d training, %d validation, %d test images)", data_used.dataset,
                 len(data.train), len(data.valid), len(data.test))
    require_memory(training_bytes(vae, train_config.batch_size, train_config.num_particles), device,
                   f"a training step with --batch-size {train_config.batch_size} and --num-particles "
                   f"{train_config.num_particles}", "lower them (or --hidden, --z-dim)")
    optimizer = make_optimizer(vae.parameters(), train_config.lr)
    state = None
    if saved is not None:
        checkpoint.check_compatible(vae, saved, f"--resume {resume}")
        _check_resumable(saved, resume, data_used, train_config)
        state = checkpoint.train_state(saved)
        if state.epoch > train_config.epochs:
            raise UsageError(f"--resume {resume}: it holds {state.epoch} epochs, more than --epochs "
                             f"{train_config.epochs}: pass --epochs {state.epoch} or more")
        checkpoint.restore(vae, saved, kept=False)
        optimizer.load_state_dict(saved["optimizer"])
        log.info("resuming %s after epoch %d of %d", resume, state.epoch, train_config.epochs)
    elif train_config.init_output_bias:
        vae.init_output_bias(data.train)
    startup = time.perf_counter() - start
    log.info("start-up %.1f s (imports, data, model); training starts", startup)
    written: list[int] = []  # the epochs this run wrote into ``path``

    def save(snapshot: Snapshot) -> None:
        checkpoint.save(path, vae, optimizer, data_used, train_config, snapshot=snapshot)
        written.append(snapshot.state.epoch)

    def last_good() -> tuple[Path, int] | None:
        """The checkpoint holding the last completed epoch, and that epoch, for the messages below."""
        if written:
            return path, written[-1]
        return (resume, state.epoch) if state is not None and resume is not None else None

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
        good = last_good()
        after = (f"the last good checkpoint, {good[0]}, holds epoch {good[1]}; {REMEDIES}, and pass --resume"
                 f"{'' if good[0] == path else f' {good[0]}'} to go on from it" if good
                 else f"no checkpoint was written yet; {REMEDIES}")
        raise TrainingDiverged(f"training diverged: {error}; {after}", error.epoch, error.step) from None
    except TrainingInterrupted as error:
        good = last_good()
        where = (f"epoch {good[1]} is saved in {good[0]}; to go on, run the same command with --resume" if good
                 else "no epoch was completed, nothing saved")
        raise TrainingInterrupted(error.epoch, f"interrupted: {where}") from None
    except OutputError as error:
        good = last_good()
        kept = f"{good[0]} still holds epoch {good[1]}" if good else "no checkpoint was written"
        raise OutputError(f"{error}; {kept}: make room (or fix the folder) and run the same command"
                          f"{' with --resume' if good else ''}", error.path) from None
    try:
        return _report(vae, data, state, model_config, data_config, data_used, train_config, out, context, board,
                       start, startup)
    except KeyboardInterrupt:
        raise TrainingInterrupted(state.epoch, f"interrupted during the final evaluation: all {state.epoch} epochs "
                                  f"are saved in {path}; evaluate it with scripts/evaluate.py --checkpoint "
                                  f"{path}") from None


def _report(
    vae: VAE, data: PreparedData, state: TrainState, model_config: ModelConfig, data_config: DataConfig,
    data_used: DataConfig, train_config: TrainConfig, out: Path, context: Context, board: Any, start: float,
    startup: float,
) -> dict:
    """The end of a run: the test log p^(x), metrics.json, history.csv and the figures."""
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
        "device": torch.cuda.get_device_name(data.test.device) if data.test.is_cuda else "cpu",
        "versions": checkpoint.versions(),
    }
    if not context.is_main:
        return metrics
    from pyro_vae.plots import plot_history  # matplotlib loads when the figures are drawn, not at start-up

    figures = write_figures(vae, data, out)
    log_likelihood = final.get("test_log_likelihood", {}).get("mean")
    plot_history(history, out / "learning_curve.png", log_likelihood, objective_name(train_config), kept.epoch)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=list(asdict(history[0])), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(record) for record in history)
    atomic_write_text(out / "history.csv", table.getvalue())
    metrics["wall_seconds"] = time.perf_counter() - start
    metrics["startup_seconds"] = startup
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    log.info("wrote %s: checkpoint.pt metrics.json history.csv learning_curve.png %s", out, " ".join(figures))
    return metrics


@torch.no_grad()
def write_figures(vae: VAE, data: PreparedData, out: Path) -> list[str]:
    """Reconstructions, prior samples, the test set's latent means (scatter for z = 2, PCA above)
    and, for z = 2, the decoded manifold, as PNGs in ``out``; returns the file names."""
    from pyro_vae.plots import manifold_grid, plot_latent, plot_manifold, plot_reconstructions, plot_samples

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
