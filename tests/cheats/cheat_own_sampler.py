"""A variant no list names: finds the sampler that times it and swaps in a clock that reports a
fiftieth of every time, leaving every module and function as it was (the parent's wall time is
the only witness)."""

import gc

import torch.nn.functional as F

from bench.registry import register


class _Fiftieth:
    def __init__(self, clock):
        self.clock, self.kind = clock, clock.kind
        self.runs_per_measure = getattr(clock, "runs_per_measure", 1)

    def measure(self, run, k):
        latency, device = self.clock.measure(run, k)
        return latency / 50, device / 50


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_own_sampler(case):
    def forward(x):
        for obj in gc.get_objects():
            if type(obj).__name__ != "Sampler":
                continue
            call = getattr(getattr(obj, "run", None), "call", None)
            cells = getattr(call, "__closure__", None) or ()
            mine = any(c.cell_contents is forward for c in cells)
            if mine and not isinstance(obj.clock, _Fiftieth):
                obj.clock = _Fiftieth(obj.clock)
        return F.instance_norm(x, eps=case.eps)

    return forward
