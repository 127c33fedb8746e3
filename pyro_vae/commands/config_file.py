"""Flags from a file, for ``--config FILE`` of every command: TOML, or a run's metrics.json.

A TOML file holds ``flag = value`` lines, the flag without its dashes (``eval-samples = 100`` or
``eval_samples = 100``; lists for comma-separated flags, ``hidden = [200, 200]``; ``true`` for a switch).
The tables ``[model]``, ``[data]``, ``[train]`` and ``[run]`` hold the fields of the configs, as the
``config`` block of a run's metrics.json does: that block, saved as TOML, or the metrics.json itself,
repeats the run. The file's flags come before the command line's, so the command line wins.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from pyro_vae.commands.cli import first_process
from pyro_vae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from pyro_vae.errors import UsageError
from pyro_vae.files import require_regular

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_TABLES = ("model", "data", "train", "run")  # metrics.json's config block: the dataclasses of config.py
# the settings of a run (its tables) that mean the same to the commands that read its checkpoint; its other settings
# (the model, the data's preparation, training) are in the checkpoint, and a run's seed seeded training, not them
SHARED_RUN_SETTINGS = ("data_dir", "no_download", "device", "eval_samples")
RUN_CONFIGS = (ModelConfig, DataConfig, TrainConfig, RunConfig)
log = logging.getLogger("pyro_vae")


def read(path: str | Path) -> dict[str, Any]:
    """The settings in ``path``: a TOML file, or the ``config`` block of a run's metrics.json."""
    path = Path(path)
    require_regular(path, "the config file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some Windows editors write, is not TOML
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the config file {path} ({getattr(error, 'strerror', None) or error}): "
                         "pass a TOML file, or a run's metrics.json") from None
    if path.suffix.lower() == ".json":
        try:
            config = json.loads(text)["config"]
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{path} is not a run's metrics.json (no config block): pass the metrics.json that "
                             "pyro-vae-train wrote, or a TOML file") from None
    else:
        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise UsageError(f"{path} is not TOML ({error}): write one `flag = value` per line") from None
        except RecursionError:  # tables or arrays nested thousands deep
            raise UsageError(f"{path}: its values are nested too deeply to read: write one `flag = value` per "
                             "line") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path}: expected settings by name, got {type(config).__name__}")
    return config


def flattened(config: dict[str, Any], where: str | Path = "the config") -> tuple[dict[str, Any], set[str]]:
    """Flags by name from ``config``, its [model]/[data]/[train]/[run] tables (metrics.json's fields) mapped to
    the flags that set them; other keys are flags already. Also the names that came from those tables: a run's
    settings. A flag set twice (a key and the same key in a table) is a UsageError naming ``where``: which of
    the two was meant is not for the reader to guess."""
    flags: dict[str, Any] = {}
    from_run: set[str] = set()
    for key, value in config.items():
        in_table = key in CONFIG_TABLES and isinstance(value, dict)
        given = _fields_as_flags(key, value, where) if in_table else {key: value}
        for name, setting in given.items():
            if name.replace("-", "_") in {k.replace("-", "_") for k in flags}:
                raise UsageError(f"{where}: '{name}' is set twice (at the top and in a table, or in two tables): "
                                 "keep one")
            flags[name] = setting
            if in_table:
                from_run.add(name)
    return flags, from_run


def _fields_as_flags(table: str, fields: dict[str, Any], where: str | Path) -> dict[str, Any]:
    fields = dict(fields)
    if table == "model" and fields.get("z2_dim"):  # two stochastic layers: --latents Z1,Z2 (not with --z-dim)
        if "z_dim" not in fields:
            raise UsageError("[model] z2_dim = ... (a second stochastic layer) needs z_dim, the first's size; or "
                             "write latents = [Z1, Z2]")
        fields["latents"] = [fields.pop("z_dim"), fields.pop("z2_dim")]
    fields.pop("z2_dim", None)  # 0: one layer, --z-dim alone
    if table == "train" and fields.get("steps"):  # a run of N steps: --steps N, its epochs followed from them
        fields.pop("epochs", None)
    elif table == "train":
        fields.pop("steps", None)  # 0: --epochs
    if table == "data":
        fields.pop("sha256", None)  # measured on the data used, not a setting
        if "download" in fields:
            if not isinstance(fields["download"], bool):  # "no" is a true string: downloads stayed on
                raise UsageError(f"{where}: [data] download = {fields['download']!r}: write download = true or false")
            fields["no_download"] = not fields.pop("download")
        # the default run (fallback) names no dataset: it is mnist, falling back to mnist5k offline
        if fields.pop("fallback", False) and fields.get("dataset") == "mnist":
            del fields["dataset"]
    return fields


