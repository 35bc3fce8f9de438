"""Triton: fused forward/backward kernels, fp32 stats, one read per element when a plane fits on chip."""

import os
from typing import NamedTuple

import torch

# Without CUDA the kernels can only run in Triton's interpreter, and @triton.jit decides which
# mode it is in when the kernels below are defined, so the switch must precede the import.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from bench.registry import register  # noqa: E402

# Block-size heuristic, per plane size P = H*W (span = next_power_of_2(P)). A program owns a tile
# of BLOCK_C planes x BLOCK_S spatial positions, reduced along the spatial axis.
#  - span * BLOCK_C <= MAX_FUSED_TILE: the whole tile stays in registers, so the forward reads x
#    once and writes y once (backward: reads x and dy once, writes dx once). 16384 fp32 values
#    over 16 warps is 32 per thread, the size Triton's own layer-norm tutorial fuses. (Compiled
#    offline for sm_90 the backward, holding x and dy, sits at the 128-register cap there; the
#    limits are untuned on a GPU.)
#  - larger planes loop over LOOP_TILE-element chunks: one pass for the statistics (per-chunk
#    centred sums merged with Chan's formula), one to normalize; x is read twice.
#  - BLOCK_C > 1 batches small planes (span < MIN_TILE) so each program moves a useful amount of
#    data instead of a 49-element 7x7 plane.
#  - channels_last has unit channel stride: a single plane is a stride-C gather, so at least
#    SECTOR_CHANNELS adjacent channels share a tile (8 fp32 = one 32-byte sector) and every load
#    is coalesced. Past the fused limit this prefers the looped path over narrowing the tile,
#    since a third coalesced pass costs less than 8x sector over-fetch.
# Tests lower MAX_FUSED_TILE / LOOP_TILE to reach the looped path with small shapes.
MAX_FUSED_TILE = 16384
LOOP_TILE = 4096
MIN_TILE = 2048
SECTOR_CHANNELS = 8
MAX_WARPS = 16


class Plan(NamedTuple):
    looped: bool
    block_c: int
    block_s: int
    num_warps: int


