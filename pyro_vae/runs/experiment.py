"""A whole run: data -> VAE -> training -> evaluation -> files. What train_svi.py calls.

Distribution, output files and resuming wrap the library here: train.fit and the estimators
take tensors; this module holds the run folder (run_folder.py), builds the VAE on this process's
device, restores a checkpoint, and has the report written by one process (report.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyro
import torch

from pyro_vae.config import DEVICES, DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.data.datasets import load_dataset
from pyro_vae.data.pixels import PreparedData, continuous_pixels, likelihood_for, prepare_data
from pyro_vae.errors import OutputError, TrainingDiverged, TrainingInterrupted, UsageError
from pyro_vae.evaluation.bounds import CHUNK_SIZE, images_per_pass, require_bounds_memory
from pyro_vae.evaluation.memory import FLOAT, parameter_count, require_memory, training_bytes
from pyro_vae.inference.objectives import make_elbo, objective_name
from pyro_vae.models.vae import VAE
from pyro_vae.runs import report
from pyro_vae.runs.run_folder import continues, owned_run_folder, remove_results_of, run_folder
from pyro_vae.training import checkpoint
from pyro_vae.training.distributed import SINGLE, Context
from pyro_vae.training.loop import fit, forget_networks, make_optimizer
from pyro_vae.training.schedule import epochs_of_steps, too_few_steps
from pyro_vae.training.state import EpochRecord, Snapshot, TrainState

log = logging.getLogger("pyro_vae")

REMEDIES = "try a lower `lr`, `elbo=meanfield` (analytic KL), or for the gaussian likelihood a larger `scale_floor`"


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when torch sees a GPU, else CPU."""
    if name not in DEVICES:
        raise UsageError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("`device=cuda`: torch sees no CUDA device (torch.cuda.is_available() is False); "
                         "use `device=cpu` or `device=auto`")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build(
    model_config: ModelConfig, data_config: DataConfig, device: torch.device, new: bool = True
) -> tuple[VAE, PreparedData, DataConfig]:
    """Load the data, choose the likelihood for it (pixels.likelihood_for), and build the VAE on ``device``.
    A ``new`` model's continuous likelihood gets dequantized 8-bit pixels and is refused on binary ones
    (pixels.continuous_pixels); a trained one (``new`` False) gets its data as it was trained on.

    Also returns the data config as actually used (the dataset after any fallback, binarization and
    dequantization resolved): what a checkpoint records so that evaluation rebuilds the same test set.
    """
    dataset = load_dataset(data_config.dataset, data_config.data_dir, data_config.download, data_config.seed,
                           data_config.fallback, data_config.channels, data_config.image_size)
    if not new and data_config.sha256 is not None and dataset.sha256 != data_config.sha256:
        raise UsageError(f"{data_config.data_dir}: the images changed since the model was trained on them (their "
                         f"SHA-256 was {data_config.sha256[:12]}..., is {(dataset.sha256 or '')[:12]}...): "
                         "evaluate on the images it was trained on (`data_dir`)")
    likelihood, binarize = likelihood_for(model_config, data_config.binarize, dataset.is_binary, dataset.image_shape)
    dequantize = data_config.dequantize
    if new:
        dequantize = continuous_pixels(likelihood, binarize, dataset, dequantize)
    data = prepare_data(dataset, likelihood, binarize, data_config.seed, device, dequantize)
    x_dim = dataset.train.shape[1]
    weights = parameter_count(model_config, x_dim, likelihood.params_per_pixel, dataset.image_shape)
    iaf = f" and {model_config.flow_layers} IAF layers" if model_config.guide == "iaf" else ""
    require_memory(FLOAT * weights, device, f"a VAE with z_dim={model_config.z_dim} and hidden="
                   f"{','.join(map(str, model_config.hidden))}{iaf} ({weights:,} parameters)",
                   "choose a smaller `z_dim` or `hidden`" + (" or fewer `flow_layers`" if iaf else ""))
    vae = VAE(x_dim, model_config, likelihood, dataset.image_shape).to(device)
    return vae, data, replace(data_config, dataset=dataset.name, binarize=binarize, dequantize=dequantize,
                              sha256=dataset.sha256)


def load_run(path: str | Path, device: str = "auto", data_dir: str | None = None) -> tuple[VAE, PreparedData, dict]:
    """The trained VAE of a checkpoint (eval mode), its data rebuilt as in training, and the
    checkpoint dict. ``data_dir`` overrides where the data is read from."""
    torch_device = resolve_device(device)
    state = checkpoint.read(path, torch_device)
    model_config, data_config = checkpoint.configs(state)
    if data_dir is not None:
        data_config = replace(data_config, data_dir=data_dir)
    vae, data, _ = build(model_config, data_config, torch_device, new=False)
    checkpoint.restore(vae, state)
    if not all(torch.isfinite(p).all() for p in vae.parameters()):  # a NaN weight made every figure a traceback
        raise UsageError(f"{path}: its network weights hold NaN or infinite values (a diverged or damaged run): use "
                         "another checkpoint, or train again")
    # an earlier VAE of this process (trained or loaded) would shadow this one's parameters in Pyro's param
    # store under the same names: what tools that read the store see (local_guide_elbo, Pyro's JIT)
    forget_networks()
    return vae.eval(), data, state


