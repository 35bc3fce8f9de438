"""TensorFlow tensors (also Keras-on-tensorflow's): memory growth on GPU, persistent tapes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from bench import memory
from bench.cases import Case
from bench.frameworks import Adapter, Clock, ImmutableInputs, OutputError, cpu_cache_bytes
from bench.frameworks._tensors import check_shape, from_nchw, physical_index, to_nchw

DTYPES = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}


def _tf_device(device: str) -> str:
    return "/GPU:" + device.split(":")[1] if device.startswith("cuda") else "/CPU:0"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        tf.test.experimental.sync_devices()


class TensorFlowAdapter(ImmutableInputs):
    """Tensors in the physical shape of their layout; immutable (tf.Variable aside)."""

    name = "tensorflow"

    def __init__(self, physical: bool = True) -> None:
        self.physical = True

    def version(self) -> str:
        return str(tf.__version__)

    def setup(self, threads: int, device: str) -> None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:  # must not grab the whole card
            tf.config.experimental.set_memory_growth(gpu, True)
        if device.startswith("cuda") and not gpus:
            raise RuntimeError(f"tensorflow {tf.__version__} sees no GPU (a CPU-only build?)")

    def device_name(self, device: str) -> str:
        if device.startswith("cuda"):
            details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
            return str(details.get("device_name", "GPU"))
        return "cpu"

    def cache_bytes(self, device: str) -> int:
        return 50 << 20 if device.startswith("cuda") else cpu_cache_bytes()

    def to_tensor(self, x64: np.ndarray, case: Case) -> Any:
        with tf.device(_tf_device(case.device)):
            t = tf.constant(from_nchw(x64, case, physical=True).astype(np.float32))
            return tf.cast(t, DTYPES[case.dtype]) if case.dtype != "float32" else tf.identity(t)

    def to_numpy(self, out: Any, case: Case, what: str = "output") -> np.ndarray:
        if not tf.is_tensor(out) and not hasattr(out, "numpy"):
            raise OutputError(f"{what} is a {type(out).__name__}; expected a tf.Tensor")
        return to_nchw(np.asarray(tf.cast(out, tf.float64).numpy()), case, physical=True, what=what)

    def gather(self, out: Any, case: Case, idx: tuple[np.ndarray, ...], what: str = "output") -> list[float]:
        if not tf.is_tensor(out) and not hasattr(out, "numpy"):
            raise OutputError(f"{what} is a {type(out).__name__}; expected a tf.Tensor")
        check_shape(tuple(out.shape), case, True, what)
        at = np.stack(physical_index(idx, case, True), axis=1)
        values: list[float] = tf.cast(tf.gather_nd(out, at), tf.float64).numpy().tolist()
        return values

    def guarded(self) -> list[tuple[str, Any]]:
        return [("tensorflow", tf), ("tensorflow.math", tf.math), ("tensorflow.nn", tf.nn)]

    def global_state(self) -> dict[str, Any]:
        return {
            "tensorflow intra-op threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tensorflow inter-op threads": tf.config.threading.get_inter_op_parallelism_threads(),
        }

    def set_global_state(self, state: dict[str, Any]) -> None:
        try:  # once the runtime has started, TensorFlow refuses; the change is still named
            tf.config.threading.set_intra_op_parallelism_threads(state["tensorflow intra-op threads"])
            tf.config.threading.set_inter_op_parallelism_threads(state["tensorflow inter-op threads"])
        except RuntimeError:
            pass

    def dtype_name(self, out: Any) -> str:
        return str(out.dtype.name) if tf.is_tensor(out) else type(out).__name__

    def finish(self, out: Any, device: str) -> Any:
        sync(device)
        return out

    def make_call(
        self, fn: Callable[[Any], Any], case: Case, xs: Sequence[Any], g64: np.ndarray | None
    ) -> Callable[[int], Any]:
        if case.mode == "forward":
            return lambda i: fn(xs[i])
        assert g64 is not None
        g = self.to_tensor(g64, case)
        if case.mode == "backward":
            # A persistent tape per buffer: the forward is recorded once, outside the timed region.
            tapes = []
            for x in xs:
                with tf.GradientTape(persistent=True) as tape:
                    tape.watch(x)
                    y = fn(x)
                tapes.append((tape, y))

            def backward(i: int) -> Any:
                tape, y = tapes[i]
                return tape.gradient(y, xs[i], output_gradients=g)

            return backward

        def train(i: int) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(xs[i])
                y = fn(xs[i])
            return y, tape.gradient(y, xs[i], output_gradients=g)

        return train

    def forward_once(self, fn: Callable[[Any], Any], x: Any) -> Any:
        return fn(x)

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, (tf.errors.ResourceExhaustedError, MemoryError))

    def clock(self, device: str) -> Clock | None:
        return None  # host clock with sync_devices: TF exposes no device events to Python

    def measure_memory(self, call: Callable[[], Any], device: str) -> tuple[int, Any]:
        if not device.startswith("cuda"):
            return memory.measure_cpu(call)
        name = "GPU:" + device.split(":")[1]
        sync(device)
        base = tf.config.experimental.get_memory_info(name)["current"]
        tf.config.experimental.reset_memory_stats(name)
        out = call()
        sync(device)
        return max(0, tf.config.experimental.get_memory_info(name)["peak"] - base), out

    def nbytes(self, out: Any) -> int:
        if isinstance(out, (tuple, list)):
            return sum(self.nbytes(o) for o in out)
        return int(np.prod(out.shape)) * out.dtype.size if tf.is_tensor(out) else 0

    def copy_op(self, mode: str) -> Callable[[Any], Any]:
        return _copy

    def copy_pieces(self, device: str, piece_bytes: int, count: int) -> Callable[[Sequence[int]], None]:
        with tf.device(_tf_device(device)):
            srcs = [tf.ones((max(1, piece_bytes // 4),)) for _ in range(count)]

        def copy(indices: Sequence[int]) -> None:
            with tf.device(_tf_device(device)):
                for i in indices:
                    out = tf.identity(srcs[i] + 0.0)
                    del out
            sync(device)

        return copy


@tf.custom_gradient
def _copy(x: Any) -> Any:
    """Forward a copy into a new buffer (DeepCopy, which no graph optimizer removes: tf.identity
    may hand back the same buffer); backward dx = dy * x, one pass over the two tensors a
    normalization's backward reads."""
    return tf.raw_ops.DeepCopy(x=x), lambda g: g * x


def make(physical: bool = True) -> Adapter:
    return TensorFlowAdapter(physical)
