"""The command-line layer: library settings printed as flags, and no flags inside the library."""

import ast
import gc
import logging
import re
import signal
from pathlib import Path

import pytest

from pyro_vae.cli import as_flags, main, pause_collection, startup_done
from pyro_vae.errors import UsageError
from pyro_vae.objectives import make_elbo

PACKAGE = Path(__file__).parents[1] / "pyro_vae"
COMMAND_LINE = {PACKAGE / "cli.py", *(PACKAGE / "commands").glob("*.py")}  # where flag names belong
SPEAKING = {"UsageError", "TrainingDiverged", "TrainingInterrupted", "OutputError", "info", "warning", "error"}


@pytest.mark.parametrize(
    "message, printed",
    [
        ("pass `resume` to go on", "pass --resume to go on"),
        ("lower `batch_size=128` or `num_particles=4`", "lower --batch-size 128 or --num-particles 4"),
        ("lower `num_chains`", "lower --ais-chains"),  # a setting whose flag has another name
        ("pass `data_dir=<folder holding them>`", "pass --data-dir <folder holding them>"),
        ("run `apt-get install dataset-fashion-mnist`", "run `apt-get install dataset-fashion-mnist`"),  # not a setting
        ("no settings here", "no settings here"),
    ],
)
def test_library_settings_are_printed_as_flags(message, printed):
    assert as_flags(message) == printed


def test_a_script_prints_a_library_error_with_flags(capsys):
    def run(argv):
        make_elbo("iwae", 5, jit=True)

    assert main(run, []) == 2
    assert capsys.readouterr().err == "error: --jit is not available with --elbo iwae: drop --jit\n"


def test_a_script_logs_library_lines_with_flags(capsys):
    def run(argv):
        logging.getLogger("pyro_vae").info("`overwrite`: removed the earlier run")

    assert main(run, []) == 0
    assert capsys.readouterr().err == "--overwrite: removed the earlier run\n"


def test_the_collector_pauses_until_startup_done_then_leaves_startup_frozen(collector):
    pause_collection()
    assert not gc.isenabled()
    made_during_startup = [[] for _ in range(1000)]
    frozen = gc.get_freeze_count()
    startup_done()
    assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(made_during_startup)
    startup_done()  # a second call does nothing
    assert gc.get_freeze_count() >= frozen + len(made_during_startup) and gc.isenabled()


def test_startup_done_without_a_pause_changes_nothing(collector):
    frozen = gc.get_freeze_count()
    startup_done()
    gc.disable()  # a caller's own choice, left alone
    startup_done()
    assert not gc.isenabled() and gc.get_freeze_count() == frozen


@pytest.mark.parametrize("calls_startup_done", [True, False])
def test_a_script_process_collects_again_once_started_or_at_the_latest_at_its_end(collector, calls_startup_done):
    seen = []

    def run(argv):
        seen.append(gc.isenabled())
        if calls_startup_done:
            startup_done()
            seen.append(gc.isenabled())

    handler = signal.getsignal(signal.SIGINT)
    try:
        assert main(run) == 0  # argv None: the script's own process
    finally:
        signal.signal(signal.SIGINT, handler)  # main leaves a script's process ignoring Ctrl-C
    assert seen == ([False, True] if calls_startup_done else [False]) and gc.isenabled()


def test_in_process_callers_keep_their_collector(collector):
    seen = []
    frozen = gc.get_freeze_count()
    assert main(lambda argv: seen.append(gc.isenabled()), []) == 0
    assert seen == [True] and gc.get_freeze_count() == frozen


def test_the_library_raises_with_settings_named_as_code():
    with pytest.raises(UsageError) as error:
        make_elbo("iwae", 5, jit=True)
    assert str(error.value) == "`jit` is not available with `elbo=iwae`: drop `jit`"


def test_no_library_message_names_a_flag():
    """Every string in a raise or log call outside the command-line layer: settings go as `name`, never
    as --name, so that a caller of fit() is not told to pass a flag."""
    found = []
    for path in sorted(set(PACKAGE.rglob("*.py")) - COMMAND_LINE):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name not in SPEAKING:
                continue
            for part in ast.walk(node):
                if isinstance(part, ast.Constant) and isinstance(part.value, str) and re.search(r"--[a-z]", part.value):
                    found.append(f"{path.name}:{part.lineno}: {part.value}")
    assert not found, found
