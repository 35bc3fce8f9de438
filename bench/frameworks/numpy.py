"""NumPy: plain arrays on the CPU, NCHW or physical NHWC; no autograd, so forward only."""

from bench.frameworks import Framework


class NumPy(Framework):
    name = "numpy"
    title = "NumPy"
    modules = ("numpy",)
    packages = ("numpy",)
    backends = ("numpy",)
    legacy_prefix = "numpy"
    tensors = "numpy"
    physical_shapes = True
    no_autograd = "NumPy has no autograd: forward only"


FRAMEWORK = NumPy()
