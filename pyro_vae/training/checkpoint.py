"""Checkpoints: everything needed to rebuild a trained VAE and its data, written atomically, read with their
checksum checked (what they must hold: checkpoint_schema.py)."""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import re
import warnings
import zipfile
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from pyro_vae.config import DataConfig, ModelConfig, TrainConfig
from pyro_vae.errors import UsageError
from pyro_vae.files import atomic_write, interrupts_deferred, require_regular
from pyro_vae.models.vae import VAE
from pyro_vae.training.checkpoint_schema import configs, schema_problem, train_state
from pyro_vae.training.state import Snapshot

FORMAT = "pyro_vae.checkpoint/1"
log = logging.getLogger("pyro_vae")
REQUIRED = ("model_config", "data_config", "train_config", "x_dim", "encoder", "decoder")  # what evaluation reads


def versions() -> dict[str, str]:
    """The versions of the packages a run used, from their installed metadata (importing
    torchvision only to read its version would add a second to every run)."""
    from importlib.metadata import PackageNotFoundError, version

    from pyro_vae import __version__

    found = {"pyro_vae": __version__, "torch": torch.__version__}
    for name, distribution in (("torchvision", "torchvision"), ("pyro", "pyro-ppl")):
        try:
            found[name] = version(distribution)
        except PackageNotFoundError:
            found[name] = "not installed"
    return {name: str(v) for name, v in found.items()}  # torch's is a TorchVersion, not a str


def save(path: str | Path, vae: VAE, optimizer: torch.optim.Optimizer, data_config: DataConfig,
         train_config: TrainConfig, snapshot: Snapshot | None = None, **extra: Any) -> None:
    """Write the checkpoint atomically (see files.atomic_write): an interruption or a full disk
    leaves either the old checkpoint or the new one, never half of one; Ctrl-C waits until the
    write is done. A checksum of everything it holds goes with it (see checksum).

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
        "image_shape": None if vae.image_shape is None else list(vae.image_shape),  # (C, H, W)
        **{part: {k.removeprefix(f"{part}."): v for k, v in weights.items() if k.startswith(f"{part}.")}
           for part in vae.parts},
        "optimizer": snapshot.optimizer if snapshot else optimizer.state_dict(),
        "versions": versions(),
        **extra,
    }
    if snapshot is not None:
        state["train_state"] = asdict(snapshot.state)
        state["epoch"] = snapshot.state.epoch
    state["checksum"] = checksum(state)
    with interrupts_deferred():  # a Ctrl-C inside torch's zip writer would become its RuntimeError
        buffer = io.BytesIO()  # serialized in memory, so that a full disk is an OSError of our own write
        torch.save(state, buffer)
        atomic_write(path, buffer.getvalue())


WHOLE = "sha256-all:"  # the prefix of a checksum over everything the checkpoint holds (0.1.0-0.2.0: tensors only)
ZIP_MAGIC = b"PK\x03\x04"  # how every file torch.save writes starts; its first entry is <name>/data.pkl


def checksum(state: Any, whole: bool = True) -> str:
    """SHA-256 of everything in ``state`` but the checksum itself, each value with its place and type: every
    tensor (dtype, shape and bytes: a flipped bit in a weight changes it, while torch.load would not notice)
    and every setting, number and string (a flip that turns `epochs` 2 into 10, or 'constant' into 'constanT',
    changes it too). ``whole=False``: the tensors alone, as checkpoints before WHOLE were summed."""
    digest = hashlib.sha256()

    def visit(value: Any, where: str) -> None:
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{where}:{value.dtype}:{tuple(value.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                if not (where == "" and key == "checksum"):
                    if whole:
                        digest.update(f"{where}/key:{type(key).__name__}:{key!r}".encode())
                    visit(value[key], f"{where}/{key}")
        elif isinstance(value, (list, tuple)):  # a tuple saved may load as a list: the same content
            if whole:
                digest.update(f"{where}:sequence:{len(value)}".encode())
            for i, item in enumerate(value):
                visit(item, f"{where}/{i}")
        elif whole:
            digest.update(f"{where}:{type(value).__name__}:{value!r}".encode())

    visit(state, "")
    return (WHOLE if whole else "") + digest.hexdigest()


# What the versions before WHOLE wrote: a checkpoint without a WHOLE checksum holds nothing newer (image_shape,
# and these configs' fields, came later), and names a version that wrote no checksum (0.1.0 before 3e84a7f) or
# the tensor-only one (0.1.0 and 0.2.0 until cdf948e)
SINCE_WHOLE = {"": ("image_shape",), "model_config": ("arch", "z2_dim"), "data_config": ("channels", "image_size",
                                                                                          "sha256"),
               "train_config": ("steps",)}
WROTE = {None: ("0.1.0",), "tensors": ("0.1.0", "0.2.0")}


def older_checksum_problem(state: dict, stored: str | None) -> str | None:
    """Why ``state``, whose checksum ``stored`` is not a WHOLE one, is no checkpoint of the versions that wrote
    such checksums (None: it may be one, and is loaded as one; its content is still checked by schema_problem)."""
    if isinstance(stored, str) and stored.startswith(WHOLE):
        return None
    kind = None if stored is None else "tensors"
    what = "no checksum" if stored is None else "a checksum of its tensors alone"
    newer = [name for part, names in SINCE_WHOLE.items() for name in names
             if name in (state if part == "" else state.get(part) or {})]
    if newer:
        return f"has {what}, as the checkpoints of pyro_vae {' and '.join(WROTE[kind])} had, but holds {newer[0]}, " \
               "which only later ones hold"
    version = (state.get("versions") or {}).get("pyro_vae") if isinstance(state.get("versions"), dict) else None
    if version not in WROTE[kind]:
        return f"has {what}, which pyro_vae {version} never wrote (only {' and '.join(WROTE[kind])} did)"
    return None


def zip_intact(path: Path) -> bool:
    """Whether ``path`` is a zip file (as torch.save writes) whose every entry matches its CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, zlib.error, NotImplementedError):
        return False


