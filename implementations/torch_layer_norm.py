"""PyTorch built-in: F.layer_norm over the trailing (H, W) dims, no affine."""

import torch.nn.functional as F

from bench.registry import register


# layer_norm normalizes the trailing dims of a contiguous tensor: channels_last input is copied.
@register(framework="torch", layout=("NCHW", "NHWC"), std="population", eps_at="sqrt", layout_copy=("NHWC",))
def torch_layer_norm(case):
    plane, eps = case.shape[2:], case.eps
    return lambda x: F.layer_norm(x, plane, eps=eps)
