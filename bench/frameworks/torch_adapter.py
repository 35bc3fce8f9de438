"""PyTorch tensors (also Triton's and Keras-on-torch's): channels_last for NHWC, CUDA events."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from bench import memory
from bench.cases import Case
from bench.frameworks import OutputError, cpu_cache_bytes, from_nchw, to_nchw

NAME = "torch"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# torch code sees NHWC as channels_last memory of a logical NCHW tensor; Keras on the torch
# backend wants the physical (N, H, W, C) shape instead, like its other backends.
_physical = {"on": False}


def use_physical_shapes(on: bool) -> None:
    _physical["on"] = on


def version() -> str:
    return torch.__version__


def setup(threads: int, device: str) -> None:
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set once parallel work started; the intra-op count matters
        pass
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"torch {torch.__version__} sees no CUDA device")
        torch.cuda.set_device(torch.device(device))


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def cache_bytes(device: str) -> int:
    if device.startswith("cuda"):
        return int(getattr(torch.cuda.get_device_properties(torch.device(device)), "L2_cache_size", 50 << 20))
    return cpu_cache_bytes()


def to_tensor(x64: np.ndarray, case: Case) -> torch.Tensor:
    if _physical["on"]:
        return torch.from_numpy(from_nchw(x64, case, physical=True)).to(DTYPES[case.dtype]).to(case.device)
    t = torch.from_numpy(x64).to(DTYPES[case.dtype])
    if case.layout == "NHWC":
        t = t.contiguous(memory_format=torch.channels_last)
    return t.to(case.device)


def to_numpy(out: Any, case: Case, what: str = "output") -> np.ndarray:
    if not isinstance(out, torch.Tensor):
        raise OutputError(f"{what} is a {type(out).__name__}; expected a torch.Tensor")
    return to_nchw(out.detach().to("cpu", torch.float64).numpy(), case, physical=_physical["on"], what=what)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def finish(out: Any, device: str) -> Any:
    sync(device)
    return out


def make_call(
    fn: Callable[[Any], Any], case: Case, xs: Sequence[Any], g64: np.ndarray | None
) -> Callable[[int], Any]:
    """call(i) runs the case's mode on buffer i and returns its output(s)."""
    if case.mode == "forward":

        def forward(i: int) -> Any:
            with torch.no_grad():
                return fn(xs[i])

        return forward
    g = to_tensor(g64, case)  # type: ignore[arg-type]
    leaves = [x.detach().requires_grad_(True) for x in xs]
    if case.mode == "backward":
        # The forward runs here, once per buffer, outside the timed region; the graph is kept.
        graphs = [(leaf, fn(leaf)) for leaf in leaves]

        def backward(i: int) -> Any:
            leaf, y = graphs[i]
            return torch.autograd.grad(y, leaf, g, retain_graph=True)[0]

        return backward

    def train(i: int) -> Any:
        y = fn(leaves[i])
        return y, torch.autograd.grad(y, leaves[i], g)[0]

    return train


def forward_once(fn: Callable[[Any], Any], x: Any) -> Any:
    with torch.no_grad():
        return fn(x)


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError))


class CudaEventClock:
    """Device time from CUDA events around k back-to-back calls; latency with a sync per call."""

    kind = "cuda_event"

    def __init__(self) -> None:
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def measure(self, run: Callable[[int, bool], Any], k: int) -> tuple[float, float]:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        run(k, True)
        latency = (time.perf_counter() - t0) / k
        self.start.record()
        run(k, False)
        self.end.record()
        self.end.synchronize()
        return latency, self.start.elapsed_time(self.end) / 1e3 / k


def clock(device: str) -> Any:
    if device.startswith("cuda"):
        return CudaEventClock()
    return None


def measure_memory(call: Callable[[], Any], device: str) -> tuple[int, Any]:
    """Bytes allocated at the peak of one call above what was allocated before it."""
    if not device.startswith("cuda"):
        return memory.measure_cpu(call)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = call()
    torch.cuda.synchronize()
    return max(0, torch.cuda.max_memory_allocated() - base), out


def nbytes(out: Any) -> int:
    if isinstance(out, (tuple, list)):
        return sum(nbytes(o) for o in out)
    return int(out.numel() * out.element_size()) if isinstance(out, torch.Tensor) else 0


def copy_bandwidth_gbps(device: str, nbytes_each: int) -> float:
    """Bytes read plus written per second by a large device copy (the speed-of-light reference)."""
    src = torch.randn(nbytes_each // 4, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(12):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * nbytes_each / float(np.median(times[2:])) / 1e9
