"""The import paths of 0.1.0, when every module sat in one flat folder, kept working for one release.

``import pyro_vae.estimators`` (or ``from pyro_vae.train import fit``) imports the module at its new path,
pyro_vae.inference.estimators, and binds the same module object to the old name, with a DeprecationWarning
that names the new path. The two names are one module, so a monkeypatch through either is seen by both.
``pyro_vae.data`` and ``pyro_vae.evaluation`` are packages now; their ``__init__`` forwards the old
modules' names (see ``forward``). CHANGELOG.md lists the moves; 0.3.0 removes this module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

MOVED = {  # old module (under pyro_vae.) -> new module
    "networks": "models.networks", "distributions": "models.distributions", "likelihoods": "models.likelihoods",
    "model": "models.model", "guide": "models.guide", "vae": "models.vae",
    "estimators": "inference.estimators", "iwae": "inference.iwae", "ais": "inference.ais",
    "objectives": "inference.objectives",
    "readers": "data.readers", "pixels": "data.pixels", "memory": "evaluation.memory",
    "train": "training.loop", "schedule": "training.schedule", "state": "training.state",
    "checkpoint": "training.checkpoint", "distributed": "training.distributed",
    "experiment": "runs.experiment", "report": "runs.report", "run_folder": "runs.run_folder",
    "plots": "runs.plots", "tensorboard": "runs.tensorboard", "cli": "commands.cli",
}


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new} in pyro_vae 0.2.0; the old path stops working in 0.3.0 (CHANGELOG.md)",
                  DeprecationWarning, stacklevel=3)


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``pyro_vae.<old>`` and loads it as the module at its new path."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != "pyro_vae" or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = "pyro_vae." + MOVED[spec.name.rpartition(".")[2]]
        _warn(spec.name, new)
        return importlib.import_module(new)  # its __name__ and __spec__ stay the new path's

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module at the new path is already executed."""


def install() -> None:
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())


def forward(old: str, new: str, names: Iterable[str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` that answers the old module ``old``'s public ``names`` from ``new``."""
    known = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name not in known:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        _warn(f"{old}.{name}", f"{new}.{name}")
        return getattr(importlib.import_module(new), name)

    return __getattr__
