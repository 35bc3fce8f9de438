"""TensorFlow: eager, tf.function or XLA; physical NHWC/NCHW shapes; its own thread pools."""

from bench.frameworks import Framework


def xla_env(threads: int) -> dict[str, str]:
    """XLA's CPU backend (jax, tf_xla) ignores OpenMP variables: one thread needs its own flags."""
    if threads != 1:
        return {}
    return {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


class TensorFlow(Framework):
    name = "tensorflow"
    title = "TensorFlow"
    modules = ("tensorflow",)
    requirement = "tensorflow-cpu==2.21.*"
    packages = ("tensorflow", "tensorflow-cpu")
    backends = ("eager",)
    legacy_prefix = "tf"
    tensors = "tensorflow"
    copy_priority = 1

    def env(self, threads: int, backend: str | None) -> dict[str, str]:
        n = str(threads)
        return {
            "TF_NUM_INTRAOP_THREADS": n,
            "TF_NUM_INTEROP_THREADS": n,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **xla_env(threads),
        }


FRAMEWORK = TensorFlow()
