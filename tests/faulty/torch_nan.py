"""Fault injection: returns NaNs."""

import torch

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_nan(case):
    return lambda x: torch.full_like(x, float("nan"))
