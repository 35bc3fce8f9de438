"""Fault injection for cluster tests: inside a submitit job (SUBMITIT_EXECUTOR set) and with
NORMBENCH_TEST_KILL_JOB set, building it for a plane of 16x16 or more SIGKILLs the job's process
(the worker's parent), as a node failure or an OOM killer would; elsewhere it is group_norm."""

import os
import signal

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", modes=("forward",))
def torch_kills_job(case):
    in_job = os.environ.get("SUBMITIT_EXECUTOR") and os.environ.get("NORMBENCH_TEST_KILL_JOB")
    if in_job and case.shape[2] * case.shape[3] >= 16 * 16:
        os.kill(os.getppid(), signal.SIGKILL)
        os._exit(3)  # no orphan left measuring
    channels, eps = case.shape[1], case.eps
    return lambda x: F.group_norm(x, channels, eps=eps)
