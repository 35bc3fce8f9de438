"""Triton: kernels launched on torch tensors (CUDA; on CPU only Triton's interpreter runs them)."""

from bench.frameworks import Framework


class Triton(Framework):
    name = "triton"
    title = "Triton"
    modules = ("triton", "torch")
    requirement = "triton==3.9.*"
    packages = ("triton",)
    backends = ("triton",)
    legacy_prefix = "triton"
    tensors = "torch"


FRAMEWORK = Triton()
