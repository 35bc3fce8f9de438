"""Keras 3: one worker group per backend (Keras fixes its backend at import), the backend's tensors
in their physical NHWC/NCHW shape."""

from bench.frameworks import Framework, frameworks


class Keras(Framework):
    name = "keras"
    title = "Keras"
    modules = ("keras",)
    requirement = "keras==3.15.*"
    packages = ("keras",)
    backends = ("tensorflow", "jax", "torch")
    known_backends = ("tensorflow", "jax", "torch")
    legacy_prefix = "keras"
    physical_shapes = True  # keras.Input(shape=(h, w, c)) on every backend, torch's included
    per_backend_groups = True

    def missing(self, backend: str | None = None) -> str | None:
        reason = super().missing()
        if reason or backend is None:
            return reason
        backend_reason = frameworks()[backend].missing()
        return f"keras backend {backend} is not installed" if backend_reason else None

    def env(self, threads: int, backend: str | None) -> dict[str, str]:
        inner = frameworks()[backend].env(threads, None) if backend else {}
        return {**inner, **({"KERAS_BACKEND": backend} if backend else {})}


FRAMEWORK = Keras()
