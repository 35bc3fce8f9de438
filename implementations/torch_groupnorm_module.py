"""PyTorch built-in for GroupNorm(G): nn.GroupNorm without affine, as a model holds it."""

import torch

from bench.registry import register


def group_norm_module(case):
    return torch.nn.GroupNorm(case.params()["num_groups"], case.shape[1], eps=case.eps, affine=False)


@register(op="group_norm", framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def torch_groupnorm_module(case):
    return group_norm_module(case).to(case.device)
