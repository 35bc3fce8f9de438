"""Allocator calibration: a correct normalization that also fills and frees 384 MiB of temporaries in
16 MiB blocks each call, under glibc's mmap threshold, so they come from and go back to the heap."""

import torch
import torch.nn.functional as F

from bench.registry import register

BLOCKS, BLOCK_FLOATS = 24, 4 << 20


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt", modes=("forward",))
def torch_hungry(case):
    channels, eps = case.shape[1], case.eps

    def forward(x):
        scratch = [torch.ones(BLOCK_FLOATS) for _ in range(BLOCKS)]  # touched: resident, then freed
        del scratch
        return F.group_norm(x, channels, eps=eps)

    return forward
