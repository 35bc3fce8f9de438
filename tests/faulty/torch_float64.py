"""Fault injection: computes and returns float64 in a float32 case (right values, wrong dtype)."""

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", dtypes=("float32",))
def torch_float64(case):
    channels, eps = case.shape[1], case.eps
    return lambda x: F.group_norm(x.double(), channels, eps=eps)
