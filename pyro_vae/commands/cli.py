"""What the scripts share: one-line errors with exit status 2, logging, flag types.

The library names its settings in messages as code, `batch_size` or `batch_size=20`; the scripts
print them as the flags that set them, --batch-size or --batch-size 20 (see as_flags).
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from pyro_vae.errors import OutputError, TrainingDiverged, UsageError

STARTED = time.perf_counter()  # about when a script's process began: this module is its first import
_collection_paused = False  # pause_collection paused the garbage collector and startup_done has not yet resumed it


def pause_collection() -> None:
    """Pause Python's cyclic garbage collector while a script's process starts up, until
    startup_done (the commands' runner pauses it in their own processes). Start-up (torch and Pyro,
    the torch._dynamo that the first optimizer imports, the data, the model) allocates some 350,000
    objects that live as long as the process, and the collector scanned them again and again as
    they piled up, a share of a short run that the pause all but removes (timed by gc.callbacks;
    docs/benchmarks.md). Reference counting still frees what start-up lets go of; only its reference
    cycles stay (see startup_done)."""
    global _collection_paused
    if gc.isenabled():
        gc.disable()
        _collection_paused = True


def startup_done() -> None:
    """End pause_collection's pause: freeze what start-up made (gc.freeze: later collections leave
    it alone) and collect as usual from here. The reference cycles start-up dropped (about 9,000
    objects of import machinery, a few MB; no tensors) are frozen with the rest and held until the
    process ends, rather than paid for by a full collection. A
    no-op unless pause_collection paused the collector."""
    global _collection_paused
    if _collection_paused:
        _collection_paused = False
        gc.freeze()
        gc.enable()


def summary(doc: str | None) -> str:
    """A program's description for --help: its docstring's first paragraph, whole (its first line alone cut
    some mid-sentence)."""
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def first_process() -> bool:
    """False in torchrun's processes other than rank 0: every process meets the same bad input, and
    rank 0 alone says so (torchrun then adds its own report of the failed processes)."""
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (no usage dump), from the first process only
    (first_process), and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n" if first_process() else None)


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
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


SEEDS = 2**32  # numpy's seeds, which pyro.set_rng_seed sets too, are 0 .. 2^32 - 1


def seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < SEEDS:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {SEEDS - 1}, got {text}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """'400' or '200,200' -> (400,) or (200, 200); each positive."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers like 400 or 200,200, got {text!r}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"every value must be a positive integer, got {text!r}")
    return values


def add_experiment_arguments(
    p: argparse.ArgumentParser, out: str, datasets: list[str], eval_samples: int = 1000
) -> None:
    """The flags every experiment script shares: data, length, K, device, seed, output folder."""
    p.add_argument("--dataset", choices=datasets, default=None,
                   help="default: mnist, falling back to mnist5k (and saying so) offline, as pyro-vae-train")
    p.add_argument("--data-dir", default="data", help="where datasets are read and downloaded (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=30, help="(default: %(default)s)")
    p.add_argument("--eval-samples", type=positive_int, default=eval_samples,
                   help="K for the test log p^(x) (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.add_argument("--seed", type=seed, default=0, help="(default: %(default)s)")
    p.add_argument("--out", default=out, help="(default: %(default)s)")


SETTING = re.compile(r"`([a-z][a-z_]*)(?:=([^`]*))?`")  # `name` or `name=value` in a library message
# the settings whose flag is not --<name with dashes>
FLAGS = {"num_chains": "--ais-chains", "num_steps": "--ais-steps"}


def as_flags(text: str) -> str:
    """A library message as a script prints it: `batch_size=20` -> --batch-size 20, `jit` -> --jit."""

    def flag(match: re.Match[str]) -> str:
        name, value = match.groups()
        option = FLAGS.get(name, "--" + name.replace("_", "-"))
        return option if value is None else f"{option} {value}"

    return SETTING.sub(flag, text)


class FlagFormatter(logging.Formatter):
    """Log lines as plain messages, their settings written as flags (see as_flags)."""

    def format(self, record: logging.LogRecord) -> str:
        return as_flags(super().format(record))


OUT_OF_MEMORY = re.compile(r"can't allocate memory|out of memory", re.IGNORECASE)  # torch's allocators' messages


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; and what SLURM, Kubernetes and `timeout` send
_stopped_by: int | None = None  # the signal that stopped the running script


def stop(signum: int, frame: FrameType | None) -> None:
    """The handler of SIGINT and SIGTERM while a script runs: the first of either stops it
    (KeyboardInterrupt: training saves its last completed epoch, an evaluation keeps its saved parts);
    later ones are ignored, so that they cannot cut short that saving or Python's exit."""
    global _stopped_by
    _stopped_by = signum
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(run: Callable[[list[str] | None], object], argv: list[str] | None = None) -> int:
    """Run a script's body and return its exit status, every failure the user can act on as one
    line on stderr: 2 bad input (UsageError), 3 divergence, 1 a result that could not be written or
    memory that ran out, 130 Ctrl-C, 143 SIGTERM (see stop). Logs go to stderr as plain lines. A garbage
    collector the body paused (pause_collection) and did not resume is resumed when it returns."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FlagFormatter("%(message)s"))
    logger = logging.getLogger("pyro_vae")  # ours only: ArviZ logs import chatter at INFO on its own
    handlers_before, level_before = logger.handlers[:], logger.level
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    global _stopped_by
    _stopped_by = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS} if in_main_thread else {}
    try:
        run(argv)
    except UsageError as error:
        if first_process():
            print(f"error: {as_flags(str(error))}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"error: {as_flags(str(error))}", file=sys.stderr)
        return 3
    except OutputError as error:
        print(f"error: {as_flags(str(error))}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as error:  # torch's CPU and CUDA allocators raise RuntimeErrors
        if not (isinstance(error, MemoryError) or OUT_OF_MEMORY.search(str(error))):
            raise
        detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        print(f"error: out of memory ({detail}): lower the batch size, the number of samples or the network "
              "sizes", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:  # TrainingInterrupted says what was saved and how to go on
        message = as_flags(str(error)) or "interrupted"
        if _stopped_by == signal.SIGTERM:  # 143 = 128 + 15, as a shell reports a process SIGTERM ended
            print(f"terminated (SIGTERM), {message.removeprefix('interrupted: ')}", file=sys.stderr)
            return 143
        print(message, file=sys.stderr)
        return 130
    finally:
        startup_done()
        # argv None: main runs as its script's process, which ignores Ctrl-C and SIGTERM from here to its
        # exit, so that a late one cannot interrupt Python's shutdown with a traceback; in-process callers
        # (tests, notebooks) get their handlers back
        for signum, before in previous.items():
            signal.signal(signum, signal.SIG_IGN if argv is None else before)
        if argv is not None:  # and their logging: a handler left on a stream they close would fail later
            logger.handlers[:], logger.level = handlers_before, level_before
    return 0


def exit_now(code: int) -> NoReturn:
    """End a script's process with ``code`` once its output is flushed, skipping the interpreter's
    teardown: every file the script writes is complete (atomic, fsynced) and every resource it
    opens is closed by then, and tearing down torch's modules takes most of a second."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
