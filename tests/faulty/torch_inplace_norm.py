"""Fault injection: normalizes its input in place and returns it."""

import torch

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_inplace_norm(case):
    eps = case.eps

    def forward(x):
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        return x.sub_(mean).div_((var + eps).sqrt())

    return forward
