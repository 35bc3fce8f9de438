"""PyTorch: torch.compile of the article's Example 3 (compile time is reported as first_call_s)."""

from bench.registry import register
from implementations._torch_compile import compile_fresh
from implementations.torch_module import PerChannelNorm


@register(
    framework="torch",
    layout=("NCHW", "NHWC"),
    std="unbiased",
    eps_at="std",
    backends=("compile",),
    compiled_from="torch_module",
)
def torch_compile(case):
    return compile_fresh(PerChannelNorm(case.eps), case)
