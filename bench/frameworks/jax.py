"""JAX: jitted functions on physical NHWC/NCHW arrays; asynchronous dispatch on every device."""

from bench.frameworks import Framework
from bench.frameworks.tensorflow import xla_env


class Jax(Framework):
    name = "jax"
    title = "JAX"
    modules = ("jax",)
    requirement = "jax==0.10.*"
    packages = ("jax", "jaxlib")
    backends = ("jit",)
    legacy_prefix = "jax"
    tensors = "jax"
    copy_priority = 2

    def env(self, threads: int, backend: str | None) -> dict[str, str]:
        return xla_env(threads)


FRAMEWORK = Jax()
