"""PyTorch: the article's Example 3, an nn.Module with mean and std over dim=(2, 3)."""

import torch
from torch import nn

from bench.registry import register


class PerChannelNorm(nn.Module):
    def __init__(self, eps: float) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True) + self.eps  # torch's std is the unbiased one
        return (x - mean) / std


@register(framework="torch", layout=("NCHW", "NHWC"), std="unbiased", eps_at="std", roles=("article",))
def torch_module(case):
    return PerChannelNorm(case.eps).to(case.device)
