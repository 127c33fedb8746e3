"""A run folder one process at a time owns."""

import os
import subprocess
import sys

import pytest

from pyro_vae.errors import UsageError
from pyro_vae.runs.run_folder import RunFolder


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
    stale = [tmp_path / ".checkpoint.pt.x1y2.tmp", tmp_path / ".metrics.json.abc.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    kept = [tmp_path / "checkpoint.pt", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for path in kept:
        path.write_bytes(b"keep")
    with RunFolder(tmp_path) as folder:
        assert sorted(folder.removed) == sorted(stale)
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
