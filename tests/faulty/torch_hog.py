"""Fault injection: allocates without bound."""

import torch

from bench.registry import register


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt")
def torch_hog(case):
    def hog(x):
        held = []
        while True:
            held.append(torch.ones(64 << 18))  # 64 MiB a step, touched

    return hog
