"""What a checkpoint must hold (schema_problem: every part a resume or an evaluation reads, of the right type and
shape), and the typed values read from it: the configs and the training state."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from pyro_vae.config import DataConfig, ModelConfig, TrainConfig
from pyro_vae.errors import UsageError
from pyro_vae.evaluation.memory import parameter_count
from pyro_vae.models.likelihoods import make_likelihood
from pyro_vae.models.vae import VAE
from pyro_vae.training.state import EpochRecord, TrainState


def train_state(state: dict) -> TrainState:
    """The training state a checkpoint holds, to resume from; a UsageError when it holds none."""
    if "train_state" not in state:
        raise UsageError("this checkpoint holds no training state (written by an older pyro_vae or after training "
                         "ended without one): it can be evaluated but not resumed; start a new run")
    fields = dict(state["train_state"])
    fields["history"] = [EpochRecord.from_dict(record) for record in fields["history"]]
    fields.setdefault("schedule_epochs", state["train_config"]["epochs"])  # older checkpoints: the run's epochs
    if "optimizer" not in state:
        raise UsageError("this checkpoint holds no optimizer state: it can be evaluated but not resumed")
    return _build(TrainState, fields, "train_state")


def _build(cls: type, fields: dict, part: str) -> Any:
    """``cls(**fields)``, or a UsageError naming the settings this version does not know."""
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise UsageError(f"the checkpoint's {part} holds settings this pyro_vae does not know ({', '.join(unknown)}): "
                         "it was written by a newer version or edited; evaluate it with the version that wrote it")
    try:
        return cls(**fields)
    except (TypeError, ValueError) as error:
        raise UsageError(f"the checkpoint's {part} is not valid ({error})") from None


def schema_problem(state: dict) -> str | None:
    """What is wrong with a checkpoint's parts, checked once on load so that no later step meets it as a
    traceback: the configs; weights that the model its configs describe cannot take (a missing or mis-shaped
    tensor, an edited z_dim); the epoch; the training state's history, best parameters and random states.
    None when nothing is."""
    try:
        model_config, _ = configs(state)
        _build(TrainConfig, dict(state["train_config"]), "train_config")
    except UsageError as error:
        return str(error)
    except (TypeError, AttributeError):
        return "its configs are not tables of settings"
    x_dim = state["x_dim"]
    if isinstance(x_dim, bool) or not isinstance(x_dim, int) or x_dim < 1:
        return f"x_dim is {x_dim!r}, not a positive integer"
    shape = state.get("image_shape")
    if problem := _size_problem(state, model_config, x_dim, shape):
        return problem
    try:
        built = VAE(x_dim, model_config, image_shape=shape)
    except UsageError as error:
        return str(error)
    expected = built.state_dict()
    for part in built.parts:
        prefix = f"{part}."
        if problem := _weights_problem(state.get(part), {k.removeprefix(prefix): v for k, v in expected.items()
                                                         if k.startswith(prefix)}, f"the {part}"):
            return problem
    if "epoch" in state and not _count(state["epoch"]):
        return f"its epoch is {state['epoch']!r}, not a count of epochs"
    train = state.get("train_state")
    if train is None:
        return None
    if not isinstance(train, dict) or not _count(train.get("epoch", 0)):
        return "its train_state has no valid epoch"
    try:
        history = [EpochRecord.from_dict(record) for record in train.get("history", [])]
    except (TypeError, AttributeError):
        return f"a record of its history lacks a field or holds an unknown one (a record has {EPOCH_FIELDS})"
    if any(not _count(r.epoch) or not all(isinstance(v, (int, float)) for v in (r.train_bound, r.valid_bound))
           for r in history):
        return "a record of its history holds a value that is not a number"
    if train.get("best_params") is not None and (problem := _weights_problem(train["best_params"], expected,
                                                                              "the best epoch's parameters")):
        return problem
    return _rng_problem(train.get("rng"))


def _size_problem(state: dict, model_config: ModelConfig, x_dim: int, shape: Any) -> str | None:
    """Settings that describe far more parameters than the checkpoint holds tensors for (an edited hidden, z_dim or
    x_dim of 1e9): said before the model they describe is built, which would not fit in memory. A checkpoint's
    tensors (weights and buffers) hold at least as many numbers as its model has parameters; a model at most
    SMALL_MODEL beyond that is built, and the weights that do not fit it are named (_weights_problem)."""
    try:
        per_pixel = make_likelihood(model_config, image_shape=None if shape is None else tuple(shape)).params_per_pixel
        declared = parameter_count(model_config, x_dim, per_pixel, None if shape is None else tuple(shape))
    except (UsageError, ValueError, TypeError, RuntimeError):
        return None  # building the VAE says what is wrong
    held = sum(value.numel() for part in VAE_PARTS if isinstance(state.get(part), dict)
               for value in state[part].values() if isinstance(value, torch.Tensor))
    if declared > 2 * held + SMALL_MODEL:
        return (f"its settings (x_dim={x_dim}, z_dim={model_config.z_dim}, hidden="
                f"{','.join(map(str, model_config.hidden))}) describe a VAE of {declared:,} parameters, and it holds "
                f"{held:,} numbers of weights")
    return None


SMALL_MODEL = 10**6  # parameters: 4 MB, built at once
VAE_PARTS = ("encoder", "decoder", "flow", "top_encoder", "top_decoder")  # VAE.parts, the most a VAE has
EPOCH_FIELDS = ", ".join(f.name for f in dataclasses.fields(EpochRecord))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _weights_problem(weights: Any, expected: dict[str, torch.Tensor], what: str) -> str | None:
    if not isinstance(weights, dict):
        return f"{what} are missing"
    missing = sorted(set(expected) - set(weights))
    unknown = sorted(set(weights) - set(expected))
    if missing or unknown:
        return f"{what}: {', '.join(missing)} missing" if missing else f"{what}: unknown {', '.join(unknown)}"
    for name, want in expected.items():
        got = weights[name]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.is_floating_point() != \
                want.is_floating_point():
            if isinstance(got, torch.Tensor) and got.shape == want.shape:
                return f"{what}: {name} holds {got.dtype} values, not {want.dtype} ones"
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            return (f"{what}: {name} is {shape}, and the model its settings describe (z_dim, hidden, likelihood, "
                    f"guide) needs {tuple(want.shape)}")
    return None


def _rng_problem(rng: Any) -> str | None:
    """Random states as state.rng_state() writes them (one, or one per process)."""
    if rng is None:
        return None
    for one in rng if isinstance(rng, list) else [rng]:
        torch_state = one.get("torch") if isinstance(one, dict) else None
        if not (isinstance(torch_state, torch.Tensor) and torch_state.dtype == torch.uint8
                and torch_state.shape == torch.get_rng_state().shape and "random" in one and "numpy" in one):
            return "its random states are not torch's, Python's and NumPy's as training saves them"
    return None


def configs(state: dict) -> tuple[ModelConfig, DataConfig]:
    """The model config and the data config as used in training (dataset and binarization resolved)."""
    model = state["model_config"]
    data = dict(state["data_config"])
    if data.get("binarize") == "static":  # its old name, in earlier checkpoints: thresholding at 0.5
        data["binarize"] = "threshold"
    return (_build(ModelConfig, {**model, "hidden": tuple(model.get("hidden", ()))}, "model_config"),
            _build(DataConfig, data, "data_config"))
