"""For stop tests: building it for a plane of 16x16 or more puts SIGTERM back to its default and
sends it to its own process, which dies of it. The run was not stopped: the implementation is
blamed (`crashed`, killed by SIGTERM), as for any other signal it brings on itself."""

import os
import signal

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", modes=("forward",))
def torch_sigterms_itself(case):
    if case.shape[2] * case.shape[3] >= 16 * 16:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
    channels, eps = case.shape[1], case.eps
    return lambda x: F.group_norm(x, channels, eps=eps)
