"""A healthy implementation beside the broken files; no framework prefix: the declaration says torch."""

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", modes=("forward",))
def fine_group_norm(case):
    channels, eps = case.shape[1], case.eps
    return lambda x: F.group_norm(x, channels, eps=eps)
