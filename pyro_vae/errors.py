"""The one exception type for mistakes in what the user asked for."""


class UsageError(ValueError):
    """Bad input: a flag value, a missing file, data outside a likelihood's support.

    The message is one line that says what is wrong and how to fix it; the scripts print it
    without a traceback and exit with status 2.
    """
