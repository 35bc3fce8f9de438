"""Fault injection: its builder forks a child that outlives the call and holds the worker's pipes.

The child's pid goes to the file named by NORMBENCH_TEST_PIDFILE, so a test can check it is gone.
"""

import os
import time

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", modes=("forward",))
def torch_forks(case):
    pid = os.fork()
    if pid == 0:  # the child: sleeps, keeping every inherited file descriptor open
        time.sleep(120)
        os._exit(0)
    pidfile = os.environ.get("NORMBENCH_TEST_PIDFILE")
    if pidfile:
        with open(pidfile, "a") as f:
            f.write(f"{pid}\n")
    channels, eps = case.shape[1], case.eps
    return lambda x: F.group_norm(x, channels, eps=eps)