def run_training(
    model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig, out: str | Path,
    run_config: RunConfig | None = None, *, progress: bool = True, resume: str | Path | None = None,
    checkpoint_every: int = 1, context: Context = SINGLE, tensorboard: str | Path | None = None,
    overwrite: bool = False, started: float | None = None, after_startup: Callable[[], None] | None = None,
    callback: Callable[[EpochRecord, VAE, PreparedData], None] | None = None,
) -> dict[str, Any]:
    """Train, evaluate on the test set, and write checkpoint.pt, metrics.json, history.csv and
    PNG figures into ``out``. Returns the metrics. Seeds are the caller's to set.

    checkpoint.pt is rewritten (atomically) every ``checkpoint_every`` epochs and after the last;
    ``resume`` names a checkpoint to go on from (same model and data; see Run.start).
    ``out`` must not hold another run unless ``overwrite`` (see run_folder.check_run_folder), and no
    other process may write into it meanwhile. ``context``: data-parallel training and evaluation
    over torchrun's processes; rank 0 alone writes files (see distributed.py). ``tensorboard``: a
    folder for TensorBoard event files (see tensorboard.py), continued across resumes. ``started``:
    time.perf_counter() when the process began (the scripts pass it), so that the log and
    metrics.json say how long start-up took; default: now. ``after_startup`` is called once the
    model, data and optimizer are built, before the first step (the scripts end their start-up's
    pause of the garbage collector there: cli.startup_done). ``callback`` sees each epoch's record,
    the VAE and its data.
    """
    start = time.perf_counter() if started is None else started
    run_config = run_config or RunConfig()
    # refuses a bad pairing (e.g. jit with iwae, meanfield with a flow guide) before any work
    make_elbo(train_config.elbo, train_config.num_particles, train_config.jit, model_config.guide,
              2 if model_config.z2_dim else 1)
    resume_path = Path(resume) if resume is not None else None
    board_folder = None if tensorboard is None else Path(tensorboard)
    # a TensorBoard folder it cannot use, or another run's, is one line before start-up; a failed start leaves
    # no folder behind
    with run_folder(out, context) as folder, owned_run_folder(folder, resume_path, overwrite, context, board_folder):
        run = Run.start(model_config, data_config, train_config, run_config, folder, resume_path, context)
        if context.is_main and continues(folder, resume_path):
            remove_results_of(folder)  # the resume is allowed: the checkpoint they measured is about to change
        startup = time.perf_counter() - start
        log.info("start-up %.1f s (imports, data, model); training starts", startup)
        if after_startup is not None:
            after_startup()
        board = run.tensorboard(tensorboard) if tensorboard is not None and context.is_main else None

        def on_epoch(record: EpochRecord) -> None:
            if board is not None:
                board.epoch(record, objective_name(train_config.elbo, train_config.num_particles), run.vae, run.data)
            if callback is not None:
                callback(record, run.vae, run.data)

        # build() checked the data's support once; Pyro's checks of every distribution's arguments would
        # pass over every minibatch again (a noticeable share of a CPU epoch). A NaN still stops training
        # (train_epoch's check of the loss).
        with pyro.validation_enabled(False):
            state = run.train(progress, checkpoint_every, on_epoch)
            try:
                final = report.final_numbers(run.vae, run.data, state, train_config, run_config.eval_samples,
                                             context, progress)
                if board is not None:
                    board.final(final, len(state.history), run.vae, run.data)
                    board.close()
                metrics = report.metrics(final, state, run.data, report.configs(model_config, data_config,
                                         train_config, run_config), run.data_used, context.world_size)
                if context.is_main:
                    also = [] if board is None else [f"{shown(board.log_dir, folder)}/"]  # named in the closing line
                    report.write_report(run.vae, run.data, state, metrics, folder, start, startup, also)
                return metrics
            except KeyboardInterrupt:
                raise TrainingInterrupted(state.epoch, f"interrupted during the final evaluation: all {state.epoch} "
                                          f"epochs are saved in {run.path}; evaluate it with scripts/evaluate.py "
                                          f"`checkpoint={run.path}`") from None


def shown(path: Path, folder: Path) -> str:
    """``path`` as a log line names it: relative to the run ``folder`` when inside it."""
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return str(path)


