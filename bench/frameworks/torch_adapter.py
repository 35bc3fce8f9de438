"""PyTorch tensors (also Triton's and Keras-on-torch's): channels_last for NHWC, CUDA events."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from bench import memory
from bench.cases import Case
from bench.frameworks import Adapter, Clock, OutputError, cpu_cache_bytes
from bench.frameworks._tensors import check_shape, fingerprint_positions, from_nchw, physical_index, to_nchw
from bench.timing import read_clock

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _flat(x: torch.Tensor) -> torch.Tensor:
    """The tensor's storage in memory order (contiguous or channels_last): no copy."""
    return torch.as_strided(x, (x.numel(),), (1,), x.storage_offset())


def spin_rate() -> float | None:
    """Cycles per second of torch's spin kernel (`torch.cuda._sleep`) on this GPU now, or None
    where torch has none."""
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None:
        return None
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    sleep(1000)  # its module loads here, not between the events
    cycles = 2_000_000
    start.record()
    sleep(cycles)
    end.record()
    end.synchronize()
    seconds = start.elapsed_time(end) / 1e3
    return cycles / seconds if seconds > 0 else None


class CudaEventClock:
    """Device time: CUDA events around k back-to-back calls, with the stream held by a spin kernel
    while the host enqueues them (NVBench's blocking kernel), so the events time the GPU's own work
    and not the rate at which Python launches it. Without the hold, the first launch's latency was
    in every sample (one call per sample at large shapes: F.layer_norm at 16x320x64x64 timed 67 us
    against its kernel's 56 on an H200), and a call whose launch costs more host time than its
    kernels run was timed at the launch rate (triton_fused: 107 us against 42). Latency: k calls,
    a sync after each, on the host clock: what a caller waits for."""

    kind = "cuda_event"
    runs_per_measure = 2  # k calls for the latency, k more between the events
    HOLD_MARGIN = 2.0  # hold the stream this many times the host time k calls took (their latency)
    HOLD_EXTRA_S = 50e-6
    MAX_HOLD_S = 0.25

    def __init__(self) -> None:
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)
        self.cycles_per_s = spin_rate()

    def hold(self, seconds: float) -> None:
        if self.cycles_per_s:
            torch.cuda._sleep(int(self.cycles_per_s * min(seconds, self.MAX_HOLD_S)))

    def measure(self, run: Callable[[int, bool], Any], k: int) -> tuple[float, float]:
        torch.cuda.synchronize()
        t0 = read_clock()
        run(k, True)
        latency = (read_clock() - t0) / k
        self.hold(self.HOLD_MARGIN * latency * k + self.HOLD_EXTRA_S)
        self.start.record()
        run(k, False)
        self.end.record()
        self.end.synchronize()
        return latency, self.start.elapsed_time(self.end) / 1e3 / k


