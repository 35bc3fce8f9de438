"""A variant: turns on deterministic algorithms and flush-to-zero inside its first call."""

import torch
import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_flags(case):
    def forward(x):
        torch.set_flush_denormal(True)
        return F.group_norm(x, x.shape[1], eps=case.eps)

    return forward
