"""The one user-facing error type: its message names the bad value and what was expected."""


class BenchError(Exception):
    """Raised for bad input or an unusable environment; the CLI prints it as one line, exit code 2."""
