"""Every command's flags (a module per command in flags/), built without torch, Pyro or the data: ``--help`` and a
bad flag answer at once.

One setting has one flag in every command (SETTING_FLAGS); the names a setting had before 0.3.0 still work, hidden
from --help, with a one-line note (RENAMED). Every command also reads its flags from a file (``--config``,
see config_file.py); flags on the command line win.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pyro_vae.commands import config_file
from pyro_vae.commands.cli import ArgumentParser
from pyro_vae.commands.flags.bdmc import bdmc_parser
from pyro_vae.commands.flags.common import DEFAULT_THREADS, RENAMED, SETTING_FLAGS
from pyro_vae.commands.flags.evaluate import evaluate_parser
from pyro_vae.commands.flags.gaps import gaps_parser
from pyro_vae.commands.flags.plot import plot_parser
from pyro_vae.commands.flags.sample import sample_parser
from pyro_vae.commands.flags.train import train_parser

__all__ = ["DEFAULT_THREADS", "PARSERS", "RENAMED", "SETTING_FLAGS", "bdmc_parser", "evaluate_parser", "gaps_parser",
           "parse", "plot_parser", "sample_parser", "train_parser"]


PARSERS: dict[str, Callable[[], ArgumentParser]] = {
    "train": train_parser, "evaluate": evaluate_parser, "bdmc": bdmc_parser, "gaps": gaps_parser,
    "plot": plot_parser, "sample": sample_parser,
}


def parse(name: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags of command ``name`` from ``argv`` (default: the process's), after those of ``--config``."""
    p = PARSERS[name]()
    args = list(sys.argv[1:] if argv is None else argv)
    found = ArgumentParser(prog=p.prog, add_help=False)  # a bad --config is one line, as every bad flag
    found.add_argument("--config")
    config, _ = found.parse_known_args(args)
    if config.config is not None:
        args = config_file.flags_from(config.config, p) + args  # later flags win: the command line's
    return p.parse_args(args)