def plan(channels: int, plane: int, channels_inner: bool) -> Plan:
    """Tile shape and path for planes of `plane` elements (see the heuristic above)."""
    span = triton.next_power_of_2(plane)
    floor = SECTOR_CHANNELS if channels_inner else 1
    block_c = min(triton.next_power_of_2(channels), max(floor, MIN_TILE // span))
    looped = block_c * span > MAX_FUSED_TILE
    block_s = max(LOOP_TILE // block_c, 1) if looped else span
    num_warps = min(MAX_WARPS, max(1, block_c * block_s // 512))
    return Plan(looped, block_c, block_s, num_warps)


@triton.jit
def _tile_start(C, sn, sc, BLOCK_C: tl.constexpr):
    """The program's channel indices and the int64 offset of each of its planes."""
    pid = tl.program_id(0)
    blocks = tl.cdiv(C, BLOCK_C)
    n = pid // blocks
    c = (pid % blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
    return n, c, n.to(tl.int64) * sn + c.to(tl.int64) * sc


@triton.jit
def _cast(v, DTYPE: tl.constexpr, ROUND_BF16: tl.constexpr):
    if ROUND_BF16:
        # Triton's interpreter truncates fp32 -> bf16 (compiled code rounds to nearest even), which
        # biases every |y| low by half an ulp; round by hand there, keeping NaN a NaN.
        bits = v.to(tl.uint32, bitcast=True)
        rounded = tl.where(v == v, bits + 0x7FFF + ((bits >> 16) & 1), bits)
        return (rounded >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        return v.to(DTYPE)


# Every kernel subtracts a pivot, the plane's first element, before anything else: for data like
# 1e4 + 0.01 * noise, x - pivot is exact in fp32 while a mean near 1e4 can only be held to
# 1e4 * 2^-24, a few percent of the spread. The saved "mean" is relative to that pivot, and the
# backward reloads the pivot from x rather than saving it.


@triton.jit
def _forward_fused(
    X,
    Y,
    MEAN,
    RSTD,
    C,
    HW,
    sxn,
    sxc,
    sxs,
    syn,
    syc,
    sys,
    eps,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    n, c, xrow = _tile_start(C, sxn, sxc, BLOCK_C)
    cmask = c < C
    s = tl.arange(0, BLOCK_S)
    mask = cmask[:, None] & (s < HW)[None, :]
    pivot = tl.load(X + xrow, mask=cmask, other=0.0).to(tl.float32)
    x = tl.load(X + xrow[:, None] + s[None, :] * sxs, mask=mask, other=0.0).to(tl.float32)
    x = tl.where(mask, x - pivot[:, None], 0.0)
    mean = tl.sum(x, axis=1) / HW
    d = tl.where(mask, x - mean[:, None], 0.0)
    rstd = tl.rsqrt(tl.sum(d * d, axis=1) / HW + eps)
    yrow = n.to(tl.int64) * syn + c.to(tl.int64) * syc
    y = _cast(d * rstd[:, None], Y.dtype.element_ty, ROUND_BF16)
    tl.store(Y + yrow[:, None] + s[None, :] * sys, y, mask=mask)
    tl.store(MEAN + n * C + c, mean, mask=cmask)
    tl.store(RSTD + n * C + c, rstd, mask=cmask)


@triton.jit
def _forward_looped(
    X,
    Y,
    MEAN,
    RSTD,
    C,
    HW,
    sxn,
    sxc,
    sxs,
    syn,
    syc,
    sys,
    eps,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    n, c, xrow = _tile_start(C, sxn, sxc, BLOCK_C)
    cmask = c < C
    pivot = tl.load(X + xrow, mask=cmask, other=0.0).to(tl.float32)
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    seen = tl.zeros([BLOCK_C], dtype=tl.float32)
    for start in range(0, HW, BLOCK_S):
        s = start + tl.arange(0, BLOCK_S)
        mask = cmask[:, None] & (s < HW)[None, :]
        x = tl.load(X + xrow[:, None] + s[None, :] * sxs, mask=mask, other=0.0).to(tl.float32)
        x = tl.where(mask, x - pivot[:, None], 0.0)
        # Each chunk is centred on its own mean before squaring, then merged (Chan et al.), so
        # no step subtracts two large sums of squares.
        count = tl.minimum(HW - start, BLOCK_S).to(tl.float32)
        chunk_mean = tl.sum(x, axis=1) / count
        d = tl.where(mask, x - chunk_mean[:, None], 0.0)
        total = seen + count
        delta = chunk_mean - mean
        weight = count / total
        mean += delta * weight
        m2 += tl.sum(d * d, axis=1) + delta * delta * seen * weight
        seen = total
    rstd = tl.rsqrt(m2 / HW + eps)
    yrow = n.to(tl.int64) * syn + c.to(tl.int64) * syc
    for start in range(0, HW, BLOCK_S):
        s = start + tl.arange(0, BLOCK_S)
        mask = cmask[:, None] & (s < HW)[None, :]
        x = tl.load(X + xrow[:, None] + s[None, :] * sxs, mask=mask, other=0.0).to(tl.float32)
        y = ((x - pivot[:, None]) - mean[:, None]) * rstd[:, None]
        tl.store(Y + yrow[:, None] + s[None, :] * sys, _cast(y, Y.dtype.element_ty, ROUND_BF16), mask=mask)
    tl.store(MEAN + n * C + c, mean, mask=cmask)
    tl.store(RSTD + n * C + c, rstd, mask=cmask)


# Backward of y = xhat = (x - mean) * rstd over a plane of P elements, with eps inside the sqrt:
# dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)).


@triton.jit
def _backward_fused(
    X,
    DY,
    DX,
    MEAN,
    RSTD,
    C,
    HW,
    sxn,
    sxc,
    sxs,
    sgn,
    sgc,
    sgs,
    sdn,
    sdc,
    sds,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    n, c, xrow = _tile_start(C, sxn, sxc, BLOCK_C)
    cmask = c < C
    s = tl.arange(0, BLOCK_S)
    mask = cmask[:, None] & (s < HW)[None, :]
    mean = tl.load(MEAN + n * C + c, mask=cmask, other=0.0)
    rstd = tl.load(RSTD + n * C + c, mask=cmask, other=0.0)
    pivot = tl.load(X + xrow, mask=cmask, other=0.0).to(tl.float32)
    x = tl.load(X + xrow[:, None] + s[None, :] * sxs, mask=mask, other=0.0).to(tl.float32)
    xhat = tl.where(mask, ((x - pivot[:, None]) - mean[:, None]) * rstd[:, None], 0.0)
    grow = n.to(tl.int64) * sgn + c.to(tl.int64) * sgc
    dy = tl.load(DY + grow[:, None] + s[None, :] * sgs, mask=mask, other=0.0).to(tl.float32)
    mean_dy = tl.sum(dy, axis=1) / HW
    mean_dy_xhat = tl.sum(dy * xhat, axis=1) / HW
    dx = rstd[:, None] * (dy - mean_dy[:, None] - xhat * mean_dy_xhat[:, None])
    drow = n.to(tl.int64) * sdn + c.to(tl.int64) * sdc
    tl.store(DX + drow[:, None] + s[None, :] * sds, _cast(dx, DX.dtype.element_ty, ROUND_BF16), mask=mask)


@triton.jit
def _backward_looped(
    X,
    DY,
    DX,
    MEAN,
    RSTD,
    C,
    HW,
    sxn,
    sxc,
    sxs,
    sgn,
    sgc,
    sgs,
    sdn,
    sdc,
    sds,
    BLOCK_C: tl.constexpr,
    BLOCK_S: tl.constexpr,
    ROUND_BF16: tl.constexpr,
):
    n, c, xrow = _tile_start(C, sxn, sxc, BLOCK_C)
    cmask = c < C
    mean = tl.load(MEAN + n * C + c, mask=cmask, other=0.0)
    rstd = tl.load(RSTD + n * C + c, mask=cmask, other=0.0)
    pivot = tl.load(X + xrow, mask=cmask, other=0.0).to(tl.float32)
    grow = n.to(tl.int64) * sgn + c.to(tl.int64) * sgc
    # Element-wise partial sums, reduced once after the loop: no cross-warp reduction per chunk.
    sum_dy = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
    sum_dy_xhat = tl.zeros([BLOCK_C, BLOCK_S], dtype=tl.float32)
    for start in range(0, HW, BLOCK_S):
        s = start + tl.arange(0, BLOCK_S)
        mask = cmask[:, None] & (s < HW)[None, :]
        x = tl.load(X + xrow[:, None] + s[None, :] * sxs, mask=mask, other=0.0).to(tl.float32)
        xhat = tl.where(mask, ((x - pivot[:, None]) - mean[:, None]) * rstd[:, None], 0.0)
        dy = tl.load(DY + grow[:, None] + s[None, :] * sgs, mask=mask, other=0.0).to(tl.float32)
        sum_dy += dy
        sum_dy_xhat += dy * xhat
    mean_dy = tl.sum(sum_dy, axis=1) / HW
    mean_dy_xhat = tl.sum(sum_dy_xhat, axis=1) / HW
    drow = n.to(tl.int64) * sdn + c.to(tl.int64) * sdc
    for start in range(0, HW, BLOCK_S):
        s = start + tl.arange(0, BLOCK_S)
        mask = cmask[:, None] & (s < HW)[None, :]
        x = tl.load(X + xrow[:, None] + s[None, :] * sxs, mask=mask, other=0.0).to(tl.float32)
        xhat = ((x - pivot[:, None]) - mean[:, None]) * rstd[:, None]
        dy = tl.load(DY + grow[:, None] + s[None, :] * sgs, mask=mask, other=0.0).to(tl.float32)
        dx = rstd[:, None] * (dy - mean_dy[:, None] - xhat * mean_dy_xhat[:, None])
        tl.store(DX + drow[:, None] + s[None, :] * sds, _cast(dx, DX.dtype.element_ty, ROUND_BF16), mask=mask)


# True when the kernels above run in Triton's interpreter (TRITON_INTERPRET=1), not compiled.
INTERPRETED = not isinstance(_forward_fused, triton.runtime.JITFunction)


def _plane_strides(t: torch.Tensor) -> tuple[int, int, int] | None:
    """(n, c, spatial) strides when H and W collapse into one strided index, else None."""
    _, _, h, w = t.shape
    sn, sc, sh, sw = t.stride()
    if w == 1:
        return sn, sc, sh
    if h == 1 or sh == w * sw:
        return sn, sc, sw
    return None


def _indexable(t: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    # NCHW-contiguous and channels_last tensors (all the harness passes, and what autograd hands
    # back for them) are indexed in place; only an exotic view whose H and W do not collapse
    # into one stride is copied.
    strides = _plane_strides(t)
    if strides is None:
        t = t.contiguous()
        strides = _plane_strides(t)
    n, c, h, w = t.shape
    if (h * w - 1) * abs(strides[2]) >= 2**31:
        raise ValueError(f"plane of shape {tuple(t.shape)} with strides {t.stride()} overflows int32 offsets")
    return t, strides  # type: ignore[return-value]


def _check(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected an N,C,H,W tensor, got shape {tuple(x.shape)}")


def _plan_for(x: torch.Tensor, x_strides: tuple[int, int, int]) -> Plan:
    _, channels, h, w = x.shape
    return plan(channels, h * w, channels_inner=channels > 1 and x_strides[1] == 1)


def forward(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y, and the per-plane fp32 (mean - first element of the plane, rstd), each of shape (N, C)."""
    _check(x)
    x, xs = _indexable(x)
    n, c, h, w = x.shape
    y = torch.empty_like(x)
    mean = torch.empty((n, c), dtype=torch.float32, device=x.device)
    rstd = torch.empty((n, c), dtype=torch.float32, device=x.device)
    if x.numel() == 0:
        return y, mean, rstd
    p = _plan_for(x, xs)
    kernel = _forward_looped if p.looped else _forward_fused
    grid = (n * triton.cdiv(c, p.block_c),)
    kernel[grid](
        x,
        y,
        mean,
        rstd,
        c,
        h * w,
        *xs,
        *_plane_strides(y),
        eps,
        BLOCK_C=p.block_c,
        BLOCK_S=p.block_s,
        ROUND_BF16=INTERPRETED and x.dtype == torch.bfloat16,
        num_warps=p.num_warps,
    )
    return y, mean, rstd


def backward(x: torch.Tensor, dy: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
    """dx for the saved forward statistics; dx has x's memory format."""
    x, xs = _indexable(x)
    dy, gs = _indexable(dy)
    n, c, h, w = x.shape
    dx = torch.empty_like(x)
    if x.numel() == 0:
        return dx
    p = _plan_for(x, xs)
    kernel = _backward_looped if p.looped else _backward_fused
    grid = (n * triton.cdiv(c, p.block_c),)
    kernel[grid](
        x,
        dy,
        dx,
        mean,
        rstd,
        c,
        h * w,
        *xs,
        *gs,
        *_plane_strides(dx),
        BLOCK_C=p.block_c,
        BLOCK_S=p.block_s,
        ROUND_BF16=INTERPRETED and x.dtype == torch.bfloat16,
        num_warps=p.num_warps,
    )
    return dx


class PlaneNorm(torch.autograd.Function):
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


# CUDA only in sweeps: on CPU the kernels run in Triton's interpreter, an emulator whose times mean
# nothing; tests/test_triton_fused.py checks them there against the float64 reference.
@register(
    framework="triton",
    layout=("NCHW", "NHWC"),
    std="population",
    eps_at="sqrt",
    devices=("cuda",),
    roles=("own",),
)
def triton_fused(case):
    eps = float(case.eps)
    return lambda x: PlaneNorm.apply(x, eps)
