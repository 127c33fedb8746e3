"""What the scripts share: one-line errors with exit status 2, logging, flag types."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn

from pyro_vae.errors import TrainingDiverged, UsageError


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """'400' or '200,200' -> (400,) or (200, 200); each positive."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers like 400 or 200,200, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"every value must be a positive integer, got {text!r}")
    return values


def main(run: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run a script's body: log to stderr as plain lines, turn a UsageError into one line and exit 2."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("pyro_vae")  # ours only: ArviZ logs import chatter at INFO on its own
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=".*torch.jit.trace.*is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor", category=FutureWarning)
    try:
        run(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as error:  # TrainingInterrupted says what was saved and how to go on
        print(str(error) or "interrupted", file=sys.stderr)
        return 130
    return 0
