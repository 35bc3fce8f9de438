"""A cheat: returns at once and has a thread it started when built finish the answer later (its
first call waits). A pool kept from the build is allowed; an answer not there on return is wrong."""

import queue
import threading
import time

import torch
import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_background(case):
    calls = [0]
    todo: queue.Queue = queue.Queue()

    def finish(x, out):
        time.sleep(0.05)
        out.copy_(F.instance_norm(x, eps=case.eps))

    def serve():
        while True:
            finish(*todo.get())

    threading.Thread(target=serve, daemon=True).start()

    def forward(x):
        calls[0] += 1
        out = torch.full_like(x, float("nan"))
        if calls[0] == 1:
            finish(x, out)
        else:
            todo.put((x, out))
        return out

    return forward
