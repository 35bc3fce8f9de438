"""For stop tests: building it for a plane of 16x16 or more sends SIGTERM to the `bench run` that
started its worker, as if a scheduler had stopped the run. Not a result, the first times: the row
is `stopped` and --resume tries it again; at the third stop of one run normbench gives up on it
(a `crashed` row), so an implementation cannot make resume loop."""

import os
import signal

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", modes=("forward",))
def torch_stops_its_run(case):
    if case.shape[2] * case.shape[3] >= 16 * 16:
        os.kill(os.getppid(), signal.SIGTERM)
    channels, eps = case.shape[1], case.eps
    return lambda x: F.group_norm(x, channels, eps=eps)
