"""PyTorch: torch.compile of nn.GroupNorm(G) without affine (compile time is first_call_s)."""

import torch
import torch._dynamo
import torch._functorch.config

from bench.registry import register
from implementations.torch_groupnorm_module import group_norm_module


@register(
    op="group_norm",
    framework="torch",
    layout=("NCHW", "NHWC"),
    std="population",
    eps_at="sqrt",
    backends=("compile",),
    compiled_from="torch_groupnorm_module",
)
def torch_groupnorm_compile(case):
    # As torch_compile: a fresh compile per case, static shapes, no donated buffers in backward.
    torch._dynamo.reset()
    torch._functorch.config.donated_buffer = case.mode != "backward"
    return torch.compile(group_norm_module(case).to(case.device), dynamic=False)
