"""Checkpoints: everything needed to rebuild a trained VAE and its data, written atomically."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pyro_vae.config import DataConfig, ModelConfig, TrainConfig
from pyro_vae.errors import UsageError
from pyro_vae.train import EpochRecord, Snapshot, TrainState
from pyro_vae.vae import VAE

FORMAT = "pyro_vae.checkpoint/1"


def versions() -> dict[str, str]:
    import pyro
    import torchvision

    from pyro_vae import __version__

    found = {"pyro_vae": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
             "pyro": pyro.__version__}
    return {name: str(version) for name, version in found.items()}  # torch's is a TorchVersion, not a str


def save(path: str | Path, vae: VAE, optimizer: torch.optim.Optimizer, data_config: DataConfig,
         train_config: TrainConfig, snapshot: Snapshot | None = None, **extra: Any) -> None:
    """Write the checkpoint to a temporary file beside ``path``, then rename it into place, so that
    an interruption leaves either the old checkpoint or the new one, never half of one.

    Saves ``snapshot`` (networks, optimizer and training state at the end of an epoch) when given,
    else the current weights and optimizer state of ``vae`` and ``optimizer``. ``data_config``
    should hold the dataset actually used and the resolved binarization, so that evaluation
    rebuilds the same test set.
    """
    weights = snapshot.vae if snapshot else vae.state_dict()
    state = {
        "format": FORMAT,
        "model_config": asdict(vae.config),
        "data_config": asdict(data_config),
        "train_config": asdict(train_config),
        "x_dim": vae.x_dim,
        **{part: {k.removeprefix(f"{part}."): v for k, v in weights.items() if k.startswith(f"{part}.")}
           for part in ("encoder", "decoder")},
        "optimizer": snapshot.optimizer if snapshot else optimizer.state_dict(),
        "versions": versions(),
        **extra,
    }
    if snapshot is not None:
        state["train_state"] = asdict(snapshot.state)
        state["epoch"] = snapshot.state.epoch
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def train_state(state: dict) -> TrainState:
    """The training state a checkpoint holds, to resume from; a UsageError when it holds none."""
    if "train_state" not in state:
        raise UsageError("this checkpoint holds no training state (written by an older pyro_vae or after training "
                         "ended without one): it can be evaluated but not resumed; start a new run")
    fields = dict(state["train_state"])
    fields["history"] = [EpochRecord(**record) for record in fields["history"]]
    fields.setdefault("schedule_epochs", state["train_config"]["epochs"])  # older checkpoints: the run's --epochs
    return TrainState(**fields)


def read(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """The checkpoint dict at ``path``, tensors on ``device``; a UsageError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist: pass the checkpoint.pt that train_svi.py wrote in its --out")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise UsageError(
            f"{path} is not a pyro_vae checkpoint ({type(error).__name__}): pass a checkpoint.pt written by train_svi.py"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"{path} is not a pyro_vae checkpoint (no {FORMAT!r} marker): pass one written by train_svi.py")
    return state


def configs(state: dict) -> tuple[ModelConfig, DataConfig]:
    """The model config and the data config as used in training (dataset and binarization resolved)."""
    model = state["model_config"]
    data = dict(state["data_config"])
    if data.get("binarize") == "static":  # its old name, in earlier checkpoints: thresholding at 0.5
        data["binarize"] = "threshold"
    return ModelConfig(**{**model, "hidden": tuple(model["hidden"])}), DataConfig(**data)


def check_compatible(vae: VAE, state: dict, path: str | Path = "the checkpoint") -> None:
    """A one-line UsageError when ``vae`` differs from the checkpoint's in likelihood, sizes or
    architecture (names every differing setting), before torch's load_state_dict could fail."""
    saved = dict(state["model_config"], hidden=tuple(state["model_config"]["hidden"]), x_dim=state["x_dim"])
    current = dict(asdict(vae.config), x_dim=vae.x_dim)
    differ = [key for key in sorted(saved.keys() | current.keys()) if saved.get(key) != current.get(key)]
    if differ:
        raise UsageError(
            f"{path} was trained with " + ", ".join(f"{k}={saved.get(k)!r}" for k in differ)
            + " but this model has " + ", ".join(f"{k}={current.get(k)!r}" for k in differ)
            + ": pass the same settings as the checkpoint (or train a new model)"
        )


def restore(vae: VAE, state: dict, kept: bool = True) -> None:
    """Load the checkpoint's network weights into ``vae`` (built from the same config).

    ``kept``: the model the run kept, i.e. the best-validation epoch's weights under early
    stopping (what evaluation should score); else the last epoch's (what --resume continues from).
    """
    check_compatible(vae, state)
    best = state.get("train_state", {}).get("best_params") if kept else None
    if best is not None:
        vae.load_state_dict(best)
        return
    vae.encoder.load_state_dict(state["encoder"])
    vae.decoder.load_state_dict(state["decoder"])
