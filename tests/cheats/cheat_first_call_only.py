"""A cheat: right on its first call (the one a naive harness checks), uninitialised memory after."""

import torch
import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_first_call_only(case):
    calls = [0]

    def forward(x):
        calls[0] += 1
        return F.instance_norm(x, eps=case.eps) if calls[0] == 1 else torch.empty_like(x)

    return forward
