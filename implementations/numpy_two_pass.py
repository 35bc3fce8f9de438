"""NumPy: two passes over each plane, mean then variance, the textbook InstanceNorm every reader knows."""

import numpy as np

from bench.registry import register


@register(
    framework="numpy",
    layout=("NCHW", "NHWC"),
    std="population",
    eps_at="sqrt",
    modes=("forward",),
    dtypes=("float32", "float16"),
    devices=("cpu",),
)
def numpy_two_pass(case):
    eps = case.eps
    axes = (1, 2) if case.layout == "NHWC" else (2, 3)  # NumPy arrays have the layout's own shape

    def forward(x: np.ndarray) -> np.ndarray:
        # Statistics in float32 at least: float16 squares overflow near its maximum.
        x32 = x.astype(np.float32, copy=False)
        centered = x32 - x32.mean(axis=axes, keepdims=True)
        var = np.mean(centered * centered, axis=axes, keepdims=True)
        return (centered / np.sqrt(var + eps)).astype(x.dtype, copy=False)

    return forward
