"""The command-line programs. Each module's ``run(argv)`` parses flags into configs and calls the
library. The console scripts (``pyro-vae-train``, ``pyro-vae-evaluate``, ``pyro-vae-plot``,
``pyro-vae-bdmc``) and ``scripts/*.py`` call it through ``runner``, which imports the module (and
so torch and Pyro) only inside cli.main: a Ctrl-C during those imports is then the one-line
interrupt of every other moment, and nothing heavy loads before it is needed."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import NoReturn

from pyro_vae.commands.cli import exit_now, main, pause_collection


def runner(name: str) -> Callable[[list[str] | None], None]:
    """``run(argv)`` of pyro_vae.commands.<name>, imported when called. ``argv`` None: the command is
    its script's process, whose garbage collector pauses until the command has started up (each
    calls cli.startup_done once its model and data are built; see cli.pause_collection)."""

    def run(argv: list[str] | None) -> None:
        if argv is None:
            pause_collection()
        import_module(f"pyro_vae.commands.{name}").run(argv)

    return run


def train_console() -> NoReturn:
    """``pyro-vae-train``: pyro_vae/commands/train.py."""
    exit_now(main(runner("train")))


def evaluate_console() -> NoReturn:
    """``pyro-vae-evaluate``: pyro_vae/commands/evaluate.py."""
    exit_now(main(runner("evaluate")))


def plot_console() -> NoReturn:
    """``pyro-vae-plot``: pyro_vae/commands/plot.py."""
    exit_now(main(runner("plot")))


def bdmc_console() -> NoReturn:
    """``pyro-vae-bdmc``: pyro_vae/commands/bdmc.py."""
    exit_now(main(runner("bdmc")))


def gaps_console() -> NoReturn:
    """``pyro-vae-gaps``: pyro_vae/commands/gaps.py."""
    exit_now(main(runner("gaps")))
