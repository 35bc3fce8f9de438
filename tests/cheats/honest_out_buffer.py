"""Not a trick: computes the right answer into one reused output buffer on every call (as out=);
forward only, since autograd cannot differentiate through the reused buffer."""

import torch
import torch.nn.functional as F

from bench.registry import register


@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt", modes=("forward",))
def honest_out_buffer(case):
    buffers = {}

    def forward(x):
        out = buffers.get(x.shape)
        if out is None:
            out = buffers[x.shape] = torch.empty_like(x)
        out.copy_(F.instance_norm(x, eps=case.eps))
        return out

    return forward
