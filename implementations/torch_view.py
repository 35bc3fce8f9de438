"""PyTorch: the article's Example 2, a functional version reshaping with .view()."""

import torch

from bench.registry import register


# .view() needs a contiguous NCHW tensor, so the article's code does not take channels_last input.
@register(framework="torch", layout="NCHW", std="unbiased", eps_at="std", roles=("article",))
def torch_view(case):
    eps = case.eps

    def per_channel_norm_pytorch(x: torch.Tensor) -> torch.Tensor:
        n, c = x.size(0), x.size(1)
        mean = x.view(n, c, -1).mean(dim=2, keepdim=True).view(n, c, 1, 1)
        std = x.view(n, c, -1).std(dim=2, keepdim=True).view(n, c, 1, 1) + eps
        return (x - mean) / std

    return per_channel_norm_pytorch