class TorchAdapter:
    """torch code sees NHWC as channels_last memory of a logical NCHW tensor; with `physical`
    (Keras on the torch backend) tensors have the physical (N, H, W, C) shape instead."""

    name = "torch"
    mutable_inputs = True

    def __init__(self, physical: bool = False) -> None:
        self.physical = physical

    def version(self) -> str:
        return torch.__version__

    def setup(self, threads: int, device: str) -> None:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set once parallel work started; the intra-op count matters
            pass
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise RuntimeError(f"torch {torch.__version__} sees no CUDA device")
            torch.cuda.set_device(torch.device(device))

    def device_name(self, device: str) -> str:
        if device.startswith("cuda"):
            return torch.cuda.get_device_name(torch.device(device))
        return "cpu"

    def cache_bytes(self, device: str) -> int:
        if device.startswith("cuda"):
            props = torch.cuda.get_device_properties(torch.device(device))
            return int(getattr(props, "L2_cache_size", 50 << 20))
        return cpu_cache_bytes()

    def to_tensor(self, x64: np.ndarray, case: Case) -> torch.Tensor:
        if self.physical:
            return (
                torch.from_numpy(from_nchw(x64, case, physical=True)).to(DTYPES[case.dtype]).to(case.device)
            )
        t = torch.from_numpy(x64).to(DTYPES[case.dtype])
        if case.layout == "NHWC":
            t = t.contiguous(memory_format=torch.channels_last)
        return t.to(case.device)

    def to_numpy(self, out: Any, case: Case, what: str = "output") -> np.ndarray:
        if not isinstance(out, torch.Tensor):
            raise OutputError(f"{what} is a {type(out).__name__}; expected a torch.Tensor")
        arr = out.detach().to("cpu", torch.float64).numpy()
        return to_nchw(arr, case, physical=self.physical, what=what)

    def gather(self, out: Any, case: Case, idx: tuple[np.ndarray, ...], what: str = "output") -> list[float]:
        if not isinstance(out, torch.Tensor):
            raise OutputError(f"{what} is a {type(out).__name__}; expected a torch.Tensor")
        check_shape(tuple(out.shape), case, self.physical, what)
        pos = tuple(torch.as_tensor(a, device=out.device) for a in physical_index(idx, case, self.physical))
        values: list[float] = out.detach()[pos].to("cpu", torch.float64).tolist()
        return values

    def guarded(self) -> list[tuple[str, Any]]:
        spaces = (torch, torch.nn.functional, torch.Tensor, torch.nn)
        return [(space.__name__ if space is not torch.Tensor else "torch.Tensor", space) for space in spaces]

    def global_state(self) -> dict[str, Any]:
        tiny = torch.tensor([1e-39], dtype=torch.float32)
        state = {
            "torch threads": torch.get_num_threads(),
            "torch inter-op threads": torch.get_num_interop_threads(),
            "torch deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
            "torch float32 matmul precision": torch.get_float32_matmul_precision(),
            "torch default dtype": str(torch.get_default_dtype()),
            "torch grad mode": torch.is_grad_enabled(),
            "flush-to-zero": float((tiny * 1.0).item()) == 0.0,
        }
        numba = sys.modules.get("numba")
        if numba is not None:
            state["numba threads"] = numba.get_num_threads()
        return state

    def set_global_state(self, state: dict[str, Any]) -> None:
        torch.set_num_threads(state["torch threads"])
        torch.use_deterministic_algorithms(state["torch deterministic algorithms"])
        torch.set_float32_matmul_precision(state["torch float32 matmul precision"])
        torch.set_default_dtype(getattr(torch, state["torch default dtype"].removeprefix("torch.")))
        torch.set_grad_enabled(state["torch grad mode"])
        torch.set_flush_denormal(state["flush-to-zero"])
        numba = sys.modules.get("numba")
        if numba is not None and "numba threads" in state:
            numba.set_num_threads(state["numba threads"])

    def dtype_name(self, out: Any) -> str:
        return str(out.dtype).removeprefix("torch.") if isinstance(out, torch.Tensor) else type(out).__name__

    def finish(self, out: Any, device: str) -> Any:
        sync(device)
        return out

    def make_call(
        self, fn: Callable[[Any], Any], case: Case, xs: Sequence[Any], g64: np.ndarray | None
    ) -> Callable[[int], Any]:
        """call(i) runs the case's mode on buffer i and returns its output(s)."""
        if case.mode == "forward":

            def forward(i: int) -> Any:
                with torch.no_grad():
                    return fn(xs[i])

            return forward
        assert g64 is not None
        g = self.to_tensor(g64, case)
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

    def forward_once(self, fn: Callable[[Any], Any], x: Any) -> Any:
        with torch.no_grad():
            return fn(x)

    def snapshot(self, xs: Sequence[Any]) -> list[torch.Tensor]:
        return [x.detach().clone(memory_format=torch.preserve_format) for x in xs]

    def changed(self, xs: Sequence[Any], snapshot: Any, full: bool) -> int:
        """Elements that differ from the snapshot: all of them, or a strided sample (cheap)."""
        count = 0
        with torch.no_grad():
            for x, s in zip(xs, snapshot):
                a, b = _flat(x.detach()), _flat(s)
                if not full:
                    sample = fingerprint_positions(a.numel())
                    a, b = a[sample], b[sample]
                count += int((a != b).sum())
        return count

    def restore(self, xs: Sequence[Any], snapshot: Any) -> None:
        # Through .data: the contents come back without bumping the version counter that other
        # implementations' saved graphs check.
        with torch.no_grad():
            for x, s in zip(xs, snapshot):
                x.data.copy_(s)

    def is_oom(self, exc: BaseException) -> bool:
        return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError))

    def clock(self, device: str) -> Clock | None:
        return CudaEventClock() if device.startswith("cuda") else None

    def measure_memory(self, call: Callable[[], Any], device: str) -> tuple[int, Any]:
        """Bytes allocated at the peak of one call above what was allocated before it."""
        if not device.startswith("cuda"):
            return memory.measure_cpu(call)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = call()
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - base), out

    def nbytes(self, out: Any) -> int:
        if isinstance(out, (tuple, list)):
            return sum(self.nbytes(o) for o in out)
        return int(out.numel() * out.element_size()) if isinstance(out, torch.Tensor) else 0

    def copy_pieces(self, device: str, piece_bytes: int, count: int) -> Callable[[Sequence[int]], None]:
        srcs = [torch.full((max(1, piece_bytes // 4),), 1.0, device=device) for _ in range(count)]
        dsts = [torch.empty_like(s) for s in srcs]

        def copy(indices: Sequence[int]) -> None:
            for i in indices:
                dsts[i].copy_(srcs[i])
            sync(device)

        return copy

    def copy_op(self, mode: str) -> Callable[[Any], Any]:
        if mode == "forward":
            return torch.clone  # keeps the memory format: channels_last stays so
        # backward: dx = dy * x, one pass reading the two tensors a normalization's backward reads
        # and writing one (clone's own backward hands the gradient on without any pass)
        return lambda x: x * x.detach()


def make(physical: bool = False) -> Adapter:
    return TorchAdapter(physical)
