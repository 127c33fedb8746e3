"""Writing results so that nothing is lost or mixed up: atomic files that Ctrl-C cannot cut in
half, and a run folder that one process at a time owns.

    with interrupts_deferred():   # Ctrl-C waits until the block is done, then is raised
        ...
    atomic_write(path, data)      # the old file or the new one, never half of one; interrupts deferred
    with RunFolder(out):          # refuses a second process on ``out``; removes stale temporary files
        ...
"""

from __future__ import annotations

import errno
import io
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from pyro_vae.errors import OutputError, UsageError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second run is not detected there
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"  # in a run folder: held (flock) by the process writing into it
TEMPORARY = ".tmp"  # suffix of atomic_write's temporary files, ".<name>.<random>.tmp"


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) until the block ends, then deliver it once.

    A KeyboardInterrupt raised inside a writer (torch's zip writer turns one into its own
    RuntimeError on the way out) would leave half a file and a misleading traceback; deferred, the
    write completes and the interrupt arrives right after. Any number of Ctrl-Cs inside the block
    count as one. Nested blocks pass theirs to the outer one. Outside the main thread, where
    Python delivers no signals, the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            deliver_interrupt(previous)


def deliver_interrupt(handler: Callable[[int, FrameType | None], Any] | int | None) -> None:
    """Do what SIGINT's ``handler`` would do: call it, raise KeyboardInterrupt for the default
    (or unknown) handler, nothing when it is ignored."""
    if callable(handler):
        handler(signal.SIGINT, None)
    elif handler != signal.SIG_IGN:
        raise KeyboardInterrupt


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, flushed to disk and renamed
    into place: an interruption or a full disk leaves the old file (or none), never half of one.
    Ctrl-C waits for the write; an OSError becomes an OutputError naming the file."""
    path = Path(path)
    with interrupts_deferred():
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY)
        except OSError as error:
            raise OutputError(f"cannot write {path}: {error.strerror}", path) from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as error:
            os.unlink(tmp)
            raise OutputError(f"cannot write {path}: {error.strerror or error}", path) from None
        except BaseException:
            os.unlink(tmp)
            raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, text.encode())


def save_figure(fig: Any, path: str | Path) -> None:
    """A matplotlib figure as a PNG at ``path``, written atomically (see atomic_write)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    atomic_write(path, buffer.getvalue())


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
        self._file = open(path, "a+")
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


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete atomic_write's ``.<name>.<random>.tmp`` files in ``folder`` (left by a run killed
    mid-write); returns them. Call only while holding the folder's lock."""
    stale = [path for path in folder.glob(f".*{TEMPORARY}") if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
