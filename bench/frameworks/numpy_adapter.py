"""NumPy arrays on the CPU: physical NHWC/NCHW shapes, synchronous, no autograd."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench import memory
from bench.cases import Case
from bench.frameworks import Adapter, Clock, OutputError, cpu_cache_bytes
from bench.frameworks._tensors import check_shape, fingerprint_positions, from_nchw, physical_index, to_nchw

DTYPES = {"float32": np.float32, "float16": np.float16}


class NumpyAdapter:
    name = "numpy"
    mutable_inputs = True

    def __init__(self, physical: bool = True) -> None:
        self.physical = True

    def version(self) -> str:
        return np.__version__

    def setup(self, threads: int, device: str) -> None:
        if device != "cpu":
            raise RuntimeError(f"numpy runs on the CPU only, not on {device}")

    def device_name(self, device: str) -> str:
        return "cpu"

    def cache_bytes(self, device: str) -> int:
        return cpu_cache_bytes()

    def to_tensor(self, x64: np.ndarray, case: Case) -> np.ndarray:
        if case.dtype not in DTYPES:
            raise TypeError(f"numpy has no {case.dtype} dtype")
        return np.ascontiguousarray(from_nchw(x64, case, physical=True), dtype=DTYPES[case.dtype])

    def to_numpy(self, out: Any, case: Case, what: str = "output") -> np.ndarray:
        if not isinstance(out, np.ndarray):
            raise OutputError(f"{what} is a {type(out).__name__}; expected a numpy.ndarray")
        return to_nchw(out, case, physical=True, what=what)

    def gather(self, out: Any, case: Case, idx: tuple[np.ndarray, ...], what: str = "output") -> list[float]:
        if not isinstance(out, np.ndarray):
            raise OutputError(f"{what} is a {type(out).__name__}; expected a numpy.ndarray")
        check_shape(out.shape, case, True, what)
        values: list[float] = np.asarray(out[physical_index(idx, case, True)], dtype=np.float64).tolist()
        return values

    def guarded(self) -> list[tuple[str, Any]]:
        return [("numpy", np)]

    def global_state(self) -> dict[str, Any]:
        return {"numpy error handling": tuple(sorted(np.geterr().items()))}

    def set_global_state(self, state: dict[str, Any]) -> None:
        np.seterr(**dict(state["numpy error handling"]))

    def dtype_name(self, out: Any) -> str:
        return str(out.dtype) if isinstance(out, np.ndarray) else type(out).__name__

    def finish(self, out: Any, device: str) -> Any:
        return out

    def make_call(
        self, fn: Callable[[Any], Any], case: Case, xs: Sequence[Any], g64: np.ndarray | None
    ) -> Callable[[int], Any]:
        if case.mode != "forward":
            raise RuntimeError("NumPy has no autograd: forward only")
        return lambda i: fn(xs[i])

    def forward_once(self, fn: Callable[[Any], Any], x: Any) -> Any:
        return fn(x)

    def snapshot(self, xs: Sequence[Any]) -> list[np.ndarray]:
        return [x.copy() for x in xs]

    def changed(self, xs: Sequence[Any], snapshot: Any, full: bool) -> int:
        count = 0
        for x, s in zip(xs, snapshot):
            a, b = x.reshape(-1), s.reshape(-1)
            if not full:
                sample = fingerprint_positions(a.size)
                a, b = a[sample], b[sample]
            count += int(np.count_nonzero(a != b))
        return count

    def restore(self, xs: Sequence[Any], snapshot: Any) -> None:
        for x, s in zip(xs, snapshot):
            np.copyto(x, s)

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, MemoryError)

    def clock(self, device: str) -> Clock | None:
        return None

    def measure_memory(self, call: Callable[[], Any], device: str) -> tuple[int, Any]:
        return memory.measure_cpu(call)

    def nbytes(self, out: Any) -> int:
        if isinstance(out, (tuple, list)):
            return sum(self.nbytes(o) for o in out)
        return int(out.nbytes) if isinstance(out, np.ndarray) else 0

    def copy_pieces(self, device: str, piece_bytes: int, count: int) -> Callable[[Sequence[int]], None]:
        srcs = [np.ones(max(1, piece_bytes // 4), np.float32) for _ in range(count)]
        dsts = [np.empty_like(s) for s in srcs]

        def copy(indices: Sequence[int]) -> None:
            for i in indices:
                np.copyto(dsts[i], srcs[i])

        return copy

    def copy_op(self, mode: str) -> Callable[[Any], Any]:
        return np.copy


def make(physical: bool = True) -> Adapter:
    return NumpyAdapter(physical)
