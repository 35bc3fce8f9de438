"""PyTorch built-in for GroupNorm(G): F.group_norm, no affine."""

import torch.nn.functional as F

from bench.registry import register


@register(op="group_norm", framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def torch_groupnorm(case):
    groups, eps = case.params()["num_groups"], case.eps
    return lambda x: F.group_norm(x, groups, eps=eps)
