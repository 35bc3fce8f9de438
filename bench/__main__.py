"""python -m bench: the command-line interface."""

import signal
import sys

from bench.cli import main

try:
    code = main()
except KeyboardInterrupt as exc:
    # A stop repeated in the moment after a command put its handlers back: the command has said
    # what it kept and is ending anyway, so no traceback.
    code = 128 + (exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT)
sys.exit(code)
