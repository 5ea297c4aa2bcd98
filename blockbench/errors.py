"""The one exception type the CLI turns into a one-line message and exit code 2."""


class BlockbenchError(Exception):
    """A user-facing error: bad input, not a bug. str() is the whole message."""


class Terminated(KeyboardInterrupt):
    """SIGTERM on the driver (what CI cancellation sends): handled like Ctrl-C, reported with exit 143."""
