"""Fault injection: kills its own worker with SIGSEGV on the first call."""

import os
import signal

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_segfault(case):
    def crash(x):
        os.kill(os.getpid(), signal.SIGSEGV)

    return crash
