"""The command line as one tool: one flag per setting in every command, old names hidden but working, --help and a
bad flag before torch loads, --threads, and progress bars that stay out of log files."""

import argparse
import json
import subprocess
import sys

import pytest
import torch

from pyro_vae.commands import parsers
from pyro_vae.commands.parsers import PARSERS, RENAMED, SETTING_FLAGS, parse
from pyro_vae.config import ACTIVATION_NAMES, BINARIZE, DATASET_NAMES, DEVICES, ELBO_NAMES, LIKELIHOOD_NAMES

from programs import ROOT, TINY, run_in_process, run_subprocess

SHOWS_PROGRESS = {"train", "evaluate", "bdmc", "gaps"}


def visible(parser):
    return [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]


def test_one_setting_has_one_flag_in_every_command():
    """K was --eval-samples, --num-samples or --iwae-samples; the AIS settings --ais-* or --steps/--chains/--leapfrog;
    the images --images or --num-images; images per pass --batch-size, which is train's minibatch."""
    flag_of, dest_of = {}, {}  # across every command: a flag means one setting, a setting has one flag
    for name, build in PARSERS.items():
        parser = build()
        for action in visible(parser):
            if action.dest == "help":
                continue
            primary = [o for o in action.option_strings if o.startswith("--")]
            assert len(primary) == 1, (name, action.option_strings)  # no second visible name
            flag = primary[0]
            if action.dest in SETTING_FLAGS:
                assert flag == SETTING_FLAGS[action.dest], (name, action.dest, flag)
            assert flag_of.setdefault(action.dest, flag) == flag, (name, action.dest, flag, flag_of[action.dest])
            assert dest_of.setdefault(flag, action.dest) == action.dest, (name, flag, action.dest)
        shown = {a.option_strings[0] for a in visible(parser)}
        for old in RENAMED.get(name, {}):
            assert old not in shown, (name, old)  # an old name is hidden from --help...
        assert {"--config", "--threads"} <= shown, name
        assert ("--no-progress" in shown) == (name in SHOWS_PROGRESS), name


@pytest.mark.parametrize("name", sorted(RENAMED))
def test_an_old_flag_still_sets_its_setting_with_a_note(name, capsys):
    """... and still works until 0.4.0, saying once what it is called now."""
    for old, dest in RENAMED[name].items():
        new = SETTING_FLAGS.get(dest, "--" + dest.replace("_", "-"))
        given = parse(name, ["--checkpoint", "c.pt", old, "3"])
        assert getattr(given, dest) in (3, (3,)), (old, dest)
        assert f"note: {old} is now {new}" in capsys.readouterr().err
        assert getattr(parse(name, ["--checkpoint", "c.pt", new, "4"]), dest) in (4, (4,))


def test_the_command_lines_choices_are_the_librarys():
    """The parsers offer choices from config.py, without importing the modules that implement them."""
    from pyro_vae.data.datasets import DATASETS
    from pyro_vae.data.pixels import BINARIZE as PIXELS_BINARIZE
    from pyro_vae.inference.objectives import ELBOS
    from pyro_vae.models.likelihoods import LIKELIHOODS
    from pyro_vae.models.networks import ACTIVATIONS
    from pyro_vae.runs.experiment import DEVICES as RUN_DEVICES

    assert tuple(DATASETS) == DATASET_NAMES and tuple(LIKELIHOODS) == LIKELIHOOD_NAMES
    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES and tuple(ELBOS) == ELBO_NAMES
    assert PIXELS_BINARIZE == BINARIZE and RUN_DEVICES == DEVICES


def test_help_and_a_bad_flag_answer_before_torch_is_imported():
    """--help took 6-8 s cold (1.4 s warm) because torch and Pyro were imported first; now 0.06 s
    (docs/benchmarks.md). Checked by what is imported, not by a clock."""
    code = (
        "import sys\n"
        "from pyro_vae.commands import runner\n"
        "from pyro_vae.commands.cli import main\n"
        "from pyro_vae.commands.parsers import PARSERS\n"
        "for name in PARSERS:\n"
        "    for argv in (['--help'], ['--seed', 'x']):\n"
        "        try:\n"
        "            main(runner(name), argv)\n"
        "        except SystemExit as exit:\n"
        "            assert exit.code == (0 if argv == ['--help'] else 2), (name, argv, exit.code)\n"
        "        else:\n"
        "            raise AssertionError(name)\n"
        "heavy = ('torch', 'pyro', 'numpy', 'matplotlib', 'torchvision')\n"
        "print('imported:', sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "imported: []", done.stdout[-300:]


def test_a_command_runs_on_threads_threads_and_gives_an_in_process_caller_its_own_back(monkeypatch):
    import pyro_vae.commands

    seen = []

    class Command:
        @staticmethod
        def run(args):
            seen.append(torch.get_num_threads())

    monkeypatch.setattr(pyro_vae.commands, "import_module", lambda name: Command)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    runner = pyro_vae.commands.runner("plot")
    runner(["--checkpoint", "c.pt"])
    runner(["--checkpoint", "c.pt", "--threads", "2"])
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # a user's OMP_NUM_THREADS is kept: torch read it at start-up
    runner(["--checkpoint", "c.pt"])
    assert seen == [parsers.DEFAULT_THREADS, 2, before]
    assert torch.get_num_threads() == before


def test_no_progress_bar_lands_in_a_log_file(tiny_mnist, tmp_path):
    """Training and the final estimate draw their bars only on a terminal (tqdm's disable=None): piped to a
    file, a run wrote 745 bar updates, 71 KB; --no-progress is not needed for that."""
    flags = [f for f in TINY if f != "--no-progress"]
    done = run_subprocess("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path / "run", *flags], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "it/s" not in done.stderr and "\r" not in done.stderr and "%|" not in done.stderr, done.stderr
    done = run_subprocess("evaluate", ["--checkpoint", tmp_path / "run" / "checkpoint.pt", "--data-dir", tiny_mnist,
                                       "--eval-samples", "5", "--ks", "1,5"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "%|" not in done.stderr, done.stderr


def test_the_final_estimate_shows_a_bar_on_a_terminal(tiny_mnist, tmp_path, monkeypatch):
    """The end-of-training K = 1000 estimate ran two minutes without a word."""
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    flags = [f for f in TINY if f != "--no-progress"]
    assert run_in_process("train_svi", ["--data-dir", tiny_mnist, "--out", tmp_path / "run", *flags]) == 0
    assert "log p^(x), K=20" in terminal.getvalue()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]["test_log_likelihood"]
