"""A cheat: computes once and returns that answer for every later input."""

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_cached(case):
    kept = []

    def forward(x):
        if not kept:
            kept.append(F.instance_norm(x, eps=case.eps))
        return kept[0]

    return forward
