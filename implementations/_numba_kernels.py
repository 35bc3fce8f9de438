"""Numba kernels behind numba_fused: per-plane statistics, normalize and its input gradient.

Arrays arrive as zero-copy views in one of two shapes (see numba_fused.py):
  planes (R, P):    NCHW, one contiguous plane of P = H*W elements per row, R = N*C planes;
  rows   (N, P, C): channels_last, a sample is P rows of C channels.
Element types: float32 as float32, float16 as uint16 bits, bfloat16 as int16 bits (NumPy has no
bfloat16 and Numba no float16; the two integer types only tell the codecs below apart). Every
kernel computes in float32 or float64 and rounds once on store.

Numerics (notes/numba.md has the error bounds):
  - statistics are sums shifted by a pivot K, the plane's first element, accumulated in float64:
    d = x - K is exact in float64, and (K - mean)^2 <= P * var because K is one of the samples,
    so S2/P - (S1/P)^2 cancels at most a factor P + 1, far inside float64's 2^-53;
  - the output is ((x - K) - (mean - K)) * rstd in float32: x - K is exact for the 1e4 + noise
    case (Sterbenz), and mean - K is small, so no float32 rounding of a mean near 1e4 enters.
Parallel plans: one thread owns a whole unit (plane or sample) and makes both passes over it
while it is in its cache; units left over after the even share are split across all threads,
chunk statistics merged by summing shifted sums (Chan's merge with a common shift is a sum),
then normalized chunk by chunk by the thread that read the chunk.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

# Reassociation lets LLVM vectorise the reductions over a plane (several float64 accumulators);
# no nnan/ninf, so NaN and inf still propagate, and nothing else is reordered.
REDUCE_MATH = {"reassoc", "contract"}
JIT = {"cache": True, "nogil": True}


# ---------------------------------------------------------------------------------------------
# Codecs: storage type <-> float32.


@intrinsic
def _half_to_f32(typingctx, bits):
    """IEEE half bits -> float32 (LLVM's fpext: one vcvtph2ps per vector with F16C)."""

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


@intrinsic
def _f32_to_half(typingctx, value):
    """float32 -> IEEE half bits, rounded to nearest even (LLVM's fptrunc: vcvtps2ph)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(types.float32), codegen


@nb.njit(inline="always")
def _bf16_to_f32(bits):
    return np.uint32(np.uint16(bits)) << np.uint32(16)


def to_f32(v):
    """Storage element -> float32."""


def from_f32(v, like):
    """float32 -> the storage type of the array `like`."""


@overload(to_f32, inline="always")
def _to_f32(v):
    if v == types.float32:
        return lambda v: v
    if v == types.uint16:
        return lambda v: _half_to_f32(v)
    if v == types.int16:
        return lambda v: _bits_f32(_bf16_to_f32(v))
    raise TypeError(f"no float32 codec for {v}")


@overload(from_f32, inline="always")
def _from_f32(v, like):
    dtype = like.dtype
    if dtype == types.float32:
        return lambda v, like: v
    if dtype == types.uint16:
        return lambda v, like: _f32_to_half(v)
    if dtype == types.int16:

        def bf16(v, like):
            bits = _f32_bits(v)
            rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
            # NaN stays a (quiet) NaN instead of rounding into inf
            out = (bits | np.uint32(0x400000)) if v != v else rounded
            return np.int16(np.uint16(out >> np.uint32(16)))

        return bf16
    raise TypeError(f"no float32 codec for arrays of {dtype}")


@intrinsic
def _bits_f32(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def _f32_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


# ---------------------------------------------------------------------------------------------
# Shared pieces.


@nb.njit(**JIT)
def _rstd(s1, s2, count, eps):
    """(mean - K, rstd) from shifted sums over `count` elements (population variance)."""
    m = s1 / count
    var = max(s2 / count - m * m, 0.0)
    return m, 1.0 / math.sqrt(var + eps)


@nb.njit(fastmath=REDUCE_MATH, **JIT)
def _plane_sums(x, k):
    """Shifted sums S1 = sum(x - k), S2 = sum((x - k)^2), in float64."""
    s1 = 0.0
    s2 = 0.0
    for i in range(x.shape[0]):
        d = np.float64(to_f32(x[i])) - k
        s1 += d
        s2 += d * d
    return s1, s2


@nb.njit(**JIT)
def _plane_normalize(x, y, k, m, rs):
    kf, mf, rsf = np.float32(k), np.float32(m), np.float32(rs)
    for i in range(x.shape[0]):
        y[i] = from_f32(((to_f32(x[i]) - kf) - mf) * rsf, y)


@nb.njit(fastmath=REDUCE_MATH, **JIT)
def _plane_grad_sums(x, g, k):
    """sum(g) and sum(g * (x - k)), in float64."""
    sg = 0.0
    sgd = 0.0
    for i in range(x.shape[0]):
        gi = np.float64(to_f32(g[i]))
        sg += gi
        sgd += gi * (np.float64(to_f32(x[i])) - k)
    return sg, sgd


@nb.njit(**JIT)
def _grad_coefs(sg, sgd, count, m, rs):
    """dx = a*g + b - xhat*c with xhat = ((x - K) - m) * rs, from sum(g), sum(g*(x - K))."""
    mean_g = sg / count
    mean_gxhat = rs * (sgd / count - m * mean_g)
    return rs, -rs * mean_g, rs * mean_gxhat


@nb.njit(**JIT)
def _plane_grad(x, g, dx, k, m, rs, a, b, c):
    kf, mf, rsf = np.float32(k), np.float32(m), np.float32(rs)
    af, bf, cf = np.float32(a), np.float32(b), np.float32(c)
    for i in range(x.shape[0]):
        xhat = ((to_f32(x[i]) - kf) - mf) * rsf
        dx[i] = from_f32(af * to_f32(g[i]) + bf - xhat * cf, dx)


@nb.njit(**JIT)
def _chunk(i, chunks, count):
    """[start, stop) of chunk i of `chunks` near-equal chunks of range(count)."""
    return i * count // chunks, (i + 1) * count // chunks


# ---------------------------------------------------------------------------------------------
# NCHW: planes (R, P).


@nb.njit(parallel=True, **JIT)
def forward_planes(x, y, mean, rstd, eps, whole, chunks):
    """y = normalize(x) per row; rows [0, whole) one thread each, the rest split across threads.

    mean, rstd: float64 (R,)."""
    rows, p = x.shape
    for r in nb.prange(whole):
        k = np.float64(to_f32(x[r, 0]))
        s1, s2 = _plane_sums(x[r], k)
        m, rs = _rstd(s1, s2, p, eps)
        _plane_normalize(x[r], y[r], k, m, rs)
        mean[r] = k + m
        rstd[r] = rs
    left = rows - whole
    if left == 0:
        return
    sums = np.zeros((left * chunks, 2))
    for t in nb.prange(left * chunks):
        r = whole + t // chunks
        start, stop = _chunk(t % chunks, chunks, p)
        sums[t, 0], sums[t, 1] = _plane_sums(x[r, start:stop], np.float64(to_f32(x[r, 0])))
    for t in nb.prange(left * chunks):
        r = whole + t // chunks
        k = np.float64(to_f32(x[r, 0]))
        first = t - t % chunks
        m, rs = _rstd(sums[first : first + chunks, 0].sum(), sums[first : first + chunks, 1].sum(), p, eps)
        start, stop = _chunk(t % chunks, chunks, p)
        _plane_normalize(x[r, start:stop], y[r, start:stop], k, m, rs)
        if t == first:
            mean[r] = k + m
            rstd[r] = rs


@nb.njit(parallel=True, **JIT)
def backward_planes(x, g, dx, mean, rstd, whole, chunks):
    """dx from x, upstream g and the saved float64 mean and rstd, planes as in forward_planes."""
    rows, p = x.shape
    for r in nb.prange(whole):
        k = np.float64(to_f32(x[r, 0]))
        m, rs = mean[r] - k, rstd[r]
        sg, sgd = _plane_grad_sums(x[r], g[r], k)
        a, b, c = _grad_coefs(sg, sgd, p, m, rs)
        _plane_grad(x[r], g[r], dx[r], k, m, rs, a, b, c)
    left = rows - whole
    if left == 0:
        return
    sums = np.zeros((left * chunks, 2))
    for t in nb.prange(left * chunks):
        r = whole + t // chunks
        start, stop = _chunk(t % chunks, chunks, p)
        sums[t, 0], sums[t, 1] = _plane_grad_sums(
            x[r, start:stop], g[r, start:stop], np.float64(to_f32(x[r, 0]))
        )
    for t in nb.prange(left * chunks):
        r = whole + t // chunks
        k = np.float64(to_f32(x[r, 0]))
        m, rs = mean[r] - k, rstd[r]
        first = t - t % chunks
        a, b, c = _grad_coefs(
            sums[first : first + chunks, 0].sum(), sums[first : first + chunks, 1].sum(), p, m, rs
        )
        start, stop = _chunk(t % chunks, chunks, p)
        _plane_grad(x[r, start:stop], g[r, start:stop], dx[r, start:stop], k, m, rs, a, b, c)


# ---------------------------------------------------------------------------------------------
# channels_last: rows (N, P, C). A sample's rows are read as flat blocks of q rows, T = q*C
# elements, with per-channel vectors tiled q times to length T: every inner loop runs over T
# contiguous elements whatever C is (C=3 or C=9 vectorise as well as C=64), without
# reassociation, and each channel's sums keep a fixed order. Pass 1 takes four blocks per step so
# the float64 accumulators (in L1) are loaded and stored once per four blocks.

TILE = 512  # elements per block, about: T = q*C with q = max(1, TILE // C)


@nb.njit(**JIT)
def _tile_rows(c):
    return max(1, TILE // c)


@nb.njit(**JIT)
def _blocks(x, q):
    """Rows x (P, C) as full blocks (P // q, q*C) and the flat tail of the P % q rows left."""
    rows, cs = x.shape
    full = rows // q * q * cs
    flat = x.reshape(-1)
    return flat[:full].reshape(rows // q, q * cs), flat[full:]


@nb.njit(**JIT)
def _tiled_pivot(x, q):
    """The sample's first row, float64, tiled q times."""
    cs = x.shape[1]
    k = np.empty(q * cs)
    for j in range(q * cs):
        k[j] = to_f32(x[0, j % cs])
    return k


@nb.njit(**JIT)
def _rows_sums(x, q, kt, st):
    """st[0, j] += sum(x - kt[j]), st[1, j] += sum((x - kt[j])^2) over the rows x, tiled."""
    full, tail = _blocks(x, q)
    t = kt.shape[0]
    quads = full.shape[0] // 4 * 4
    for b in range(0, quads, 4):
        for j in range(t):
            d0 = np.float64(to_f32(full[b, j])) - kt[j]
            d1 = np.float64(to_f32(full[b + 1, j])) - kt[j]
            d2 = np.float64(to_f32(full[b + 2, j])) - kt[j]
            d3 = np.float64(to_f32(full[b + 3, j])) - kt[j]
            st[0, j] += (d0 + d1) + (d2 + d3)
            st[1, j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
    for b in range(quads, full.shape[0]):
        for j in range(t):
            d = np.float64(to_f32(full[b, j])) - kt[j]
            st[0, j] += d
            st[1, j] += d * d
    for j in range(tail.shape[0]):
        d = np.float64(to_f32(tail[j])) - kt[j]
        st[0, j] += d
        st[1, j] += d * d


@nb.njit(**JIT)
def _fold(st, cs):
    """Per-channel totals (rows of st summed over the q tiles)."""
    out = np.zeros((st.shape[0], cs))
    for r in range(st.shape[0]):
        for j in range(st.shape[1]):
            out[r, j % cs] += st[r, j]
    return out


@nb.njit(**JIT)
def _rows_stats(s, count, eps, kt, q, mean, rstd):
    """Fill mean, rstd (float64, per channel) from the per-channel shifted sums s (2, C); return
    the float32 (K, mean - K, rstd) vectors tiled to T, as rows of one array."""
    cs = s.shape[1]
    co = np.empty((3, q * cs), np.float32)
    for c in range(cs):
        m, rs = _rstd(s[0, c], s[1, c], count, eps)
        mean[c] = kt[c] + m
        rstd[c] = rs
        for r in range(q):
            co[0, r * cs + c], co[1, r * cs + c], co[2, r * cs + c] = kt[c], m, rs
    return co


@nb.njit(**JIT)
def _rows_normalize(x, y, q, co):
    xb, xt = _blocks(x, q)
    yb, yt = _blocks(y, q)
    kf, mf, rsf = co[0], co[1], co[2]
    for b in range(xb.shape[0]):
        for j in range(xb.shape[1]):
            yb[b, j] = from_f32(((to_f32(xb[b, j]) - kf[j]) - mf[j]) * rsf[j], y)
    for j in range(xt.shape[0]):
        yt[j] = from_f32(((to_f32(xt[j]) - kf[j]) - mf[j]) * rsf[j], y)


@nb.njit(parallel=True, **JIT)
def forward_rows(x, y, mean, rstd, eps, whole, chunks):
    """Samples [0, whole) one thread each; the rest split into row chunks across threads.

    mean, rstd: float64 (N, C)."""
    n, p, cs = x.shape
    q = _tile_rows(cs)
    for i in nb.prange(whole):
        kt = _tiled_pivot(x[i], q)
        st = np.zeros((2, q * cs))
        _rows_sums(x[i], q, kt, st)
        co = _rows_stats(_fold(st, cs), p, eps, kt, q, mean[i], rstd[i])
        _rows_normalize(x[i], y[i], q, co)
    left = n - whole
    if left == 0:
        return
    sums = np.zeros((left * chunks, 2, q * cs))
    for t in nb.prange(left * chunks):
        i = whole + t // chunks
        start, stop = _chunk(t % chunks, chunks, p)
        _rows_sums(x[i, start:stop], q, _tiled_pivot(x[i], q), sums[t])
    coefs = np.empty((left, 3, q * cs), np.float32)
    for j in range(left):
        i = whole + j
        s = _fold(sums[j * chunks : (j + 1) * chunks].sum(axis=0), cs)
        coefs[j] = _rows_stats(s, p, eps, _tiled_pivot(x[i], q), q, mean[i], rstd[i])
    for t in nb.prange(left * chunks):
        i, j = whole + t // chunks, t // chunks
        start, stop = _chunk(t % chunks, chunks, p)
        _rows_normalize(x[i, start:stop], y[i, start:stop], q, coefs[j])


@nb.njit(**JIT)
def _rows_grad_sums(x, g, q, kt, st):
    """st[0, j] += sum(g), st[1, j] += sum(g * (x - kt[j])) over the rows, tiled."""
    xb, xt = _blocks(x, q)
    gb, gt = _blocks(g, q)
    t = kt.shape[0]
    quads = xb.shape[0] // 4 * 4
    for b in range(0, quads, 4):
        for j in range(t):
            g0 = np.float64(to_f32(gb[b, j]))
            g1 = np.float64(to_f32(gb[b + 1, j]))
            g2 = np.float64(to_f32(gb[b + 2, j]))
            g3 = np.float64(to_f32(gb[b + 3, j]))
            d0 = np.float64(to_f32(xb[b, j])) - kt[j]
            d1 = np.float64(to_f32(xb[b + 1, j])) - kt[j]
            d2 = np.float64(to_f32(xb[b + 2, j])) - kt[j]
            d3 = np.float64(to_f32(xb[b + 3, j])) - kt[j]
            st[0, j] += (g0 + g1) + (g2 + g3)
            st[1, j] += (g0 * d0 + g1 * d1) + (g2 * d2 + g3 * d3)
    for b in range(quads, xb.shape[0]):
        for j in range(t):
            gi = np.float64(to_f32(gb[b, j]))
            st[0, j] += gi
            st[1, j] += gi * (np.float64(to_f32(xb[b, j])) - kt[j])
    for j in range(xt.shape[0]):
        gi = np.float64(to_f32(gt[j]))
        st[0, j] += gi
        st[1, j] += gi * (np.float64(to_f32(xt[j])) - kt[j])


@nb.njit(**JIT)
def _rows_grad_coefs(s, count, kt, q, mean, rstd):
    """float32 (K, mean - K, rstd, a, b, c) per channel tiled to T, for _rows_grad."""
    cs = s.shape[1]
    co = np.empty((6, q * cs), np.float32)
    for c in range(cs):
        m = mean[c] - kt[c]
        a, b, cc = _grad_coefs(s[0, c], s[1, c], count, m, rstd[c])
        for r in range(q):
            j = r * cs + c
            co[0, j], co[1, j], co[2, j] = kt[c], m, rstd[c]
            co[3, j], co[4, j], co[5, j] = a, b, cc
    return co


@nb.njit(**JIT)
def _rows_grad(x, g, dx, q, co):
    xb, xt = _blocks(x, q)
    gb, gt = _blocks(g, q)
    db, dt = _blocks(dx, q)
    kf, mf, rsf, af, bf, cf = co[0], co[1], co[2], co[3], co[4], co[5]
    for b in range(xb.shape[0]):
        for j in range(xb.shape[1]):
            xhat = ((to_f32(xb[b, j]) - kf[j]) - mf[j]) * rsf[j]
            db[b, j] = from_f32(af[j] * to_f32(gb[b, j]) + bf[j] - xhat * cf[j], dx)
    for j in range(xt.shape[0]):
        xhat = ((to_f32(xt[j]) - kf[j]) - mf[j]) * rsf[j]
        dt[j] = from_f32(af[j] * to_f32(gt[j]) + bf[j] - xhat * cf[j], dx)


@nb.njit(parallel=True, **JIT)
def backward_rows(x, g, dx, mean, rstd, whole, chunks):
    """dx for channels_last rows, samples planned as in forward_rows."""
    n, p, cs = x.shape
    q = _tile_rows(cs)
    for i in nb.prange(whole):
        kt = _tiled_pivot(x[i], q)
        st = np.zeros((2, q * cs))
        _rows_grad_sums(x[i], g[i], q, kt, st)
        _rows_grad(x[i], g[i], dx[i], q, _rows_grad_coefs(_fold(st, cs), p, kt, q, mean[i], rstd[i]))
    left = n - whole
    if left == 0:
        return
    sums = np.zeros((left * chunks, 2, q * cs))
    for t in nb.prange(left * chunks):
        i = whole + t // chunks
        start, stop = _chunk(t % chunks, chunks, p)
        _rows_grad_sums(x[i, start:stop], g[i, start:stop], q, _tiled_pivot(x[i], q), sums[t])
    coefs = np.empty((left, 6, q * cs), np.float32)
    for j in range(left):
        i = whole + j
        s = _fold(sums[j * chunks : (j + 1) * chunks].sum(axis=0), cs)
        coefs[j] = _rows_grad_coefs(s, p, _tiled_pivot(x[i], q), q, mean[i], rstd[i])
    for t in nb.prange(left * chunks):
        i, j = whole + t // chunks, t // chunks
        start, stop = _chunk(t % chunks, chunks, p)
        _rows_grad(x[i, start:stop], g[i, start:stop], dx[i, start:stop], q, coefs[j])
