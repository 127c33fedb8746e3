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
         train_config: TrainConfig, **extra: Any) -> None:
    """Write the checkpoint to a temporary file beside ``path``, then rename it into place, so that
    an interruption leaves either the old checkpoint or the new one, never half of one.

    ``data_config`` should hold the dataset actually used and the resolved binarization, so that
    evaluation rebuilds the same test set.
    """
    state = {
        "format": FORMAT,
        "model_config": asdict(vae.config),
        "data_config": asdict(data_config),
        "train_config": asdict(train_config),
        "x_dim": vae.x_dim,
        "encoder": vae.encoder.state_dict(),
        "decoder": vae.decoder.state_dict(),
        "optimizer": optimizer.state_dict(),
        "versions": versions(),
        **extra,
    }
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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
    return ModelConfig(**{**model, "hidden": tuple(model["hidden"])}), DataConfig(**state["data_config"])


def restore(vae: VAE, state: dict) -> None:
    """Load the checkpoint's network weights into ``vae`` (built from the same config)."""
    vae.encoder.load_state_dict(state["encoder"])
    vae.decoder.load_state_dict(state["decoder"])
