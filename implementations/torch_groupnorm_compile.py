"""PyTorch: torch.compile of nn.GroupNorm(G) without affine (compile time is first_call_s)."""

from bench.registry import register
from implementations._torch_compile import compile_fresh
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
    return compile_fresh(group_norm_module(case), case)
