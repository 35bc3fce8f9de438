"""A cheat: returns at once and finishes each answer in a thread of its own (its first call waits);
the threads would run on while the next implementation is timed."""

import threading
import time

import torch
import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_thread_per_call(case):
    calls = [0]

    def forward(x):
        calls[0] += 1
        out = torch.empty_like(x)
        out.fill_(float("nan"))

        def finish():
            time.sleep(0.05)
            out.copy_(F.instance_norm(x, eps=case.eps))

        if calls[0] == 1:
            finish()
        else:
            threading.Thread(target=finish, daemon=True).start()
        return out

    return forward