def read(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """The checkpoint dict at ``path``, tensors on ``device``; a UsageError if it is not one: missing, a folder,
    unreadable, corrupt (a torch file that does not load, or whose content does not match its checksum), or
    not a checkpoint at all."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"checkpoint {path} is a folder: pass the checkpoint.pt inside it")
    require_regular(path, "checkpoint")
    try:
        with open(path, "rb") as f:
            start = f.read(128)
    except FileNotFoundError:
        raise UsageError(f"checkpoint {path} does not exist: pass the checkpoint.pt that pyro-vae-train wrote in its "
                         "`out`") from None
    except OSError as error:
        raise UsageError(f"cannot read checkpoint {path} ({error.strerror or error})") from None
    try:
        with warnings.catch_warnings():  # a flipped protocol byte: the file is then said to be corrupt, in one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        found = re.search(r"(?:unsupported GLOBAL|Unsupported global:? GLOBAL) ([\w.]+)", str(error))
        # a name torch will not load, in a file whose zip checksums hold: put there, not a flipped bit of a name
        if isinstance(error, pickle.UnpicklingError) and found and zip_intact(path):
            raise UsageError(f"{path} is not a pyro_vae checkpoint, refused: it holds code or objects "
                             f"({found.group(1)}), and a checkpoint holds only tensors, "
                             "numbers and strings; do not load it elsewhere either unless you trust its source") \
                from None
        if start.startswith(ZIP_MAGIC) or b"/data.pkl" in start:  # a torch file (one flipped bit cannot hide both)
            raise UsageError(f"corrupt checkpoint: {path} is a damaged torch file that does not load "
                             f"({type(error).__name__}; truncated, or damaged on disk or in transfer): use another "
                             "copy, or train again") from None
        raise UsageError(
            f"{path} is not a pyro_vae checkpoint ({type(error).__name__}): pass a checkpoint.pt written by "
            "pyro-vae-train"
        ) from None
    stored = state.get("checksum") if isinstance(state, dict) else None  # checkpoints before 0.1.0's have none
    # summed before the marker is read: a bit flipped in the marker is damage the checksum sees, not a foreign file
    damaged = isinstance(stored, str) and checksum(state, stored.startswith(WHOLE)) != stored
    if not damaged and (not isinstance(state, dict) or state.get("format") != FORMAT):
        raise UsageError(f"{path} is not a pyro_vae checkpoint (no {FORMAT!r} marker): pass one written by "
                         "pyro-vae-train")
    if damaged or stored is not None and not isinstance(stored, str):
        raise UsageError(f"corrupt checkpoint: the content of {path} does not match the checksum stored with it "
                         "(damaged on disk or in transfer, or edited): use another copy, or train again")
    if problem := older_checksum_problem(state, stored):
        raise UsageError(f"corrupt checkpoint: {path} {problem}: its checksum was removed or replaced (edited); use "
                         "another copy, or train again")
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)}: it is not a whole pyro_vae checkpoint (edited or written "
                         "by other code); pass one written by pyro-vae-train")
    problem = schema_problem(state)
    if problem:
        raise UsageError(f"{path} is not a valid pyro_vae checkpoint: {problem} (edited, or written by other code); "
                         "pass one written by pyro-vae-train")
    return state


def check_compatible(vae: VAE, state: dict, path: str | Path = "the checkpoint") -> None:
    """A one-line UsageError when ``vae`` differs from the checkpoint's in likelihood, sizes or
    architecture (names every differing setting), before torch's load_state_dict could fail."""
    # a setting added since the checkpoint was written (guide, flow_layers) has the default it then had
    saved = dict(asdict(ModelConfig()), **state["model_config"], x_dim=state["x_dim"])
    saved["hidden"] = tuple(saved["hidden"])
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
    stopping (what evaluation should score); else the last epoch's (what a resumed run continues from).
    """
    check_compatible(vae, state)
    best = state.get("train_state", {}).get("best_params") if kept else None
    if best is not None:
        vae.load_state_dict(best)
        return
    for part in vae.parts:
        getattr(vae, part).load_state_dict(state[part])


def check_data(state: dict, data_used: DataConfig, name: str = "the checkpoint") -> None:
    """A UsageError when ``data_used`` (dataset after fallback, binarization resolved) is not the
    data the checkpoint was trained on."""
    old = state["data_config"]
    differ = [k for k in ("dataset", "binarize", "seed", "dequantize") if old.get(k, False) != getattr(data_used, k)]
    if old.get("sha256") != data_used.sha256 and "dataset" not in differ:
        raise UsageError(f"{name}: the images in {data_used.data_dir} changed since that run read them (their SHA-256 "
                         f"was {str(old.get('sha256'))[:12]}..., is {str(data_used.sha256)[:12]}...): resume on the "
                         "same images, or start a new run")
    if differ == ["dataset"] and old["dataset"] == "mnist5k" and data_used.dataset == "mnist":
        raise UsageError(f"{name}: that run trained on mnist5k, the offline subset it fell back to when MNIST was not "
                         "on disk, and MNIST is here now, so the same flags mean other data: pass `dataset=mnist5k` "
                         "to go on with the original data (or start a new run on MNIST)")
    if differ:
        raise UsageError(f"{name}: it was trained on " + ", ".join(f"{k}={old.get(k, False)!r}" for k in differ)
                         + " but this run asks for " + ", ".join(f"{k}={getattr(data_used, k)!r}" for k in differ)
                         + ": pass the settings of the original run")


def log_changed_training(state: dict, train_config: TrainConfig) -> None:
    """One logged line naming the training settings that differ from the checkpoint's (other
    than the number of epochs): allowed, but the run will differ from an uninterrupted one."""
    now = asdict(train_config)
    changed = [f"{k} {v} -> {now[k]}" for k, v in state["train_config"].items()
               if k in now and k != "epochs" and v != now[k]]
    if changed:
        log.info("resuming with changed training settings (%s): the run will differ from an uninterrupted one",
                 ", ".join(changed))


__all__ = ["FORMAT", "REQUIRED", "check_compatible", "check_data", "checksum", "configs", "log_changed_training",
           "read", "restore", "save", "schema_problem", "train_state", "versions"]
