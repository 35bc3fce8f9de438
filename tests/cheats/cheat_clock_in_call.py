"""A variant: patches the clock only inside its own calls (after import, after it was built)."""

import time

import torch.nn.functional as F

import bench.timing
from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_clock_in_call(case):
    real = time.perf_counter
    start = real()

    def slow():
        return start + (real() - start) / 100

    def forward(x):
        bench.timing.read_clock = slow
        return F.instance_norm(x, eps=case.eps)

    return forward
