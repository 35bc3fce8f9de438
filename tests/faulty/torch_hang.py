"""Fault injection: never returns.

When NORMBENCH_TEST_PIDFILE names a file, the call writes its process id there first, so a test
knows the moment the worker is inside it."""

import os
import time

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_hang(case):
    def hang(x):
        pidfile = os.environ.get("NORMBENCH_TEST_PIDFILE")
        if pidfile:
            with open(pidfile, "a") as f:
                f.write(f"{os.getpid()}\n")
        time.sleep(3600)

    return hang
