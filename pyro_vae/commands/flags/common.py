"""What every command's flags share: one flag per setting (SETTING_FLAGS), the names of before 0.3.0 (RENAMED),
and the flag groups several commands add (the checkpoint, the parts of a long evaluation, AIS). Built without
torch, Pyro or the data, as every module of this folder: ``--help`` and a bad flag answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pyro_vae.commands.cli import (
    positive_int,
    seed,
)
from pyro_vae.config import DEVICES

SETTING_FLAGS = {
    "eval_samples": "--eval-samples",  # K of the importance-sampled log p^(x)
    "images": "--images",  # how many images a command scores
    "images_per_pass": "--images-per-pass",  # images scored at once, and per saved part
    "ais_steps": "--ais-steps",  # annealed importance sampling: HMC transitions
    "ais_chains": "--ais-chains",  # chains per image
    "ais_leapfrog": "--ais-leapfrog",  # leapfrog steps per transition
    "no_progress": "--no-progress",
    "threads": "--threads",
    "config": "--config",
    "checkpoint": "--checkpoint",
    "data_dir": "--data-dir",
    "device": "--device",
    "seed": "--seed",
    "out": "--out",
    "resume": "--resume",
    "overwrite": "--overwrite",
}
# the flags of 0.2.0 that 0.3.0 renamed, per command: they still work until 0.4.0, hidden from --help
RENAMED = {
    "evaluate": {"--num-samples": "eval_samples", "--batch-size": "images_per_pass"},
    "bdmc": {"--iwae-samples": "eval_samples", "--num-images": "images", "--steps": "ais_steps",
             "--chains": "ais_chains", "--leapfrog": "ais_leapfrog", "--batch-size": "images_per_pass"},
    "sample": {"--steps": "interpolate_images"},  # renamed in 0.3.x: --steps is training's optimizer steps
    "gaps": {"--num-samples": "elbo_samples", "--num-images": "images", "--batch-size": "images_per_pass"},
}
# torch's default, a thread per core, made epochs several times slower on a 2-core machine with a busy core
# (docs/reference.md, Threads, has the timings)
DEFAULT_THREADS = 1


class Renamed(argparse.Action):
    """A flag's old name: sets the new flag's value and says, in one line, what the flag is called now."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"note: {option_string} is now {self.new} (the old name works until 0.4.0)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed(p: argparse.ArgumentParser, renamed: dict[str, str]) -> None:
    """The hidden old names of ``p``'s flags: ``renamed`` maps each to the destination of its new flag."""
    actions = {action.dest: action for action in p._actions}
    for old, dest in renamed.items():
        action = actions[dest]
        assert callable(action.type), f"{old}: its new flag's values have a type"
        p.add_argument(old, dest=dest, type=action.type, nargs=action.nargs, action=Renamed,
                       new=action.option_strings[0], default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def image_size(text: str) -> tuple[int, int]:
    """'32' or '40,32' -> (32, 32) or (40, 32): height and width."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected a height, or a height and a width, like 32 or 40,32, got {text!r}")
    return values[0], values[-1]


def add_common(p: argparse.ArgumentParser, progress: bool, example: str, trains: bool = False) -> None:
    """What every command has: --config (``example``: two of the command's own flag = value lines), --threads
    and, where a bar shows progress, --no-progress. ``trains``: the command that a run's metrics.json repeats."""
    run_config = ("a run's metrics.json, whose config block repeats that run" if trains else
                  "a run's metrics.json: its checkpoint, --data-dir, --device and --eval-samples (the rest, training's "
                  "settings, is in the checkpoint)")
    p.add_argument("--config", metavar="FILE",
                   help=f"read flags from FILE: a TOML file of flag = value lines (e.g. {example}), or {run_config}; "
                        "flags given here win")
    p.add_argument("--threads", type=positive_int, default=None,
                   help=f"torch CPU threads per process (default: {DEFAULT_THREADS}, or OMP_NUM_THREADS when set; "
                        "more threads than free cores slow the work down), at most the cores there are")
    if progress:
        p.add_argument("--no-progress", action="store_true",
                       help="no progress bar (there is none when stderr is not a terminal, e.g. in a log file)")


def add_checkpoint_arguments(p: argparse.ArgumentParser, seeds: str, out: str) -> None:
    """The flags of commands that read a trained run: the checkpoint, where its data is, device, seed, out."""
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by pyro-vae-train")
    p.add_argument("--data-dir", help="read the data from here instead of the directory used in training")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where the model runs: auto is the GPU when torch sees one, else the CPU "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help=f"seeds {seeds} (default: %(default)s)")
    p.add_argument("--out", help=f"where {out} go (default: beside the checkpoint)")


def add_parts_arguments(p: argparse.ArgumentParser, what: str) -> None:
    """The flags of commands that score images in saved parts (runs/parts.py)."""
    p.add_argument("--images-per-pass", type=positive_int, default=100,
                   help="images scored at once, and at most per saved part: a part holds about a minute's work "
                        "(default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help=f"go on with an interrupted {what}: the parts it saved are kept, the rest scored; refused when "
                        "a setting differs")
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace the results of an earlier {what} with other settings or of another checkpoint "
                        "(refused without it)")


def add_ais_arguments(p: argparse.ArgumentParser, steps: Callable[[str], Any], steps_default: Any,
                      steps_help: str) -> None:
    p.add_argument("--ais-steps", type=steps, default=steps_default, help=steps_help)
    p.add_argument("--ais-chains", type=positive_int, default=16, help="AIS chains per image (default: %(default)s)")
    p.add_argument("--ais-leapfrog", type=positive_int, default=10,
                   help="leapfrog steps per HMC transition (default: %(default)s)")
