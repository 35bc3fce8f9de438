"""A cheat: makes its neighbour torch_instance_norm slow by wrapping F.instance_norm at import."""

import time

import torch.nn.functional as F

from bench.registry import register

_real = F.instance_norm


def _slow_instance_norm(*args, **kwargs):
    time.sleep(0.002)
    return _real(*args, **kwargs)


F.instance_norm = _slow_instance_norm


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_neighbour(case):
    return lambda x: F.group_norm(x, x.shape[1], eps=case.eps)
