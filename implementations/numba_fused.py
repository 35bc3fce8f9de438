"""Numba: fused per-plane normalization (forward and input gradient), NCHW and channels_last in place."""

from __future__ import annotations

import os

import numba
import numpy as np
import torch

from bench.registry import register
from implementations import _numba_kernels as kernels

# A unit (an NCHW plane, or a channels_last sample) that is left over after the threads' even
# share is split across all threads only when it is big enough to pay for the extra parallel
# region (~10-20 us): below this the idle thread waits less than that.
SPLIT_MIN_BYTES = 256 * 1024
# Outputs at least this big are written with non-temporal stores (see _numba_kernels.py).
STREAM_MIN_BYTES = 4 * 1024 * 1024


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


def _check(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.device.type != "cpu":
        raise ValueError(f"expected a CPU N,C,H,W tensor, got shape {tuple(x.shape)} on {x.device}")


def _indexable(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    # Contiguous and channels_last tensors are used in place; any other strides are copied once.
    if x.is_contiguous():
        return x, False
    if x.is_contiguous(memory_format=torch.channels_last):
        return x, True
    return x.contiguous(), False


def _launch(name: str, rows: bool, arrays: list[np.ndarray], args: tuple) -> None:
    """Run kernel `name` ("forward"/"backward") over views whose first axis is the units (planes,
    or channels_last samples): a run of whole units per thread, then the rest split across threads.

    Only the kernels a call needs are compiled: the split ones only when some unit is left over."""
    layout = "rows" if rows else "planes"
    whole_kernel = getattr(kernels, f"{name}_{layout}")
    split_kernel = getattr(kernels, f"{name}_{layout}_split")
    x = arrays[0]
    threads = numba.get_num_threads()
    tensors = 2 if name == "backward" else 1
    whole = _whole(x.shape[0], tensors * x[0].nbytes, threads)
    stream = x.nbytes >= STREAM_MIN_BYTES
    if whole:
        whole_kernel(*(a[:whole] for a in arrays), *args, threads, stream)
    if whole < x.shape[0]:
        split_kernel(*(a[whole:] for a in arrays), *args, threads, stream)


def _stats(mean: torch.Tensor, rstd: torch.Tensor, rows: bool) -> list[np.ndarray]:
    """The (N, C) statistics indexed by unit: (N, C) for channels_last samples, (N*C,) for planes."""
    if rows:
        return [mean.numpy(), rstd.numpy()]
    return [mean.numpy().reshape(-1), rstd.numpy().reshape(-1)]


def forward(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y in x's memory format, and the float64 per-plane mean and rstd, each of shape (N, C)."""
    _check(x)
    x, rows = _indexable(x.detach())
    n, c, _, _ = x.shape
    y = torch.empty_like(x)
    mean = torch.empty((n, c), dtype=torch.float64)
    rstd = torch.empty((n, c), dtype=torch.float64)
    if x.numel():
        _launch("forward", rows, [_view(x, rows), _view(y, rows), *_stats(mean, rstd, rows)], (float(eps),))
    return y, mean, rstd


def backward(x: torch.Tensor, dy: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    """dL/dx from x, dL/dy and forward's saved statistics; dx has x's memory format."""
    x, rows = _indexable(x.detach())
    fmt = torch.channels_last if rows else torch.contiguous_format
    dy = dy.detach().to(x.dtype)
    if not dy.is_contiguous(memory_format=fmt):
        dy = dy.contiguous(memory_format=fmt)  # e.g. the expanded ones of y.sum().backward()
    dx = torch.empty_like(x)
    if x.numel():
        views = [_view(x, rows), _view(dy, rows), _view(dx, rows), *_stats(mean, rstd, rows)]
        _launch("backward", rows, views, ())
    return dx


class NumbaInstanceNormFunction(torch.autograd.Function):
    """y = (x - mean) / sqrt(var + eps) per (n, c) plane; saves x, mean and rstd for dx."""

    @staticmethod
    def forward(ctx, x, eps):
        y, mean, rstd = forward(x, eps)
        ctx.save_for_backward(x, mean, rstd)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, mean, rstd = ctx.saved_tensors
        return backward(x, dy, mean, rstd), None


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """F.instance_norm(x, eps=eps) without running stats or affine, on CPU tensors."""
    if torch.is_grad_enabled() and x.requires_grad:
        return NumbaInstanceNormFunction.apply(x, eps)
    return forward(x, eps)[0]


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
)
def numba_fused(case):
    # The run's --threads reaches torch through the worker; give Numba's pool the same count.
    numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    eps = float(case.eps)
    return lambda x: instance_norm(x, eps)
