"""The one exception type for mistakes in what the user asked for."""


class UsageError(ValueError):
    """Bad input: a flag value, a missing file, data outside a likelihood's support.

    The message is one line that says what is wrong and how to fix it; the scripts print it
    without a traceback and exit with status 2.
    """


class TrainingDiverged(ArithmeticError):
    """A non-finite loss or parameter during training. The scripts print the one-line message
    (which names the epoch, the step and the last good checkpoint) and exit with status 3."""

    def __init__(self, message: str, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, raised once the last completed epoch is safely saved."""

    def __init__(self, epoch: int, message: str = "") -> None:
        super().__init__(message or f"interrupted after epoch {epoch}")
        self.epoch = epoch  # the last completed (and saved) epoch


class OutputError(OSError):
    """A result could not be written (disk full, a folder where a file should be). The scripts
    print the one-line message, which says what was kept, and exit with status 1."""

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.message, self.path = message, path

    def __str__(self) -> str:
        return self.message
