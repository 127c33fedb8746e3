"""A run's folder: where a run writes, refused when another run is there, held by one process at a time.

    with RunFolder(out):          # refuses a second process on ``out``; removes stale temporary files
        ...
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from pyro_vae.errors import UsageError
from pyro_vae.files import TEMPORARY, atomic_write_text
from pyro_vae.training.distributed import Context

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second run is not detected there
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"  # in a run folder: held (flock) by the process writing into it

log = logging.getLogger("pyro_vae")


def output_path(out: str | Path) -> Path:
    """``out`` as a Path; a UsageError for an empty one, which Path would turn into the current folder."""
    if not str(out).strip():
        raise UsageError("`out` is empty: name the folder to write into")
    return Path(out)


def writable_dir(out: str | Path, setting: str = "out") -> Path:
    """``out``, created if needed; a one-line UsageError naming ``setting`` when it cannot be written."""
    out = output_path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # a probe of this process's own: torchrun's ranks probe at once
    except OSError as error:
        raise UsageError(f"`{setting}={out}` is not a writable directory ({error.strerror}): choose another "
                         f"`{setting}`") from None
    return out


def require_own_folder(out: Path, checkpoint: str | Path, overwrite: bool) -> None:
    """A UsageError when ``out`` holds another run (a checkpoint.pt that is not ``checkpoint``): figures and results
    of ``checkpoint`` written there would replace that run's, or sit beside it as if they were its own. With
    ``overwrite`` that is asked for."""
    theirs = out / "checkpoint.pt"
    try:
        same = not theirs.exists() or os.path.samefile(theirs, checkpoint)
    except OSError:
        same = False
    if not same and not overwrite:
        raise UsageError(f"`out={out}` holds another run (its checkpoint.pt is not {checkpoint}): what this command "
                         "writes would replace that run's files or pass for them; choose another `out`, or add "
                         "`overwrite`")


@contextmanager
def run_folder(out: str | Path, context: Context) -> Generator[Path, None, None]:
    """``out``, created if needed and writable (writable_dir). A folder this call created goes again when the
    block fails before the run saved anything there (no checkpoint.pt): a failed start, e.g. `device=cuda`
    without a GPU, left an empty runs/train_svi-2 holding only its .lock."""
    created = not output_path(out).exists()
    folder = writable_dir(out)
    try:
        yield folder
    except BaseException:
        if created and context.is_main and not (folder / "checkpoint.pt").exists():
            shutil.rmtree(folder, ignore_errors=True)
        raise


# what evaluate.py, bdmc.py and gaps.py write beside the checkpoint they score: results of that checkpoint alone
EVALUATION_FILES = ("evaluation.json", "per_image.csv", "bounds.png", "bdmc.json", "bdmc_per_image.csv", "bdmc.png",
                    "gaps.json", "gaps.png")
# what a run writes into its folder (train_svi.py, then the evaluations beside the checkpoint)
RUN_FILES = ("checkpoint.pt", "metrics.json", "history.csv", "learning_curve.png", "reconstructions.png",
             "samples.png", "latent.png", "manifold.png", *EVALUATION_FILES)
TENSORBOARD = "tensorboard"  # the default TensorBoard folder inside a run folder


def earlier_run(out: Path) -> list[str]:
    """The files of an earlier run in ``out`` (empty when there is none)."""
    return [name for name in (*RUN_FILES, TENSORBOARD) if (out / name).exists()]


def remove_results_of(out: Path) -> None:
    """Remove what evaluations measured of ``out``'s checkpoint, which a resumed run is about to replace (called
    once the resume is allowed): those numbers must not stay beside the new checkpoint."""
    stale = [name for name in EVALUATION_FILES if (out / name).is_file()]
    for name in stale:
        (out / name).unlink()
    if stale:
        log.info("removed the results of the checkpoint this run continues (%s): evaluate it again when it ends",
                 ", ".join(stale))


def continues(out: Path, resume: Path | None) -> bool:
    """Whether a run into ``out`` resuming from ``resume`` continues the run already there (its own checkpoint)."""
    return resume is not None and resume.resolve() == (out / "checkpoint.pt").resolve()


def check_run_folder(out: Path, resume: Path | None, overwrite: bool) -> None:
    """Refuse to mix runs: ``out`` may hold an earlier run only when this run continues it
    (``resume`` is its checkpoint) or ``overwrite`` says to replace it (its files are removed
    first). A folder where a result file should go is refused before any training."""
    for name in RUN_FILES:
        if (out / name).exists() and not (out / name).is_file():
            raise UsageError(f"{out / name} is a folder, not a file, and the run writes its {name} there: remove it "
                             "or choose another `out`")
    earlier = earlier_run(out)
    if not earlier or continues(out, resume):
        return
    if not overwrite:
        raise UsageError(f"{out} holds an earlier run ({', '.join(earlier)}): pass `resume` to go on with it, "
                         "`overwrite` to replace it, or choose another `out`")
    for name in earlier:  # a link is removed, not what it points to: that is not this folder's to delete
        path = out / name
        shutil.rmtree(path) if name == TENSORBOARD and not path.is_symlink() else path.unlink()
    log.info("`overwrite`: removed the earlier run's %s from %s", ", ".join(earlier), out)


@contextmanager
def held_folder(out: Path, context: Context, check: Callable[[], None] | None = None) -> Generator[None, None, None]:
    """Rank 0 holds ``out`` (RunFolder: one process at a time; stale temporary files go) for the block, once
    ``check``, run while holding it, allows. Every rank learns rank 0's verdict, so that a refusal stops them all.
    Evaluations and plots hold their folder this way, so that no training run or other command writes there
    meanwhile."""
    with ExitStack() as stack:
        problem = None
        if context.is_main:
            try:
                folder = stack.enter_context(RunFolder(out))
                if folder.removed:
                    log.info("removed %d temporary files that an interrupted run left in %s", len(folder.removed), out)
                if check is not None:
                    check()
            except UsageError as error:
                problem = str(error)
        if context.distributed:
            problem = context.gather(problem)[0]
        if problem is not None:
            raise UsageError(problem)
        yield


def owned_run_folder(out: Path, resume: Path | None, overwrite: bool, context: Context,
                     tensorboard: Path | None = None) -> AbstractContextManager[None]:
    """A training run's hold on ``out`` (held_folder), once check_run_folder allows the run there and
    claim_tensorboard its ``tensorboard`` folder."""

    def check() -> None:
        check_run_folder(out, resume, overwrite)
        if tensorboard is not None:
            claim_tensorboard(tensorboard, out, continues(out, resume))

    return held_folder(out, context, check)


class RunFolder:
    """Ownership of a run folder for the life of a ``with`` block.

    Entering takes an exclusive lock on ``<folder>/.lock`` (flock: the operating system drops it
    when the process ends, however it ends, so a crashed or killed run leaves nothing stuck) and
    removes the temporary files that a run killed mid-write left behind (safe: no other process
    writes there while the lock is held). A second process entering the same folder gets a
    UsageError naming the process that holds it.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._file: Any = None

    def __enter__(self) -> RunFolder:
        path = self.folder / LOCK
        try:  # never through a symbolic link: writing the pid would truncate whatever file it points to
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as error:  # e.g. a .lock left by another user's run, or a link
            why = "it is a symbolic link" if error.errno == errno.ELOOP else error.strerror
            raise UsageError(f"cannot lock {self.folder}: {path} cannot be opened for writing ({why}); "
                             "write into another folder (`out`)") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UsageError(f"cannot lock {self.folder}: {path} is not a regular file; remove it, or write into "
                             "another folder (`out`)")
        self._file = open(fd, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    self._busy()
                if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):  # those: no locks here, go on unlocked
                    raise
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()}\n")
        self._file.flush()
        self.removed = remove_stale_temporaries(self.folder)
        return self

    def _busy(self) -> None:
        self._file.seek(0)
        holder = self._file.read().strip() or "another process"
        self._file.close()
        raise UsageError(f"{self.folder} is in use by another run ({holder}): wait for it to end, or write into "
                         "another folder")

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._file.close()  # releases the lock; the .lock file stays (deleting it would race a new run)


