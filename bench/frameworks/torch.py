"""PyTorch: eager tensors, logically NCHW (NHWC is channels_last memory); measures the copy bandwidth."""

from bench.frameworks import Framework


class Torch(Framework):
    name = "torch"
    title = "PyTorch"
    modules = ("torch",)
    requirement = "torch==2.13.0"  # a CPU build; an open range pulls several GB of CUDA packages
    packages = ("torch",)
    backends = ("eager",)
    legacy_prefix = "torch"
    tensors = "torch"
    copy_priority = 3  # a multi-threaded copy_ that honours --threads


FRAMEWORK = Torch()
