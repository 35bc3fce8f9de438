"""PyTorch built-in: F.group_norm with one group per channel, no affine."""

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def torch_group_norm(case):
    channels, eps = case.shape[1], case.eps
    return lambda x: F.group_norm(x, channels, eps=eps)
