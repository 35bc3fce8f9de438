"""A variant no list names: returns the previous call's answer (the first call's is right)."""

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_one_late(case):
    last = []

    def forward(x):
        now = F.instance_norm(x, eps=case.eps)
        if not last:
            last.append(now)
            return now
        out, last[0] = last[0], now
        return out

    return forward