def flags_from(path: str | Path, parser: argparse.ArgumentParser) -> list[str]:
    """The command-line words that set the flags in ``path`` for ``parser``; a setting ``parser`` has not, or a
    value its flag refuses, is one UsageError naming the file and the setting."""
    by_name: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            by_name[action.dest] = action
            for option in action.option_strings:
                by_name[option.lstrip("-").replace("-", "_")] = action
    flags, from_run = flattened(read(path), path)
    reads_a_checkpoint = "checkpoint" in by_name
    if reads_a_checkpoint and from_run:  # a run's settings, given to a command that reads its checkpoint
        flags = _for_a_trained_run(path, flags, from_run, set(by_name))
    words: list[str] = []
    for key, value in flags.items():
        found = by_name.get(key.replace("-", "_"))
        if found is None or found.dest in ("config", "help"):
            raise UsageError(f"{path}: '{key}' is not a setting of {parser.prog} (see {parser.prog} --help)")
        words += _words(path, key, value, found)
    return words


def _for_a_trained_run(path: str | Path, flags: dict[str, Any], from_run: set[str], has: set[str]) -> dict[str, Any]:
    """Of a run's settings (``from_run``), those that mean the same to a command reading its checkpoint
    (SHARED_RUN_SETTINGS) and that it ``has``, with the checkpoint.pt beside a metrics.json; the others, said in
    one line, are left to the checkpoint. A key of a table that is no setting of a run at all stays an error (a
    misspelling)."""
    known = {"latents", "no_download"} | {field.name for config in RUN_CONFIGS for field in fields(config)}
    unknown = sorted(name for name in from_run if name.replace("-", "_") not in known)
    if unknown:
        raise UsageError(f"{path}: '{unknown[0]}' is not a setting of a run (see pyro-vae-train --help)")
    kept = {name: value for name, value in flags.items()
            if name not in from_run or name.replace("-", "_") in set(SHARED_RUN_SETTINGS) & has}
    if "eval_samples" in from_run and kept.get("eval_samples") == 0:  # a run that skipped its final estimate
        del kept["eval_samples"]
    checkpoint = Path(path).with_name("checkpoint.pt")
    if Path(path).suffix.lower() == ".json" and "checkpoint" not in kept and checkpoint.is_file():
        kept["checkpoint"] = str(checkpoint)
    if first_process():
        left = sorted(set(flags) - set(kept))
        taken = ", ".join(f"{name} = {value}" for name, value in kept.items()
                          if name in from_run or name == "checkpoint")
        log.info("%s: a run's settings: took %s; left the other %d (%s) to the checkpoint", path,
                 taken or "none", len(left), ", ".join(left))
    return kept


def _words(path: str | Path, key: str, value: Any, action: argparse.Action) -> list[str]:
    flag = action.option_strings[0]
    if action.nargs == 0:  # a switch
        if not isinstance(value, bool):
            raise UsageError(f"{path}: '{key}' is a switch: write {key} = true or false, not {value!r}")
        return [flag] if value else []
    if value is None or value is False and action.nargs == "?":
        return []  # not given: the flag's default
    if isinstance(value, bool):
        raise UsageError(f"{path}: '{key}' takes a value, not {str(value).lower()}")
    if isinstance(value, dict):
        raise UsageError(f"{path}: '{key}' takes a value, not a table")
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    if action.nargs == "?" and text == "":
        return [flag]  # e.g. resume = "": the flag alone
    try:
        converted = action.type(text) if callable(action.type) else text
    except (argparse.ArgumentTypeError, ValueError, TypeError) as error:
        raise UsageError(f"{path}: '{key}' = {value!r}: {error}") from None
    if action.choices is not None and converted not in action.choices:
        raise UsageError(f"{path}: '{key}' = {value!r}: choose one of {', '.join(map(str, action.choices))}")
    return [f"{flag}={text}"]  # one word: a value that starts with "-" is not taken for a flag
