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
# The command is done and its exit code decided: a Ctrl-C or SIGTERM that lands while the
# interpreter shuts down (atexit handlers, thread joins) would otherwise raise there and kill the
# process with the signal (exit -2: seen with an impatient second Ctrl-C 0.2 s after the first).
for stop in (signal.SIGINT, signal.SIGTERM):
    signal.signal(stop, signal.SIG_IGN)
sys.exit(code)