@dataclass
class Run:
    """A run between its start and its report: the VAE on this process's device, its data and
    optimizer, the training state to go on from, and where its checkpoint goes."""

    model_config: ModelConfig
    train_config: TrainConfig
    run_config: RunConfig
    data_used: DataConfig  # the dataset after any fallback, binarization resolved
    vae: VAE
    data: PreparedData
    optimizer: torch.optim.Optimizer
    state: TrainState | None  # None: a fresh start
    resume: Path | None
    path: Path  # <out>/checkpoint.pt
    context: Context

    @classmethod
    def start(cls, model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig,
              run_config: RunConfig, out: Path, resume: Path | None, context: Context) -> Run:
        """Build the VAE and its data on this process's device and restore ``resume``: a UsageError
        when it holds another model, other data, or more epochs than this run asks for; a logged
        line for changed training settings (allowed, e.g. a lower lr after a divergence)."""
        device = resolve_device(run_config.device)
        if context.distributed and device.type == "cuda":
            device = torch.device("cuda", torch.cuda.current_device())  # this process's GPU (distributed.init)
        saved = checkpoint.read(resume, device) if resume is not None else None
        vae, data, data_used = build(model_config, data_config, device)
        train_config = epochs_of_steps(train_config, len(data.train))
        if data_used.dataset != data_config.dataset:
            log.info("dataset used: %s (%d training, %d validation, %d test images)", data_used.dataset,
                     len(data.train), len(data.valid), len(data.test))
        batch = min(train_config.batch_size, len(data.train))  # a minibatch holds at most the training set
        require_memory(training_bytes(vae, batch, train_config.num_particles), device,
                       f"a training step with `batch_size={train_config.batch_size}` and "
                       f"`num_particles={train_config.num_particles}`", "lower them (or `hidden`, `z_dim`)")
        if run_config.eval_samples:  # the final estimate, refused now rather than after the training
            require_bounds_memory(vae, vae.x_dim, len(data.test), run_config.eval_samples,
                                  images_per_pass(run_config.eval_samples, at_least=100), CHUNK_SIZE, device,
                                  "eval_samples", sizes_settable=False)
        optimizer = make_optimizer(vae.parameters(), train_config.lr)
        state = None
        if saved is not None and resume is not None:
            checkpoint.check_compatible(vae, saved, f"`resume={resume}`")
            checkpoint.check_data(saved, data_used, f"`resume={resume}`")
            checkpoint.log_changed_training(saved, train_config)
            state = checkpoint.train_state(saved)
            if state.epoch > train_config.epochs:
                raise UsageError(f"`resume={resume}`: it holds {state.epoch} epochs, more than "
                                 f"`epochs={train_config.epochs}`: pass `epochs={state.epoch}` or more")
            checkpoint.restore(vae, saved, kept=False)
            optimizer.load_state_dict(saved["optimizer"])
            log.info("resuming %s after epoch %d of %d", resume, state.epoch, train_config.epochs)
        elif run_config.init_output_bias:
            vae.init_output_bias(data.train)
        if state is None and context.is_main and (short := too_few_steps(len(data.train), train_config)):
            log.warning(short)  # after every refusal: a run that cannot start says one line
        return cls(model_config, train_config, run_config, data_used, vae, data, optimizer, state, resume,
                   out / "checkpoint.pt", context)

    def tensorboard(self, folder: str | Path) -> Any:
        from pyro_vae.runs.tensorboard import TensorBoardWriter  # optional dependency: imported when asked for

        board = TensorBoardWriter(folder, resumed_epoch=self.state.epoch if self.state else 0)
        board.config(report.configs(self.model_config, self.data_used, self.train_config, self.run_config))
        return board

    def train(self, progress: bool, checkpoint_every: int, callback: Callable[[EpochRecord], None]) -> TrainState:
        """train.fit, rank 0 saving each snapshot; its failures say where the last good epoch is."""
        written: list[int] = []  # the epochs this run wrote into ``path``

        def save(snapshot: Snapshot) -> None:
            checkpoint.save(self.path, self.vae, self.optimizer, self.data_used, self.train_config, snapshot=snapshot)
            written.append(snapshot.state.epoch)

        def last_good() -> tuple[Path, int] | None:
            """The checkpoint holding the last completed epoch, and that epoch."""
            if written:
                return self.path, written[-1]
            return (self.resume, self.state.epoch) if self.state is not None and self.resume is not None else None

        try:
            return fit(self.vae, self.optimizer, self.data, self.train_config, progress, callback=callback,
                       state=self.state, save=save if self.context.is_main else None, save_every=checkpoint_every,
                       context=self.context)
        except TrainingDiverged as error:
            good = last_good()
            after = (f"the last good checkpoint, {good[0]}, holds epoch {good[1]}; {REMEDIES}, and pass "
                     f"{'`resume`' if good[0] == self.path else f'`resume={good[0]}`'} to go on from it" if good
                     else f"no checkpoint was written yet; {REMEDIES}")
            raise TrainingDiverged(f"training diverged: {error}; {after}", error.epoch, error.step) from None
        except TrainingInterrupted as error:
            good = last_good()
            where = (f"epoch {good[1]} is saved in {good[0]}; to go on, run the same command with `resume`" if good
                     else "no epoch was completed, nothing saved")
            raise TrainingInterrupted(error.epoch, f"interrupted: {where}") from None
        except OutputError as error:
            good = last_good()
            kept = f"{good[0]} still holds epoch {good[1]}" if good else "no checkpoint was written"
            raise OutputError(f"{error}; {kept}: make room (or fix the folder) and run the same command"
                              f"{' with `resume`' if good else ''}", error.path) from None
