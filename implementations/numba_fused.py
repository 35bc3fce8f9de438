"""Numba: fused per-plane normalization (forward and input gradient), NCHW and channels_last in place."""

from __future__ import annotations

import os
from pathlib import Path

import numba
import numpy as np
import torch

from bench.registry import register
from implementations import _numba_kernels as kernels

# A unit (an NCHW plane, or a channels_last sample) that is left over after the threads' even
# share is split across all threads only when it is big enough to pay for the extra parallel
# region (~10-20 us): below this the idle thread waits less than that.
SPLIT_MIN_BYTES = 256 * 1024


def _cache_bytes() -> dict[int, int]:
    """The size of the largest CPU cache of each level in sysfs, by level ({} if unreadable)."""
    sizes: dict[int, int] = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip()
            size = int(text.rstrip("KMG")) * {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        except (OSError, ValueError):
            continue
        sizes[level] = max(sizes.get(level, 0), size)
    return sizes


def _last_level_cache_bytes() -> int:
    """The largest CPU cache in sysfs (32 MiB if it cannot be read)."""
    return max(_cache_bytes().values(), default=0) or 32 << 20


# A call whose tensors (inputs and output) add up to at least the last-level cache writes its
# output with non-temporal stores (see _numba_kernels.py): the output could not stay cached anyway,
# and skipping the read-for-ownership saves a third of the traffic. Below that, regular stores
# leave the output in cache for whoever reads it next (and an allocator that hands the same
# buffer back): measured at 8x64x56x56 float32 forward, 2 threads, regular stores took 0.08
# ns/element against 0.17 streamed; at 4x64x128x128, 0.30 against 0.26.
STREAM_MIN_BYTES = _last_level_cache_bytes()

# channels_last: a sample's second pass reads it again from L2 while it writes the output. When a
# sample's inputs and output do not fit L2 together, regular stores allocate the output's lines in
# L2 and evict the input lines that the same pass is about to read (the oldest ones in LRU order
# are those not yet re-read), so the pass reads them again from L3; streaming stores bypass L2.
# Measured at 8x64x56x56 float32, 2 threads (800 KB samples, 1 MB L2): forward 0.336 vs 0.358
# ns/element (10th percentiles), backward 0.428 vs 0.464.
ROWS_STREAM_UNIT_BYTES = _cache_bytes().get(2, 1 << 20)


# Numba's OpenMP layer loads the system libgomp, a second runtime beside the one torch ships: two
# thread pools. An idle libgomp thread spins GOMP_SPINCOUNT times (300000, ~5 ms here) before it
# sleeps, so on a 2-core machine each switch between a torch op and a Numba kernel found the
# other pool's spinning thread holding a core and paid a scheduler slice (calls of ~8 ms). Numba's
# pool is started with a short spin (~0.3 ms: longer than the gap between back-to-back calls);
# torch's keeps its own setting. An explicit GOMP_SPINCOUNT in the environment wins.
NUMBA_GOMP_SPINCOUNT = "20000"


def _start_numba_pool() -> None:
    """Launch Numba's thread pool (its libgomp reads GOMP_SPINCOUNT when it loads), then restore
    the environment so nothing started later sees the change."""
    if "GOMP_SPINCOUNT" in os.environ:
        numba.get_num_threads()
        return
    os.environ["GOMP_SPINCOUNT"] = NUMBA_GOMP_SPINCOUNT
    try:
        numba.get_num_threads()  # launches the pool
    finally:
        del os.environ["GOMP_SPINCOUNT"]


_start_numba_pool()


def _storage(t: torch.Tensor) -> np.ndarray:
    """Zero-copy NumPy view in the kernels' element types (float16: uint16, bfloat16: int16 bits)."""
    if t.dtype == torch.float32:
        return t.numpy()
    if t.dtype == torch.float16:
        return t.view(torch.int16).numpy().view(np.uint16)
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy()
    raise TypeError(f"numba_fused supports float32, float16 and bfloat16 tensors, not {t.dtype}")


def _view(t: torch.Tensor, rows: bool) -> np.ndarray:
    n, c, h, w = t.shape
    a = _storage(t)
    if rows:
        return a.transpose(0, 2, 3, 1).reshape(n, h * w, c)
    return a.reshape(n * c, h * w)


def _whole(units: int, unit_bytes: int, threads: int) -> int:
    """How many units the threads take whole; the rest are split across all threads."""
    left = units % threads
    if left and (units < threads or unit_bytes >= SPLIT_MIN_BYTES):
        return units - left
    return units


# (channels_last, mode) -> (kernel taking whole units, kernel splitting units across threads)
_KERNELS = {
    (False, "forward"): (kernels.forward_planes, kernels.forward_planes_split),
    (True, "forward"): (kernels.forward_rows, kernels.forward_rows_split),
    (False, "backward"): (kernels.backward_planes, kernels.backward_planes_split),
    (True, "backward"): (kernels.backward_rows, kernels.backward_rows_split),
}


def _launch(mode: str, rows: bool, arrays: list[np.ndarray], args: tuple) -> None:
    """Run the `mode` kernels over views whose first axis is the units (planes, or channels_last
    samples): runs of whole units, one run per thread, then the units left split across threads.
    Only the kernels a call needs get compiled: the split ones only when a unit is left over."""
    whole_kernel, split_kernel = _KERNELS[rows, mode]
    units = arrays[0].shape[0]
    threads = numba.get_num_threads()
    inputs = 2 if mode == "backward" else 1
    stream = (inputs + 1) * arrays[0].nbytes >= STREAM_MIN_BYTES or (
        rows and (inputs + 1) * arrays[0][0].nbytes > ROWS_STREAM_UNIT_BYTES
    )
    whole = _whole(units, inputs * arrays[0][0].nbytes, threads)
    if whole == units:
        whole_kernel(*arrays, *args, threads, stream)
        return
    if whole:
        whole_kernel(*(a[:whole] for a in arrays), *args, threads, stream)
    split_kernel(*(a[whole:] for a in arrays), *args, threads, stream)


def _indexable(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """x without autograd history, and whether the kernels read it as channels_last rows.
    Contiguous and channels_last tensors are used in place; other strides are copied once."""
    if x.dim() != 4 or x.device.type != "cpu":
        raise ValueError(f"expected a CPU N,C,H,W tensor, got shape {tuple(x.shape)} on {x.device}")
    if x.requires_grad:
        x = x.detach()
    if x.is_contiguous():
        return x, False
    if x.is_contiguous(memory_format=torch.channels_last):
        return x, True
    return x.contiguous(), False


def _unit_stats(stats: np.ndarray, rows: bool) -> list[np.ndarray]:
    """mean and rstd, from one float64 (2, N, C) array, indexed by unit: (N, C) for channels_last
    samples, (N*C,) for planes."""
    return [stats[0], stats[1]] if rows else [stats[0].reshape(-1), stats[1].reshape(-1)]


def _forward(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, np.ndarray]:
    x, rows = _indexable(x)
    y = torch.empty_like(x)
    stats = np.empty((2, x.shape[0], x.shape[1]))
    if y.numel():
        _launch("forward", rows, [_view(x, rows), _view(y, rows), *_unit_stats(stats, rows)], (float(eps),))
    return y, stats


def forward(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y in x's memory format, and the float64 per-plane mean and rstd, each of shape (N, C)."""
    y, stats = _forward(x, eps)
    stats_t = torch.from_numpy(stats)
    return y, stats_t[0], stats_t[1]


def _backward(x: torch.Tensor, dy: torch.Tensor, stats: np.ndarray, eps: float) -> torch.Tensor:
    x, rows = _indexable(x)
    fmt = torch.channels_last if rows else torch.contiguous_format
    if dy.dtype != x.dtype or not dy.is_contiguous(memory_format=fmt):
        dy = dy.to(x.dtype).contiguous(memory_format=fmt)  # e.g. the expanded ones of y.sum().backward()
    if dy.requires_grad:
        dy = dy.detach()
    dx = torch.empty_like(x)
    if dx.numel():
        _launch(
            "backward",
            rows,
            [_view(x, rows), _view(dy, rows), _view(dx, rows), *_unit_stats(stats, rows)],
            (float(eps),),
        )
    return dx


def backward(
    x: torch.Tensor, dy: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, eps: float
) -> torch.Tensor:
    """dL/dx from x, dL/dy and forward's saved statistics (and its eps); dx has x's memory format."""
    return _backward(x, dy, torch.stack([mean, rstd]).to(torch.float64).numpy(), eps)


class NumbaInstanceNormFunction(torch.autograd.Function):
    """y = (x - mean) / sqrt(var + eps) per (n, c) plane; keeps x, mean and rstd for dx."""

    @staticmethod
    def forward(ctx, x, eps):
        y, stats = _forward(x, eps)
        ctx.save_for_backward(x)
        ctx.stats = stats  # float64 (2, N, C): mean and rstd, computed here, never modified
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, dy):
        # The kernels are not differentiable themselves (what once_differentiable would enforce,
        # for ~10 us a call; this check costs nothing).
        if torch.is_grad_enabled():
            raise RuntimeError("numba_fused has no double backward (autograd.grad with create_graph=True)")
        (x,) = ctx.saved_tensors
        return _backward(x, dy, ctx.stats, ctx.eps), None


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """F.instance_norm(x, eps=eps) without running stats or affine, on CPU tensors."""
    if x.requires_grad and torch.is_grad_enabled():
        return NumbaInstanceNormFunction.apply(x, eps)
    return _forward(x, eps)[0]


class NumbaInstanceNorm2d(torch.nn.Module):
    """nn.InstanceNorm2d(C, eps) without affine or running stats, computed by Numba kernels."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return instance_norm(x, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


@register(
    framework="torch",
    layout=("NCHW", "NHWC"),
    std="population",
    eps_at="sqrt",
    modes=("forward", "backward", "train"),
    dtypes=("float32", "float16", "bfloat16"),
    devices=("cpu",),
    roles=("own",),
)
def numba_fused(case):
    # The run's --threads reaches torch through the worker; give Numba's pool the same count.
    numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    eps = float(case.eps)
    return lambda x: instance_norm(x, eps)
