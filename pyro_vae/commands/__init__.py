"""The command-line programs. Each module's ``run(args)`` turns the flags that parsers.py read into configs
and calls the library. The console scripts (``pyro-vae-train``, ``-evaluate``, ``-plot``, ``-bdmc``, ``-gaps``,
``-sample``) and ``scripts/*.py`` call it through ``runner``, which imports the module (and so torch and
Pyro) only inside cli.main, after the flags are read: --help and a bad flag answer at once, a Ctrl-C during
the imports is the one-line interrupt of every other moment, and nothing heavy loads before it is needed."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from importlib import import_module
from typing import NoReturn

from pyro_vae.commands.cli import exit_now, main, pause_collection
from pyro_vae.commands.parsers import DEFAULT_THREADS, parse


def capped_threads(threads: int) -> int:
    """``threads``, or the cores there are when it asks for more, said in one line: OpenMP starts every thread
    asked for (--threads 1000 started 1000; 100000 crashed the process), and more threads than cores only slow
    the work."""
    cores = os.cpu_count() or 1
    if threads <= cores:
        return threads
    logging.getLogger("pyro_vae").warning("--threads %d is more than the %d cores here: using %d", threads, cores,
                                          cores)
    return cores


def runner(name: str) -> Callable[[list[str] | None], None]:
    """``run(args)`` of pyro_vae.commands.<name>, on the flags parsers.py reads from ``argv`` first (so --help
    and a bad flag answer before torch loads), imported when called. ``argv`` None: the command is its
    script's process, whose garbage collector pauses until the command has started up (each calls
    cli.startup_done once its model and data are built; see cli.pause_collection). The command runs on
    --threads torch threads; an in-process caller (a test, a notebook) gets its own number back."""

    def run(argv: list[str] | None) -> None:
        args = parse(name, argv)
        if argv is None:
            pause_collection()
        command = import_module(f"pyro_vae.commands.{name}")
        import torch

        before = torch.get_num_threads()
        if args.threads is not None or "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(capped_threads(args.threads or DEFAULT_THREADS))
        try:
            command.run(args)
        finally:
            if argv is not None:
                torch.set_num_threads(before)

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


def sample_console() -> NoReturn:
    """``pyro-vae-sample``: pyro_vae/commands/sample.py."""
    exit_now(main(runner("sample")))
