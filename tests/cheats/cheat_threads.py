"""A cheat: changes the thread count when built, for everyone measured after it in its worker."""

import torch
import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_threads(case):
    torch.set_num_threads(1 if torch.get_num_threads() > 1 else 2)
    return lambda x: F.group_norm(x, x.shape[1], eps=case.eps)
