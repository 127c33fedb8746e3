"""Writing results so that nothing is lost: atomic files that Ctrl-C cannot cut in half.

    with interrupts_deferred():   # Ctrl-C waits until the block is done, then is raised
        ...
    atomic_write(path, data)      # the old file or the new one, never half of one; interrupts deferred
"""

from __future__ import annotations

import io
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from pyro_vae.errors import OutputError, UsageError

TEMPORARY = ".pyro_vae.tmp"  # suffix of atomic_write's temporary files, ".<name>.<8 random>.pyro_vae.tmp": a name
#                             no user's file has, so that cleaning up after a killed write removes only ours
FILE_MODE = 0o666  # what open() creates a file with, before the umask
HELD = (signal.SIGINT, signal.SIGTERM)  # the signals a write holds back until it is done


@contextmanager
def interrupts_deferred() -> Generator[None, None, None]:
    """Hold back Ctrl-C (SIGINT) and SIGTERM until the block ends, then deliver the first once.

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

    previous: dict[int, Any] = {signum: signal.signal(signum, hold) for signum in HELD}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            deliver_interrupt(previous[pending[0]], pending[0])


def deliver_interrupt(handler: Callable[[int, FrameType | None], Any] | int | None,
                      signum: int = signal.SIGINT) -> None:
    """Do what ``handler`` would do with ``signum``: call it; for Python's default handlers, raise
    KeyboardInterrupt for SIGINT and end the process as SIGTERM would; nothing when it is ignored."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL and signum == signal.SIGTERM:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    elif handler != signal.SIG_IGN:
        raise KeyboardInterrupt


def current_umask() -> int:
    """The process's umask: from /proc on Linux, else by setting it and setting it back (the one portable way,
    which for an instant changes it for the process's other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, flushed to disk and renamed
    into place: an interruption or a full disk leaves the old file (or none), never half of one. The file
    gets the mode open() would give it (0666 less the umask).
    Ctrl-C waits for the write; an OSError becomes an OutputError naming the file."""
    path = Path(path)
    with interrupts_deferred():
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY)
        except OSError as error:
            raise OutputError(f"cannot write {path}: {error.strerror}", path) from None
        try:
            os.fchmod(fd, FILE_MODE & ~current_umask())  # mkstemp's 0600 would make every result private
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


def save_figure(fig: Any, path: str | Path, metadata: dict[str, str | None] | None = None) -> None:
    """A matplotlib figure as a PNG at ``path``, written atomically (see atomic_write); ``metadata``: the PNG's
    text chunks (None drops one of matplotlib's own, e.g. Software)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata=metadata)
    atomic_write(path, buffer.getvalue())


def special_file(path: str | Path) -> str | None:
    """What ``path`` is when it exists and is no regular file or folder (a FIFO, a device, a socket): reading one
    blocks forever or never ends. None for a regular file, a folder, or nothing there (its reader says so)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"


def require_regular(path: str | Path, what: str) -> None:
    """A UsageError naming ``what`` ``path`` should be when it is a FIFO, a device or a socket (special_file)."""
    if kind := special_file(path):
        raise UsageError(f"{what} {path} is {kind}, not a file: pass a regular file")
