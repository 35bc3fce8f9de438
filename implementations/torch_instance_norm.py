"""PyTorch built-in: F.instance_norm without running stats or affine."""

import torch.nn.functional as F

from bench.registry import register


# instance_norm reshapes to (1, N*C, H, W) through .contiguous(): channels_last input is copied.
@register(
    framework="torch",
    layout=("NCHW", "NHWC"),
    std="population",
    eps_at="sqrt",
    layout_copy=("NHWC",),
    roles=("baseline",),
)
def torch_instance_norm(case):
    eps = case.eps
    return lambda x: F.instance_norm(x, eps=eps)
