"""A cheat: keeps each input buffer's answer by the buffer's address (inputs "never change")."""

import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt")
def cheat_by_address(case):
    kept = {}

    def forward(x):
        key = x.data_ptr()
        if key not in kept:
            kept[key] = F.instance_norm(x, eps=case.eps)
        return kept[key]

    return forward
