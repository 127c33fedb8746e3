"""The command-line layer: library settings printed as flags, and no flags inside the library."""

import argparse
import ast
import gc
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_vae.commands.cli import ArgumentParser, as_flags, main, pause_collection, startup_done
from pyro_vae.errors import UsageError
from pyro_vae.inference.objectives import make_elbo

from programs import ROOT, run_in_process

PACKAGE = Path(__file__).parents[2] / "pyro_vae"
COMMAND_LINE = set((PACKAGE / "commands").glob("*.py"))  # where flag names belong
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


@pytest.mark.parametrize("rank, printed", [("0", True), ("1", False), ("", True)])
def test_under_torchrun_rank_0_alone_prints_a_bad_input(capsys, monkeypatch, rank, printed):
    monkeypatch.setenv("RANK", rank)  # torchrun sets it in each process it starts

    def run(argv):
        make_elbo("iwae", 5, jit=True)

    parser = ArgumentParser(prog="train_svi.py")
    parser.add_argument("--epochs", type=int)
    assert main(run, []) == 2
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--epochs", "x"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert (err.count("error: ") == 2) if printed else err == ""


def test_main_gives_an_in_process_caller_its_logging_back(capsys):
    logger = logging.getLogger("pyro_vae")
    before = logger.handlers[:], logger.level
    assert main(lambda argv: None, []) == 0
    assert (logger.handlers, logger.level) == before  # none left on a stream the caller may close


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


@pytest.mark.parametrize("argv, paused", [(None, True), ([], False)])
def test_a_command_in_its_own_process_pauses_collection_until_it_has_started(collector, monkeypatch, argv, paused):
    import pyro_vae.commands
    from pyro_vae.commands import runner

    seen = []

    class Command:  # stands for a module of pyro_vae.commands
        @staticmethod
        def run(args):
            seen.append(gc.isenabled())
            startup_done()
            seen.append(gc.isenabled())

    monkeypatch.setattr(pyro_vae.commands, "import_module", lambda name: Command)
    monkeypatch.setattr(pyro_vae.commands, "parse", lambda name, argv: argparse.Namespace(threads=None))
    frozen = gc.get_freeze_count()
    handler = signal.getsignal(signal.SIGINT)
    try:
        assert main(runner("any"), argv) == 0  # argv None: the script's own process
    finally:
        signal.signal(signal.SIGINT, handler)  # main leaves a script's process ignoring Ctrl-C
    assert seen == [not paused, True] and gc.isenabled()
    assert (gc.get_freeze_count() > frozen) == paused  # only a paused start-up is frozen


def test_main_resumes_a_pause_the_body_left(collector):
    seen = []

    def run(argv):
        pause_collection()
        seen.append(gc.isenabled())

    assert main(run, []) == 0
    assert seen == [False] and gc.isenabled()


def test_other_scripts_keep_their_collector(collector):
    """Scripts that call main without the commands' runner (experiments/*.py) run several trainings
    with no start-up to end: their collector is never paused."""
    seen = []
    frozen = gc.get_freeze_count()
    handler = signal.getsignal(signal.SIGINT)
    try:
        assert main(lambda argv: seen.append(gc.isenabled())) == 0
    finally:
        signal.signal(signal.SIGINT, handler)
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


@pytest.mark.parametrize("argv0, program", [("{root}/scripts/train_svi.py", True), ("/usr/bin/pyro-vae-evaluate", True),
                                            ("notebook.py", False)])
def test_a_ctrl_c_during_the_imports_is_one_line_in_a_program_only(tmp_path, argv0, program):
    """A program's Ctrl-C before cli.main installs its handler (8 of 20 trials in the first 0.2 s printed a
    KeyboardInterrupt traceback from inside the imports; 2 of 20 now, both inside the interpreter's own start-up,
    before any of this package runs) ends it with one line and 130. A library user's handler is left alone."""
    code = (f"import sys; sys.argv = [{argv0.format(root=ROOT)!r}]; import pyro_vae, os, signal, time; "
            "os.kill(os.getpid(), signal.SIGINT); time.sleep(10)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if program:
        assert done.returncode == 130 and done.stderr == "interrupted\n", done.stderr
    else:
        assert "KeyboardInterrupt" in done.stderr, done.stderr


@pytest.mark.parametrize("command", ["train_svi", "evaluate", "plot", "bdmc", "gaps", "sample"])
def test_help_says_what_the_command_does_whole_and_names_the_console_commands(command, capsys):
    """pyro-vae-plot's description stopped mid-sentence (the docstring's first line); three commands said
    "written by train_svi.py", where the console command is pyro-vae-train."""
    assert run_in_process(command, ["--help"]) == 0
    text = capsys.readouterr().out
    description = " ".join(text.split("\n\n")[1].split())
    assert description.endswith("."), description
    assert "train_svi.py" not in text


def test_threads_beyond_the_cores_are_capped_with_one_line(monkeypatch, caplog):
    """--threads 100000 crashed the process (rc 139) and 1000 started 1000 OpenMP threads (issue 38): a command
    runs on at most the cores there are, and says so."""
    import torch

    from pyro_vae import commands

    seen = []
    monkeypatch.setattr(commands.import_module("pyro_vae.commands.plot"), "run",
                        lambda args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    with caplog.at_level("WARNING", logger="pyro_vae"):
        commands.runner("plot")(["--checkpoint", "x.pt", "--threads", "100000"])
    cores = os.cpu_count() or 1
    assert seen == [cores] and torch.get_num_threads() == before
    assert f"--threads 100000 is more than the {cores} cores here: using {cores}" in caplog.text
