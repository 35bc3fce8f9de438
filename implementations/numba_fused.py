"""Numba: fused per-plane normalization (forward and input gradient), NCHW and channels_last in place."""

from __future__ import annotations

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


def _whole(units: int, unit_bytes: int) -> int:
    """How many units the threads take whole; the kernels split the rest across threads."""
    threads = numba.get_num_threads()
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


def _plan(x: torch.Tensor, rows: bool, tensors: int) -> tuple[int, int, bool]:
    """(whole, chunks, stream) for the kernels: units taken whole, threads, streaming stores."""
    n, c, h, w = x.shape
    units, unit_elements = (n, c * h * w) if rows else (n * c, h * w)
    whole = _whole(units, tensors * unit_elements * x.element_size())
    return whole, numba.get_num_threads(), x.numel() * x.element_size() >= STREAM_MIN_BYTES


def forward(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y in x's memory format, and the float64 per-plane mean and rstd, each of shape (N, C)."""
    _check(x)
    x, rows = _indexable(x.detach())
    n, c, _, _ = x.shape
    y = torch.empty_like(x)
    mean = torch.empty((n, c), dtype=torch.float64)
    rstd = torch.empty((n, c), dtype=torch.float64)
    if x.numel() == 0:
        return y, mean, rstd
    kernel = kernels.forward_rows if rows else kernels.forward_planes
    stats = (mean.numpy(), rstd.numpy()) if rows else (mean.numpy().reshape(-1), rstd.numpy().reshape(-1))
    kernel(_view(x, rows), _view(y, rows), *stats, float(eps), *_plan(x, rows, 1))
    return y, mean, rstd


def backward(x: torch.Tensor, dy: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    """dL/dx from x, dL/dy and forward's saved statistics; dx has x's memory format."""
    x, rows = _indexable(x.detach())
    fmt = torch.channels_last if rows else torch.contiguous_format
    dy = dy.detach().to(x.dtype)
    if not dy.is_contiguous(memory_format=fmt):
        dy = dy.contiguous(memory_format=fmt)  # e.g. the expanded ones of y.sum().backward()
    dx = torch.empty_like(x)
    if x.numel() == 0:
        return dx
    kernel = kernels.backward_rows if rows else kernels.backward_planes
    stats = (mean.numpy(), rstd.numpy()) if rows else (mean.numpy().reshape(-1), rstd.numpy().reshape(-1))
    kernel(_view(x, rows), _view(dy, rows), _view(dx, rows), *stats, *_plan(x, rows, 2))
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
