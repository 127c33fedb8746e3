"""A run folder one process at a time owns."""

import logging
import os
import subprocess
import sys

import pytest

from pyro_vae.errors import UsageError
from pyro_vae.runs.run_folder import LOCK, RunFolder, check_run_folder, held_folder, remove_results_of
from pyro_vae.training.distributed import SINGLE


def test_a_second_process_on_a_run_folder_is_refused_until_the_first_ends(tmp_path):
    with RunFolder(tmp_path):
        with pytest.raises(UsageError, match=rf"{tmp_path} is in use by another run \(pid {os.getpid()}\)"):
            RunFolder(tmp_path).__enter__()  # flock: a second open file conflicts, in this process too
    with RunFolder(tmp_path):  # released at the end of the block
        pass


def test_a_killed_run_leaves_no_lock_behind(tmp_path):
    code = ("import sys, time; from pyro_vae.runs.run_folder import RunFolder; folder = RunFolder(sys.argv[1]); "
            "folder.__enter__(); "
            "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UsageError, match=rf"in use by another run \(pid {holder.pid}\)"):
        RunFolder(tmp_path).__enter__()
    holder.kill()  # SIGKILL: no cleanup of its own
    holder.wait(timeout=30)
    with RunFolder(tmp_path):
        pass


def test_entering_a_run_folder_removes_the_temporary_files_of_a_killed_write(tmp_path):
    """Only atomic_write's own: a user's .thesis-draft.tmp or .backup.tmp in --out stays (plot and train deleted
    them, issue 38)."""
    stale = [tmp_path / ".checkpoint.pt.x1y2_abc.pyro_vae.tmp", tmp_path / ".metrics.json.ab3defgh.pyro_vae.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    kept = [tmp_path / "checkpoint.pt", tmp_path / "notes.tmp", tmp_path / ".hidden", tmp_path / ".thesis-draft.tmp",
            tmp_path / ".backup.tmp", tmp_path / ".notes.pyro_vae.tmp"]
    for path in kept:
        path.write_bytes(b"keep")
    with RunFolder(tmp_path) as folder:
        assert sorted(folder.removed) == sorted(stale)
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)


def test_a_resumed_run_removes_the_results_of_the_checkpoint_it_replaces(tmp_path, caplog):
    """An evaluation of epoch 2 must not stay beside the epoch-3 checkpoint that a --resume writes."""
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    for name in ("evaluation.json", "per_image.csv", "bounds.png", "bdmc.json", "gaps.png", "samples.png"):
        (tmp_path / name).write_text("{}")
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        check_run_folder(tmp_path, tmp_path / "checkpoint.pt", overwrite=False)  # allowed: it continues the run
        remove_results_of(tmp_path)  # called once Run.start has accepted the resume
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["checkpoint.pt", "samples.png"]  # figures of the run itself are redrawn at its end
    assert "removed the results of the checkpoint this run continues" in caplog.text


def test_a_lock_that_cannot_be_opened_is_one_line(tmp_path):
    (tmp_path / LOCK).mkdir()  # as a .lock that another user's run left unwritable (root may open any file)
    with pytest.raises(UsageError, match=r"cannot lock .*: .*\.lock cannot be opened for writing .*another folder"):
        with RunFolder(tmp_path):
            pass


def test_a_lock_that_is_a_symbolic_link_is_refused_and_its_target_untouched(tmp_path):
    """plot and sample followed <out>/.lock through a symlink and truncated the file it named (issue 38)."""
    target = tmp_path / "precious.txt"
    target.write_text("26,000 bytes of someone's work")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).symlink_to(target)
    with pytest.raises(UsageError, match=r"cannot lock .*run: .*\.lock cannot be opened for writing \(it is a "
                                         r"symbolic link\)"):
        with RunFolder(run):
            pass
    assert target.read_text() == "26,000 bytes of someone's work"


def test_evaluations_and_plots_hold_the_folder_while_they_write(tmp_path):
    """No training run writes a new checkpoint under an evaluation, and no two commands write one folder."""
    with RunFolder(tmp_path):
        with pytest.raises(UsageError, match="is in use by another run"):
            with held_folder(tmp_path, SINGLE):
                pass
    with held_folder(tmp_path, SINGLE):
        with pytest.raises(UsageError, match="is in use by another run"):
            with RunFolder(tmp_path):
                pass


def test_overwrite_removes_a_linked_tensorboard_folder_as_a_link_and_leaves_its_target(tmp_path):
    """`train --overwrite` on a run whose tensorboard folder is a link was a traceback (rmtree refuses links);
    the link goes, and the folder it points to, which may hold anything, stays whole."""
    out, elsewhere = tmp_path / "run", tmp_path / "my_boards"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "events.out.tfevents.1").write_text("curves")
    (out / "tensorboard").symlink_to(elsewhere, target_is_directory=True)
    (out / "metrics.json").write_text("{}")
    with pytest.raises(UsageError, match="holds an earlier run"):
        check_run_folder(out, None, overwrite=False)
    check_run_folder(out, None, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == []
    assert (elsewhere / "events.out.tfevents.1").read_text() == "curves"