TENSORBOARD_OWNER = ".pyro_vae_run"  # in a TensorBoard folder: the run folder whose events it holds


def claim_tensorboard(board: Path, out: Path, continuing: bool) -> None:
    """Make ``board`` the TensorBoard folder of the run in ``out``, or refuse with one line, before training:
    a folder that cannot be written (a file, /proc), or one that holds another run's events (two runs
    writing one folder mix their curves), or this folder's earlier run's events when this run does not
    continue it. Call while holding ``out``."""
    board = writable_dir(board, "tensorboard")
    owner_file = board / TENSORBOARD_OWNER
    try:
        owner = owner_file.read_text().strip()
    except FileNotFoundError:
        owner = None
    except OSError as error:
        raise UsageError(f"`tensorboard={board}`: {owner_file} cannot be read ({error.strerror})") from None
    events = any(board.rglob("events.out.tfevents.*"))
    mine = str(out.resolve())
    if owner is not None and owner != mine:
        raise UsageError(f"`tensorboard={board}` holds the TensorBoard events of the run in {owner}: two runs in one "
                         "folder mix their curves; pass another `tensorboard` folder")
    # a run of 0.2.0 or before wrote no owner: its own <out>/tensorboard is its when it is continued
    earlier_version = owner is None and continuing and board.resolve() == (out / TENSORBOARD).resolve()
    if events and not (owner == mine and continuing) and not earlier_version:
        whose = f"an earlier run in {owner}" if owner else "another program"
        raise UsageError(f"`tensorboard={board}` holds TensorBoard events of {whose}: remove them or pass another "
                         "`tensorboard` folder")
    atomic_write_text(owner_file, mine + "\n")


def check_results(path: Path, settings: dict[str, Any], overwrite: bool) -> None:
    """A UsageError when ``path`` holds results of other settings (or of another checkpoint), unless
    ``overwrite``: an evaluation never silently replaces another one's numbers."""
    if overwrite or not path.exists():
        return
    try:
        earlier = json.loads(path.read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if earlier != json.loads(json.dumps(settings)):
        raise UsageError(f"{path} holds the results of another evaluation (other settings, another checkpoint, or "
                         "an earlier version): pass `overwrite` to replace them, or write into another folder (`out`)")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete atomic_write's ``.<name>.<8 random>.pyro_vae.tmp`` files in ``folder`` (left by a run killed
    mid-write), and no other (a user's own ``.draft.tmp`` stays); returns them. Call only while holding the
    folder's lock."""
    ours = re.compile(rf"\..+\.[a-z0-9_]{{8}}{re.escape(TEMPORARY)}")  # mkstemp's 8 random characters
    stale = [path for path in folder.glob(f".*{TEMPORARY}") if ours.fullmatch(path.name) and path.is_file()
             and not path.is_symlink()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
