"""Atomic writes that Ctrl-C cannot cut."""

import errno
import os
import signal
import time

import pytest

from pyro_vae import files
from pyro_vae.commands.cli import main
from pyro_vae.errors import OutputError
from pyro_vae.files import atomic_write, interrupts_deferred


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler (KeyboardInterrupt), restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)  # delivered to this (main) thread at the next bytecode


def test_a_ctrl_c_inside_the_block_waits_for_its_end_and_counts_once(default_sigint):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            ctrl_c()
            done.append("after the first")
            ctrl_c()  # a second Ctrl-C 'right after' the first: still one interrupt
            done.append("after the second")
    assert done == ["after the first", "after the second"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back


def test_nested_blocks_hand_the_interrupt_to_the_outer_one(default_sigint):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            with interrupts_deferred():
                ctrl_c()
            done.append("the outer block went on")
    assert done == ["the outer block went on"]


def test_a_sigterm_inside_the_block_waits_too_and_reaches_its_handler():
    """SIGTERM is held back like Ctrl-C and then handed to the handler that was there (cli.stop in a script),
    with its own number: the script then exits with 143, not 130."""
    seen = []

    def handler(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("after the SIGTERM")
        assert done == ["after the SIGTERM"] and seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_without_a_ctrl_c_the_block_changes_nothing(default_sigint):
    with interrupts_deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_atomic_write_interrupted_mid_write_completes_then_raises(tmp_path, default_sigint, monkeypatch):
    path = tmp_path / "result.json"
    path.write_bytes(b"old")
    real_fsync = os.fsync

    def fsync(fd):  # Ctrl-C after the bytes are written, before they are renamed into place
        ctrl_c()
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [path]


def test_a_full_disk_keeps_the_old_file_and_says_so_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old")

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(OutputError, match=r"cannot write .*checkpoint.pt: No space left on device"):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [path]  # no temporary file left


def test_the_first_ctrl_c_stops_a_script_and_later_ones_cannot_cut_its_cleanup(capsys):
    cleaned = []

    def run(argv):
        try:
            ctrl_c()
            time.sleep(5)  # never reached: the first Ctrl-C raises here
        except KeyboardInterrupt:
            ctrl_c()  # a second and a third Ctrl-C while the script saves its work
            ctrl_c()
            cleaned.append(True)
            raise

    previous = signal.getsignal(signal.SIGINT)
    assert main(run, []) == 130
    assert cleaned == [True] and capsys.readouterr().err.strip() == "interrupted"
    assert signal.getsignal(signal.SIGINT) is previous  # in-process callers get their handler back


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_result_file_gets_the_mode_the_umask_gives(tmp_path, umask, mode):
    """As open() would create it: mkstemp's own 0600 made every figure and metrics file private to its owner."""
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "result.json", b"{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == mode
