"""python -m bench: the command-line interface."""

import sys

from bench.cli import main

sys.exit(main())
