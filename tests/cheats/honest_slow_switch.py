"""Not a trick: its first call after a pause (its neighbours' sampling rounds) works 150 ms before
it answers, as a framework whose thread pool or caches must warm up again would; calls that follow
one another are as fast as F.instance_norm. Forward only."""

import time

import torch.nn.functional as F

from bench.registry import register

PAUSE_S = 0.02
SWITCH_S = 0.15


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt", modes=("forward",))
def honest_slow_switch(case):
    last = [0.0]

    def forward(x):
        now = time.perf_counter()
        if now - last[0] > PAUSE_S:
            while time.perf_counter() < now + SWITCH_S:  # busy, as a spinning pool would be
                pass
        y = F.instance_norm(x, eps=case.eps)
        last[0] = time.perf_counter()
        return y

    return forward
