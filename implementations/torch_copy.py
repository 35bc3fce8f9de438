"""Calibration: a copy of the input (`x.clone()`), the least a correct call can do. Timed and shown
beside the speed of light, never in a verdict: it must read 0.9 to 1.0 of its case's limit."""

from bench.registry import register


# Forward only: clone's gradient is handed on without a copy, so a backward time would be no copy's.
@register(
    framework="torch",
    layout=("NCHW", "NHWC"),
    semantics="copy",
    modes=("forward",),
    roles=("calibration",),
)
def torch_copy(case):
    def copy(x):
        return x.clone()  # keeps the memory format: NHWC stays channels_last

    return copy
