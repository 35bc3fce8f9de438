"""JAX arrays (also Keras-on-jax's): block_until_ready, jitted VJPs for backward and train."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench import memory
from bench.cases import Case
from bench.frameworks import Adapter, Clock, ImmutableInputs, OutputError, cpu_cache_bytes
from bench.frameworks._tensors import check_shape, from_nchw, physical_index, to_nchw
from bench.timing import read_clock

DTYPES = {"float32": jnp.float32, "float16": jnp.float16, "bfloat16": jnp.bfloat16}


class PipelinedClock:
    """JAX has no device events: device time is k calls dispatched back to back (JAX dispatches
    asynchronously) and one wait for the last, on the host clock. That is the GPU's own time when
    dispatch keeps ahead of it, and the dispatch rate when it does not: an upper bound where the
    torch rows beside it time the GPU alone (`host_pipelined` rows are named in the report's
    caveats). Latency: a wait after each call."""

    kind = "host_pipelined"
    runs_per_measure = 2

    def measure(self, run: Callable[[int, bool], Any], k: int) -> tuple[float, float]:
        t0 = read_clock()
        run(k, True)
        latency = (read_clock() - t0) / k
        t0 = read_clock()
        if k > 1:
            run(k - 1, False)
        run(1, True)  # waits for the last call; one device executes them in order
        return latency, (read_clock() - t0) / k


def _device(device: str) -> Any:
    if device.startswith("cuda"):
        return jax.devices("gpu")[int(device.split(":")[1])]
    return jax.devices("cpu")[0]


class JaxAdapter(ImmutableInputs):
    """Arrays in the physical shape of their layout; immutable, so no implementation can change
    another's input."""

    name = "jax"

    def __init__(self, physical: bool = True) -> None:
        self.physical = True  # a jax array has no memory format apart from its shape

    def version(self) -> str:
        return jax.__version__

    def setup(self, threads: int, device: str) -> None:
        try:
            _device(device)
        except RuntimeError as exc:
            raise RuntimeError(f"jax {jax.__version__} has no device for {device}: {exc}") from None

    def device_name(self, device: str) -> str:
        return str(_device(device).device_kind) if device.startswith("cuda") else "cpu"

    def cache_bytes(self, device: str) -> int:
        return 50 << 20 if device.startswith("cuda") else cpu_cache_bytes()

    def to_tensor(self, x64: np.ndarray, case: Case) -> Any:
        arr = jnp.asarray(from_nchw(x64, case, physical=True).astype(np.float32)).astype(DTYPES[case.dtype])
        return jax.device_put(arr, _device(case.device)).block_until_ready()

    def to_numpy(self, out: Any, case: Case, what: str = "output") -> np.ndarray:
        if not isinstance(out, jax.Array):
            raise OutputError(f"{what} is a {type(out).__name__}; expected a jax.Array")
        return to_nchw(np.asarray(out.astype(jnp.float32)), case, physical=True, what=what)

    def gather(self, out: Any, case: Case, idx: tuple[np.ndarray, ...], what: str = "output") -> list[float]:
        if not isinstance(out, jax.Array):
            raise OutputError(f"{what} is a {type(out).__name__}; expected a jax.Array")
        check_shape(out.shape, case, True, what)
        picked = out[physical_index(idx, case, True)].astype(jnp.float32)
        values: list[float] = np.asarray(picked, dtype=np.float64).tolist()
        return values

    def guarded(self) -> list[tuple[str, Any]]:
        return [("jax", jax), ("jax.numpy", jnp), ("jax.lax", jax.lax), ("jax.nn", jax.nn)]

    def global_state(self) -> dict[str, Any]:
        return {
            f"jax {name}": getattr(jax.config, name, None)
            for name in ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_rank_promotion")
        }

    def set_global_state(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key.startswith("jax ") and value is not None:
                jax.config.update(key.removeprefix("jax "), value)

    def dtype_name(self, out: Any) -> str:
        return str(out.dtype) if isinstance(out, jax.Array) else type(out).__name__

    def finish(self, out: Any, device: str) -> Any:
        return jax.block_until_ready(out)  # dispatch is asynchronous on every device, the CPU included

    def make_call(
        self, fn: Callable[[Any], Any], case: Case, xs: Sequence[Any], g64: np.ndarray | None
    ) -> Callable[[int], Any]:
        if case.mode == "forward":
            return lambda i: fn(xs[i])
        assert g64 is not None
        g = self.to_tensor(g64, case)
        if case.mode == "backward":
            return _backward_call(fn, xs, g)

        @jax.jit
        def step(x: Any, ct: Any) -> Any:
            y, vjp = jax.vjp(fn, x)
            return y, vjp(ct)[0]

        return lambda i: step(xs[i], g)

    def forward_once(self, fn: Callable[[Any], Any], x: Any) -> Any:
        return fn(x)

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc)

    def clock(self, device: str) -> Clock | None:
        return PipelinedClock() if device.startswith("cuda") else None

    def measure_memory(self, call: Callable[[], Any], device: str) -> tuple[int, Any]:
        if not device.startswith("cuda"):
            return memory.measure_cpu(call)
        dev = _device(device)
        base = dev.memory_stats().get("bytes_in_use", 0)
        peak_before = dev.memory_stats().get("peak_bytes_in_use", 0)
        out = call()
        peak = dev.memory_stats().get("peak_bytes_in_use", 0)
        # XLA's peak cannot be reset: a peak not above the old one means the call fit under it.
        return (max(0, peak - base) if peak > peak_before else 0), out

    def nbytes(self, out: Any) -> int:
        if isinstance(out, (tuple, list)):
            return sum(self.nbytes(o) for o in out)
        return int(out.nbytes) if isinstance(out, jax.Array) else 0

    def copy_op(self, mode: str) -> Callable[[Any], Any]:
        return _jitted_copy

    def copy_pieces(self, device: str, piece_bytes: int, count: int) -> Callable[[Sequence[int]], None]:
        each = max(1, piece_bytes // 4)
        srcs = [jax.device_put(jnp.ones((each,), jnp.float32), _device(device)) for _ in range(count)]
        add_zero = jax.jit(lambda a: a + 0.0)  # a new array each call: JAX arrays are immutable

        def copy(indices: Sequence[int]) -> None:
            for i in indices:
                add_zero(srcs[i]).block_until_ready()

        return copy


@jax.custom_vjp
def _copy(x: Any) -> Any:
    """Forward a copy; backward dx = dy * x, one pass over the two tensors a normalization's
    backward reads (a plain copy's gradient is handed on without any pass)."""
    return jnp.copy(x)


_copy.defvjp(lambda x: (jnp.copy(x), x), lambda x, g: (g * x,))
_jitted_copy = jax.jit(_copy)  # as the implementations are: one dispatch, not one per op


def _backward_call(fn: Callable[[Any], Any], xs: Sequence[Any], g: Any) -> Callable[[int], Any]:
    """Time the jitted VJP application alone; the linearization runs once per buffer, untimed.

    A pullback is a pytree: its leaves are the residuals, its structure the linearized function.
    The linearization is jitted too (traced once, its structure kept from that trace): run
    eagerly, op by op, it took ~9 ms per buffer for a Keras layer, and a small case rotates
    through 256 buffers. One jitted application then takes the residuals of any buffer.
    """
    structure: list[Any] = []

    @jax.jit
    def linearize(x: Any) -> Any:
        leaves, treedef = jax.tree_util.tree_flatten(jax.vjp(fn, x)[1])
        structure.append(treedef)
        return leaves

    residuals = [linearize(x) for x in xs]
    if len(structure) != 1:
        raise RuntimeError(f"the linearization was traced {len(structure)} times for inputs of one shape")
    treedef = structure[0]

    @jax.jit
    def apply(leaves: Any, ct: Any) -> Any:
        return jax.tree_util.tree_unflatten(treedef, leaves)(ct)[0]

    return lambda i: apply(residuals[i], g)


def make(physical: bool = True) -> Adapter:
    return JaxAdapter(physical)
