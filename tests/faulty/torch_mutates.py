"""Fault injection: scales its input in place, then normalizes it (its own output looks right)."""

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_mutates(case):
    channels, eps = case.shape[1], case.eps

    def forward(x):
        x.mul_(16)
        return F.group_norm(x, channels, eps=eps)

    return forward
