"""Writing results so that nothing is lost: atomic files that Ctrl-C cannot cut in half.

    with interrupts_deferred():   # Ctrl-C waits until the block is done, then is raised
        ...
    atomic_write(path, data)      # the old file or the new one, never half of one; interrupts deferred
"""

from __future__ import annotations

import io
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Generator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from pyro_vae.errors import OutputError

TEMPORARY = ".tmp"  # suffix of atomic_write's temporary files, ".<name>.<random>.tmp"


@contextmanager
def interrupts_deferred() -> Generator[None, None, None]:
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
