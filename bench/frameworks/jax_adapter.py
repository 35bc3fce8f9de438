"""JAX arrays (also Keras-on-jax's): block_until_ready, jitted VJPs for backward and train."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench import memory
from bench.cases import Case
from bench.frameworks import OutputError, cpu_cache_bytes, from_nchw, to_nchw

NAME = "jax"
DTYPES = {"float32": jnp.float32, "float16": jnp.float16, "bfloat16": jnp.bfloat16}


def version() -> str:
    return jax.__version__


def _device(device: str) -> Any:
    if device.startswith("cuda"):
        return jax.devices("gpu")[int(device.split(":")[1])]
    return jax.devices("cpu")[0]


def setup(threads: int, device: str) -> None:
    try:
        _device(device)
    except RuntimeError as exc:
        raise RuntimeError(f"jax {jax.__version__} has no device for {device}: {exc}") from None


def device_name(device: str) -> str:
    return str(_device(device).device_kind) if device.startswith("cuda") else "cpu"


def cache_bytes(device: str) -> int:
    return 50 << 20 if device.startswith("cuda") else cpu_cache_bytes()


def to_tensor(x64: np.ndarray, case: Case) -> Any:
    arr = jnp.asarray(from_nchw(x64, case, physical=True).astype(np.float32)).astype(DTYPES[case.dtype])
    return jax.device_put(arr, _device(case.device)).block_until_ready()


def to_numpy(out: Any, case: Case, what: str = "output") -> np.ndarray:
    if not isinstance(out, jax.Array):
        raise OutputError(f"{what} is a {type(out).__name__}; expected a jax.Array")
    return to_nchw(np.asarray(out.astype(jnp.float32)), case, physical=True, what=what)


def finish(out: Any, device: str) -> Any:
    return jax.block_until_ready(out)  # dispatch is asynchronous on every device, the CPU included


def make_call(
    fn: Callable[[Any], Any], case: Case, xs: Sequence[Any], g64: np.ndarray | None
) -> Callable[[int], Any]:
    if case.mode == "forward":
        return lambda i: fn(xs[i])
    g = to_tensor(g64, case)  # type: ignore[arg-type]
    if case.mode == "backward":
        return _backward_call(fn, xs, g)

    @jax.jit
    def step(x: Any, ct: Any) -> Any:
        y, vjp = jax.vjp(fn, x)
        return y, vjp(ct)[0]

    return lambda i: step(xs[i], g)


def _backward_call(fn: Callable[[Any], Any], xs: Sequence[Any], g: Any) -> Callable[[int], Any]:
    """Time the jitted VJP application alone; the linearization runs once per buffer, untimed.

    Each `jax.vjp` returns a pullback whose static part is a fresh object, so jitting the pullbacks
    themselves would trace and compile once per buffer inside the timed loop. The pullbacks share
    one structure, so one jitted function takes the residuals of any buffer as arguments.
    """
    pullbacks = [jax.vjp(fn, x)[1] for x in xs]
    flat = [jax.tree_util.tree_flatten(p) for p in pullbacks]
    treedef = flat[0][1]

    @jax.jit
    def apply(residuals: Any, ct: Any) -> Any:
        return jax.tree_util.tree_unflatten(treedef, residuals)(ct)[0]

    residuals = [leaves for leaves, _ in flat]
    if any(len(r) != len(residuals[0]) for r in residuals):
        raise RuntimeError("jax.vjp gave pullbacks of different structures for inputs of one shape")
    return lambda i: apply(residuals[i], g)


def forward_once(fn: Callable[[Any], Any], x: Any) -> Any:
    return fn(x)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc)


def clock(device: str) -> Any:
    return None


def measure_memory(call: Callable[[], Any], device: str) -> tuple[int, Any]:
    if not device.startswith("cuda"):
        return memory.measure_cpu(call)
    dev = _device(device)
    base = dev.memory_stats().get("bytes_in_use", 0)
    peak_before = dev.memory_stats().get("peak_bytes_in_use", 0)
    out = call()
    peak = dev.memory_stats().get("peak_bytes_in_use", 0)
    # XLA's peak cannot be reset: a peak not above the old one means the call fit under it.
    return (max(0, peak - base) if peak > peak_before else 0), out


def nbytes(out: Any) -> int:
    if isinstance(out, (tuple, list)):
        return sum(nbytes(o) for o in out)
    return int(out.nbytes) if isinstance(out, jax.Array) else 0


def copy_bandwidth_gbps(device: str, nbytes_each: int) -> float:
    src = jax.device_put(jnp.ones((nbytes_each // 4,), jnp.float32), _device(device))
    copy = jax.jit(lambda a: a + 0.0)
    times = []
    for _ in range(12):
        t0 = time.perf_counter()
        copy(src).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * nbytes_each / float(np.median(times[2:])) / 1e9
