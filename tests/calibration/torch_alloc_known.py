"""Memory calibration: a correct normalization that also touches a known 64 MiB temporary."""

import torch
import torch.nn.functional as F

from bench.registry import register

KNOWN_BYTES = 64 << 20


@register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", modes=("forward",))
def torch_alloc_known(case):
    channels, eps = case.shape[1], case.eps

    def forward(x):
        scratch = torch.ones(KNOWN_BYTES // 4)  # touched, so it is resident, then freed
        del scratch
        return F.group_norm(x, channels, eps=eps)

    return forward
