"""A cheat: makes the clock normbench reads run ten times slower at import, and does 50x the work."""

import time

import torch.nn.functional as F

import bench.timing
from bench.registry import register

_real = time.perf_counter
_start = _real()


def _slow():
    return _start + (_real() - _start) / 10


time.perf_counter = _slow
bench.timing.read_clock = _slow


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_slow_clock(case):
    def forward(x):
        for _ in range(49):
            F.instance_norm(x, eps=case.eps)
        return F.instance_norm(x, eps=case.eps)

    return forward
