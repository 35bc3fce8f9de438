"""Numba kernels behind numba_fused: per-plane statistics, normalize and its input gradient.

Arrays arrive as zero-copy views in one of two shapes (see numba_fused.py):
  planes (R, P):    NCHW, one contiguous plane of P = H*W elements per row, R = N*C planes;
  rows   (N, P, C): channels_last, a sample is P rows of C channels.
Element types: float32 as float32, float16 as uint16 bits, bfloat16 as int16 bits (NumPy has no
bfloat16 and Numba no float16; the two integer types only tell the codecs below apart). Every
kernel computes in float32 or float64 and rounds once on store.

Numerics (notes/numba.md has the error bounds):
  - statistics are sums shifted by a pivot K, the plane's first element: (K - mean)^2 <= P * var
    because K is one of the samples, so the cancellation in S2/P - (S1/P)^2 is bounded. The
    forward's and the NCHW backward's whole units (and the channels_last backward's, when C
    divides 64) sum in float32 over short chunks, added in float64, while the pivots are within
    3 sigma (GUARD); every other sum is float64;
  - the output is ((x - K) - (mean - K)) * rstd in float32: x - K is exact for the 1e4 + noise
    case (Sterbenz), and mean - K is small, so no float32 rounding of a mean near 1e4 enters;
  - the gradient shifts g by its own pivot G (its first value) the same way.
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
from numba.core import cgutils, types
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
# Raw pointers: the NCHW kernels walk planes through CPointer values (see "NCHW: planes" below).


def _data_pointer(context, builder, typ, value):
    """The element pointer of an array, or a CPointer as it is."""
    if isinstance(typ, types.CPointer):
        return value
    return context.make_array(typ)(context, builder, value).data


@intrinsic
def _ptr(typingctx, addr, like):
    """The address `addr` (an integer) as a pointer to elements of like's type."""

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return types.CPointer(like)(types.intp, like), codegen


@intrinsic
def _at(typingctx, p, i):
    """p + i elements."""

    def codegen(context, builder, signature, args):
        return builder.gep(args[0], [args[1]])

    return p(p, types.intp), codegen


@intrinsic
def _address(typingctx, a):
    """The address of an array's first element, or of a pointer, as an integer."""

    def codegen(context, builder, signature, args):
        data = _data_pointer(context, builder, signature.args[0], args[0])
        return builder.ptrtoint(data, context.get_value_type(types.intp))

    return types.intp(a), codegen


@intrinsic
def _itemsize(typingctx, a):
    """Bytes per element of an array or a pointer."""

    def codegen(context, builder, signature, args):
        size = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        return ir.Constant(context.get_value_type(types.intp), size)

    return types.intp(a), codegen


@intrinsic
def _prefetch(typingctx, a, i):
    """Ask for the cache line holding element i of array a (llvm.prefetch: read, keep in all levels)."""

    def codegen(context, builder, signature, args):
        p = builder.gep(_data_pointer(context, builder, signature.args[0], args[0]), [args[1]])
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [p.type, i32, i32, i32]), "llvm.prefetch.p0"
        )
        builder.call(fn, [p, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(a, types.intp), codegen


# ---------------------------------------------------------------------------------------------
# Streaming stores. An output bigger than the cache is written with non-temporal stores: whole
# 64-byte lines go straight to memory, so the core does not first read each line it is about to
# overwrite (a regular store's read-for-ownership moves a third of the bytes of a copy). Numba has
# no vector types, so the two emit steps below are written as LLVM vector code, one line per
# call: load a line's worth of x (and g), compute in float32 exactly as the scalar loops do (same
# operations, same order, no contraction), store the line non-temporally. The partial lines at
# either end of a span use the scalar loops and regular stores.

LINE_BYTES = 64
_NONTEMPORAL = [ir.Constant(ir.IntType(32), 1)]


def _line_codegen(context, builder, signature, args):
    """Helpers over one intrinsic call: load/decode a line of an array, splat-free coefficient
    loads, encode/store a line (non-temporal)."""
    f32 = ir.FloatType()

    def data(pos):
        return _data_pointer(context, builder, signature.args[pos], args[pos])

    def width(pos):
        return LINE_BYTES // context.get_abi_sizeof(context.get_data_type(signature.args[pos].dtype))

    def load(pos, index, lanes):
        dtype = signature.args[pos].dtype
        item = context.get_data_type(dtype)
        ptr = builder.bitcast(builder.gep(data(pos), [index]), ir.VectorType(item, lanes).as_pointer())
        v = builder.load(ptr, align=context.get_abi_sizeof(item))
        if dtype == types.float32:
            return v
        if dtype == types.uint16:  # IEEE half bits
            return builder.fpext(
                builder.bitcast(v, ir.VectorType(ir.HalfType(), lanes)), ir.VectorType(f32, lanes)
            )
        wide = builder.shl(builder.zext(v, ir.VectorType(ir.IntType(32), lanes)), _splat_int(lanes, 16))
        return builder.bitcast(wide, ir.VectorType(f32, lanes))  # bfloat16 bits

    def store(pos, index, value, lanes, nontemporal=True):
        dtype = signature.args[pos].dtype
        if dtype == types.uint16:
            value = builder.bitcast(
                builder.fptrunc(value, ir.VectorType(ir.HalfType(), lanes)),
                ir.VectorType(ir.IntType(16), lanes),
            )
        elif dtype == types.int16:
            bits = builder.bitcast(value, ir.VectorType(ir.IntType(32), lanes))
            odd = builder.and_(builder.lshr(bits, _splat_int(lanes, 16)), _splat_int(lanes, 1))
            rounded = builder.add(builder.add(bits, _splat_int(lanes, 0x7FFF)), odd)
            nan = builder.fcmp_unordered("uno", value, value)
            bits = builder.select(nan, builder.or_(bits, _splat_int(lanes, 0x400000)), rounded)
            value = builder.trunc(
                builder.lshr(bits, _splat_int(lanes, 16)), ir.VectorType(ir.IntType(16), lanes)
            )
        item = context.get_data_type(dtype)
        ptr = builder.bitcast(builder.gep(data(pos), [index]), ir.VectorType(item, lanes).as_pointer())
        if not nontemporal:
            builder.store(value, ptr, align=context.get_abi_sizeof(item))
            return
        builder.store(value, ptr, align=LINE_BYTES).set_metadata(
            "nontemporal", builder.module.add_metadata(_NONTEMPORAL)
        )

    return width, load, store


def _splat_int(lanes, value):
    return ir.Constant(ir.VectorType(ir.IntType(32), lanes), [value] * lanes)


@intrinsic
def _affine_line(typingctx, x, xi, y, yi, kk, mm, rr, ci):
    """y[yi:yi+W] = ((x[xi:xi+W] - kk) - mm) * rr, W = one line of y; kk, mm, rr: float32
    arrays read at [ci:ci+W]; y + yi must be 64-byte aligned."""

    def codegen(context, builder, signature, args):
        width, load, store = _line_codegen(context, builder, signature, args)
        lanes = width(2)
        k, m, r = (load(pos, args[7], lanes) for pos in (4, 5, 6))
        v = builder.fmul(builder.fsub(builder.fsub(load(0, args[1], lanes), k), m), r)
        store(2, args[3], v, lanes)
        return context.get_dummy_value()

    return types.void(x, xi, y, yi, kk, mm, rr, ci), codegen


@intrinsic
def _grad_line(typingctx, x, g, xi, dx, di, kk, mm, rr, gg, mg, mgx, ci):
    """dx[di:di+W] = (((g - gg) - mg) - xhat * mgx) * rr, xhat = ((x - kk) - mm) * rr, x and g
    read at [xi:xi+W], the coefficient arrays at [ci:ci+W]; dx + di must be 64-byte aligned."""

    def codegen(context, builder, signature, args):
        width, load, store = _line_codegen(context, builder, signature, args)
        lanes = width(3)
        k, m, r, g0, gm, gx = (load(pos, args[11], lanes) for pos in (5, 6, 7, 8, 9, 10))
        xhat = builder.fmul(builder.fsub(builder.fsub(load(0, args[2], lanes), k), m), r)
        gc = builder.fsub(builder.fsub(load(1, args[2], lanes), g0), gm)
        store(3, args[4], builder.fmul(builder.fsub(gc, builder.fmul(xhat, gx)), r), lanes)
        return context.get_dummy_value()

    return types.void(x, g, xi, dx, di, kk, mm, rr, gg, mg, mgx, ci), codegen


# Register-resident block sums. With 64-element blocks (C = 64, or any C dividing 64) the
# per-position accumulators of a whole block fit the vector registers (<64 x double> is 8 zmm).
# Numba keeps array accumulators in memory (a load and a store per vector per step), so the loop
# over a span's octets of blocks is written as LLVM vector code with the accumulators as loop
# values (phi nodes): the same operations, in the same order, as the scalar octet loop.
REG_TILE = 64
OCTET = 8  # blocks per float32 running sum, added to float64 once per octet


def _loop(builder, count, inits, body):
    """for i in range(count): values = body(i, values); returns the final values (inits if
    count <= 0). `values` are SSA values carried in registers across iterations."""
    intp = count.type
    pre = builder.basic_block
    loop = builder.append_basic_block("reg_loop")
    done = builder.append_basic_block("reg_done")
    builder.cbranch(builder.icmp_signed(">", count, ir.Constant(intp, 0)), loop, done)
    builder.position_at_end(loop)
    i = builder.phi(intp)
    carried = [builder.phi(v.type) for v in inits]
    i.add_incoming(ir.Constant(intp, 0), pre)
    for phi, v in zip(carried, inits):
        phi.add_incoming(v, pre)
    new = body(i, carried)
    i_next = builder.add(i, ir.Constant(intp, 1))
    end = builder.basic_block
    i.add_incoming(i_next, end)
    for phi, v in zip(carried, new):
        phi.add_incoming(v, end)
    builder.cbranch(builder.icmp_signed("<", i_next, count), loop, done)
    builder.position_at_end(done)
    outs = []
    for v, n in zip(inits, new):
        phi = builder.phi(v.type)
        phi.add_incoming(v, pre)
        phi.add_incoming(n, end)
        outs.append(phi)
    return outs


def _f64_rows(context, builder, signature, args, pos, rows):
    """Pointers to rows of the C-contiguous float64 (R, REG_TILE) array args[pos], as
    <REG_TILE x double>*."""
    data = context.make_array(signature.args[pos])(context, builder, args[pos]).data
    vd = ir.VectorType(ir.DoubleType(), REG_TILE).as_pointer()
    return [builder.bitcast(builder.gep(data, [ir.Constant(ir.IntType(64), r * REG_TILE)]), vd) for r in rows]


def _accumulate(builder, st_ptrs, sums):
    """st[r] += float64(sums[r]) in memory: one load, add and store per vector an octet."""
    vd = ir.VectorType(ir.DoubleType(), REG_TILE)
    for p, v in zip(st_ptrs, sums):
        builder.store(builder.fadd(builder.load(p, align=8), builder.fpext(v, vd)), p, align=8)


def _sequential(builder, values):
    """((v0 + v1) + v2) + ...: one running float32 sum per position."""
    acc = values[0]
    for v in values[1:]:
        acc = builder.fadd(acc, v)
    return acc


@intrinsic
def _octet_sums(typingctx, x, k32, st, octets):
    """st[0] += sum(x - k), st[1] += sum((x - k)^2) over the first `octets` * 8 blocks of
    REG_TILE elements of the flat span x (k32: float32 (REG_TILE,), st: float64 (2, REG_TILE)):
    per octet, running float32 sums of the differences and their squares (registers), added to
    the float64 sums in st once per octet."""

    def codegen(context, builder, signature, args):
        _, load, _ = _line_codegen(context, builder, signature, args)
        st_ptrs = _f64_rows(context, builder, signature, args, 2, (0, 1))
        k = load(1, ir.Constant(ir.IntType(64), 0), REG_TILE)

        def body(i, carried):
            base = builder.mul(i, ir.Constant(i.type, OCTET * REG_TILE))
            a1 = a2 = None
            for b in range(OCTET):
                d = builder.fsub(load(0, builder.add(base, ir.Constant(i.type, b * REG_TILE)), REG_TILE), k)
                d2 = builder.fmul(d, d)
                a1, a2 = (d, d2) if b == 0 else (builder.fadd(a1, d), builder.fadd(a2, d2))
            _accumulate(builder, st_ptrs, (a1, a2))
            return []

        _loop(builder, args[3], [], body)
        return context.get_dummy_value()

    return types.void(x, k32, st, octets), codegen


@intrinsic
def _octet_grad_sums(typingctx, x, g, k32, g32, st, octets):
    """st[0] += sum(g - gk), st[1] += sum((g - gk) * (x - k)), st[2] += sum((g - gk)^2) over the
    first `octets` * 8 blocks of REG_TILE elements of the flat spans x and g (k32, g32: float32
    pivots (REG_TILE,), st: float64 (3, REG_TILE)): running float32 sums per octet, added to
    float64, as _octet_sums does for the forward."""

    def codegen(context, builder, signature, args):
        _, load, _ = _line_codegen(context, builder, signature, args)
        st_ptrs = _f64_rows(context, builder, signature, args, 4, (0, 1, 2))
        zero = ir.Constant(ir.IntType(64), 0)
        k, gk = load(2, zero, REG_TILE), load(3, zero, REG_TILE)

        def body(i, carried):
            base = builder.mul(i, ir.Constant(i.type, OCTET * REG_TILE))
            acc = None
            for b in range(OCTET):
                f = builder.add(base, ir.Constant(i.type, b * REG_TILE))
                e = builder.fsub(load(1, f, REG_TILE), gk)
                terms = (e, builder.fmul(e, builder.fsub(load(0, f, REG_TILE), k)), builder.fmul(e, e))
                acc = terms if b == 0 else [builder.fadd(a, t) for a, t in zip(acc, terms)]
            _accumulate(builder, st_ptrs, acc)
            return []

        _loop(builder, args[5], [], body)
        return context.get_dummy_value()

    return types.void(x, g, k32, g32, st, octets), codegen


def _block_start(builder, i, blocks, reverse):
    """Element index of block i, or with `reverse` of block blocks - 1 - i: the emit pass walks a
    span last block first. Pass 1 read it forwards, so its last lines are the ones still in L2
    (and the most recent in L3): reading them first hits them before they are evicted; forwards,
    a span bigger than L2 finds every line evicted by the time it gets there (LRU). Measured at
    2 threads, backward: 0.337 -> 0.310 ns/element (8x64x56x56), 0.422 -> 0.403 (4x64x128x128),
    10th percentiles; forward unchanged."""
    if reverse:
        i = builder.sub(builder.sub(blocks, ir.Constant(i.type, 1)), i)
    return builder.mul(i, ir.Constant(i.type, REG_TILE))


def _block_emit(nontemporal, reverse=True):
    """Intrinsics over the first `blocks` blocks of REG_TILE elements of flat spans, the
    per-position coefficients (float32 (REG_TILE,) arrays) loaded once into registers; the same
    arithmetic as _affine_line / _grad_line. nontemporal: y + 0 must be 64-byte aligned."""

    @intrinsic
    def affine(typingctx, x, y, kk, mm, rr, blocks):
        """y = ((x - kk) - mm) * rr, block by block."""

        def codegen(context, builder, signature, args):
            _, load, store = _line_codegen(context, builder, signature, args)
            zero = ir.Constant(ir.IntType(64), 0)
            k, m, r = (load(pos, zero, REG_TILE) for pos in (2, 3, 4))

            def body(i, carried):
                f = _block_start(builder, i, blocks, reverse)
                v = builder.fmul(builder.fsub(builder.fsub(load(0, f, REG_TILE), k), m), r)
                store(1, f, v, REG_TILE, nontemporal)
                return []

            blocks = args[5]
            _loop(builder, blocks, [], body)
            return context.get_dummy_value()

        return types.void(x, y, kk, mm, rr, blocks), codegen

    @intrinsic
    def grad(typingctx, x, g, dx, kk, mm, rr, gg, mg, mgx, blocks):
        """dx = (((g - gg) - mg) - xhat * mgx) * rr, xhat = ((x - kk) - mm) * rr, block by block."""

        def codegen(context, builder, signature, args):
            _, load, store = _line_codegen(context, builder, signature, args)
            zero = ir.Constant(ir.IntType(64), 0)
            k, m, r, g0, gm, gx = (load(pos, zero, REG_TILE) for pos in range(3, 9))

            def body(i, carried):
                f = _block_start(builder, i, blocks, reverse)
                xhat = builder.fmul(builder.fsub(builder.fsub(load(0, f, REG_TILE), k), m), r)
                gc = builder.fsub(builder.fsub(load(1, f, REG_TILE), g0), gm)
                store(2, f, builder.fmul(builder.fsub(gc, builder.fmul(xhat, gx)), r), REG_TILE, nontemporal)
                return []

            blocks = args[9]
            _loop(builder, blocks, [], body)
            return context.get_dummy_value()

        return types.void(x, g, dx, kk, mm, rr, gg, mg, mgx, blocks), codegen

    return affine, grad


_affine_blocks, _grad_blocks = _block_emit(False)
_affine_blocks_nt, _grad_blocks_nt = _block_emit(True)


@intrinsic
def _fence(typingctx):
    """Order this thread's non-temporal stores before whatever the caller does next."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@nb.njit(**JIT)
def _stream_bounds(y, n, stream):
    """(h, e) for the n elements at pointer y: [:h] and [e:] take regular stores, [h:e] whole
    aligned lines (h = e = n: none)."""
    size = _itemsize(y)
    addr = _address(y)
    if not stream or addr % size:
        return n, n
    h = min(n, (-addr % LINE_BYTES) // size)
    per_line = LINE_BYTES // size
    return h, h + (n - h) // per_line * per_line


# ---------------------------------------------------------------------------------------------
# Shared pieces.


@nb.njit(**JIT)
def _rstd(s1, s2, count, eps):
    """(mean - K, rstd) from shifted sums over `count` elements (population variance)."""
    m = s1 / count
    var = max(s2 / count - m * m, 0.0)
    return m, 1.0 / math.sqrt(var + eps)


# Float32 partial sums carry a relative error of ~10 float32 ulps (2^-24) of the sums of |x - K|
# and (x - K)^2; var = S2/P - (S1/P)^2 amplifies it by ~(1 + 3 (mean - K)^2 / var). While
# (mean - K)^2 <= GUARD * var the variance keeps ~2e-5 relative error at worst (output ~1e-5,
# 20x inside float32's tolerance); beyond it (a pivot far out in the tail, ~0.3 % of normal
# planes) the sums are recomputed exactly in float64 from the cache.
CHUNK = 256
GUARD = 9.0


@nb.njit(**JIT)
def _far(s1, s2, count):
    """True when the pivot sits too far from the mean for float32 partial sums (see GUARD)."""
    m = s1 / count
    return m * m > GUARD * (s2 / count - m * m)


@nb.njit(**JIT)
def _any_far(s, count):
    """_far for any channel of per-channel sums s (2, C), multiplied out by count^2 (no division:
    a 1,280-channel sample's check went from 1.7 to 0.3 us)."""
    far = False
    for c in range(s.shape[1]):
        s1 = s[0, c]
        far |= s1 * s1 * (1.0 + GUARD) > GUARD * s[1, c] * count
    return far


@nb.njit(**JIT)
def _grad_coefs(sg, sgd, count, m, rs):
    """(mean(g) - G, mean(g * xhat)) from the sums of g - G and (g - G) * (x - K), G the plane's
    first upstream gradient (a pivot for g as K is for x), xhat = ((x - K) - m) * rs, m = mean - K.

    dx = rs * (((g - G) - (mean(g) - G)) - xhat * mean(g * xhat)), eps inside the sqrt
    (notes/gradient.md); G drops out of mean(g * xhat) = rs * (mean((g - G)(x - K)) - m mean(g - G))
    because mean(xhat) = 0. Shifting g keeps dx accurate when g has a large mean (g = 1 + small)."""
    mean_g = sg / count
    return mean_g, rs * (sgd / count - m * mean_g)


@nb.njit(**JIT)
def _chunk(i, chunks, count):
    """[start, stop) of chunk i of `chunks` near-equal chunks of range(count)."""
    return i * count // chunks, (i + 1) * count // chunks


# ---------------------------------------------------------------------------------------------
# NCHW: planes (R, P), each a contiguous vector; the sums over it are horizontal reductions.
# The per-plane code takes raw pointers (CPointer) and lengths, not array views: a view made per
# plane (x[r], x[r, :h]...) and passed to a helper costs a reference-count increment and
# decrement on the array's shared meminfo, atomics that both threads hit on the same cache line.
# At 49-element planes (8x512x7x7) that was 32 ns a plane at 2 threads; with pointers, 12 ns.


@nb.njit(fastmath=REDUCE_MATH, **JIT)
def _plane_sums(x, n, k):
    """Shifted sums S1 = sum(x - k), S2 = sum((x - k)^2) over x[:n], in float64."""
    s1 = 0.0
    s2 = 0.0
    for i in range(n):
        d = np.float64(to_f32(x[i])) - k
        s1 += d
        s2 += d * d
    return s1, s2


@nb.njit(fastmath=REDUCE_MATH, **JIT)
def _plane_sums_f32(x, n, k):
    """_plane_sums with float32 partial sums over chunks of CHUNK elements, added in float64:
    half the vector work. Exact enough while (mean - k)^2 <= GUARD * var (see _far)."""
    kf = np.float32(k)
    s1 = 0.0
    s2 = 0.0
    for start in range(0, n, CHUNK):
        xs = _at(x, start)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        for i in range(min(CHUNK, n - start)):
            d = to_f32(xs[i]) - kf
            a1 += d
            a2 += d * d
        s1 += a1
        s2 += a2
    return s1, s2


@nb.njit(**JIT)
def _plane_affine(x, y, n, k, m, rs):
    kf, mf, rsf = np.float32(k), np.float32(m), np.float32(rs)
    for i in range(n):
        y[i] = from_f32(((to_f32(x[i]) - kf) - mf) * rsf, y)


@nb.njit(**JIT)
def _plane_emit(x, y, n, co, k, m, rs, stream):
    """_plane_affine over x[:n], whole aligned lines streamed; co: float32 scratch (3, 32)."""
    h, e = _stream_bounds(y, n, stream)
    _plane_affine(x, y, h, k, m, rs)
    if e > h:
        co[0, :], co[1, :], co[2, :] = np.float32(k), np.float32(m), np.float32(rs)
        for f in range(h, e, LINE_BYTES // _itemsize(y)):
            _affine_line(x, f, y, f, co[0], co[1], co[2], 0)
    _plane_affine(_at(x, e), _at(y, e), n - e, k, m, rs)


@nb.njit(fastmath=REDUCE_MATH, **JIT)
def _plane_grad_sums(x, g, n, k, g0):
    """sum(g - g0) and sum((g - g0) * (x - k)) over [:n], in float64."""
    sg = 0.0
    sgd = 0.0
    for i in range(n):
        gi = np.float64(to_f32(g[i])) - g0
        sg += gi
        sgd += gi * (np.float64(to_f32(x[i])) - k)
    return sg, sgd


@nb.njit(fastmath=REDUCE_MATH, **JIT)
def _plane_grad_sums_f32(x, g, n, k, g0):
    """_plane_grad_sums with float32 partial sums over CHUNK elements, folded into float64, and
    sum((g - g0)^2) for the guard on g0 (see _grad_far)."""
    kf, gf = np.float32(k), np.float32(g0)
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for start in range(0, n, CHUNK):
        xs, gs = _at(x, start), _at(g, start)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        for i in range(min(CHUNK, n - start)):
            e = to_f32(gs[i]) - gf
            a1 += e
            a2 += e * (to_f32(xs[i]) - kf)
            a3 += e * e
        s1 += a1
        s2 += a2
        s3 += a3
    return s1, s2, s3


@nb.njit(**JIT)
def _grad_far(sg, sgg, count, m, rs, eps):
    """True when float32 partial sums are not accurate enough for this plane's gradient: the
    pivot K more than 3 sigma from the mean (var from the saved rstd), or the pivot G of g more
    than 3 standard deviations of g from its mean (see GUARD)."""
    var = 1.0 / (rs * rs) - eps
    mg = sg / count
    return m * m > GUARD * var or mg * mg > GUARD * (sgg / count - mg * mg)


@nb.njit(**JIT)
def _any_grad_far(s, count, mean, k, rstd, eps):
    """_grad_far for any channel of per-channel sums s (3, C) about pivots k, multiplied out (no
    division, as _any_far: a 1,280-channel sample's check went from ~7 to ~1 us)."""
    far = False
    for c in range(s.shape[1]):
        m, rs2 = mean[c] - k[c], rstd[c] * rstd[c]
        sg = s[0, c]
        far |= m * m * rs2 > GUARD * (1.0 - eps * rs2)
        far |= sg * sg * (1.0 + GUARD) > GUARD * s[2, c] * count
    return far


@nb.njit(**JIT)
def _plane_grad(x, g, dx, n, k, m, rs, g0, mg, mgx):
    kf, mf, rsf = np.float32(k), np.float32(m), np.float32(rs)
    g0f, mgf, mgxf = np.float32(g0), np.float32(mg), np.float32(mgx)
    for i in range(n):
        xhat = ((to_f32(x[i]) - kf) - mf) * rsf
        dx[i] = from_f32((((to_f32(g[i]) - g0f) - mgf) - xhat * mgxf) * rsf, dx)


@nb.njit(**JIT)
def _plane_grad_emit(x, g, dx, n, co, k, m, rs, g0, mg, mgx, stream):
    """_plane_grad over [:n], whole aligned lines streamed; co: float32 scratch (6, 32)."""
    h, e = _stream_bounds(dx, n, stream)
    _plane_grad(x, g, dx, h, k, m, rs, g0, mg, mgx)
    if e > h:
        co[0, :], co[1, :], co[2, :] = np.float32(k), np.float32(m), np.float32(rs)
        co[3, :], co[4, :], co[5, :] = np.float32(g0), np.float32(mg), np.float32(mgx)
        for f in range(h, e, LINE_BYTES // _itemsize(dx)):
            _grad_line(x, g, f, dx, f, co[0], co[1], co[2], co[3], co[4], co[5], 0)
    _plane_grad(_at(x, e), _at(g, e), _at(dx, e), n - e, k, m, rs, g0, mg, mgx)


@nb.njit(**JIT)
def _forward_plane_run(x, y, p, lo, hi, stats, eps, stream):
    """Both passes over planes lo..hi-1 of the (R, P) planes at x, one plane after another."""
    co = np.empty((3, LINE_BYTES // 2), np.float32)
    for r in range(lo, hi):
        xs, ys = _at(x, r * p), _at(y, r * p)
        k = np.float64(to_f32(xs[0]))
        s1, s2 = _plane_sums_f32(xs, p, k)
        if _far(s1, s2, p):
            s1, s2 = _plane_sums(xs, p, k)
        m, rs = _rstd(s1, s2, p, eps)
        if stream:
            _plane_emit(xs, ys, p, co, k, m, rs, stream)
        else:
            _plane_affine(xs, ys, p, k, m, rs)
        stats[0, r], stats[1, r] = k + m, rs


@nb.njit(parallel=True, **JIT)
def _forward_planes(x, y, p, units, stats, eps, chunks, stream):
    for task in nb.prange(chunks):
        lo, hi = _chunk(task, chunks, units)
        _forward_plane_run(x, y, p, lo, hi, stats, eps, stream)
        _fence()


@nb.njit(**JIT)
def forward_planes(xa, ya, units, p, stats, eps, chunks, stream, like):
    """y = normalize(x) per plane: x, y the addresses of `units` contiguous planes of p elements
    of like's type, stats float64 (2, units) <- mean, rstd. `chunks` tasks (one per thread) take
    contiguous runs of whole planes and make both passes over each."""
    _forward_planes(_ptr(xa, like), _ptr(ya, like), p, units, stats, eps, chunks, stream)


@nb.njit(parallel=True, **JIT)
def forward_planes_split(xa, ya, units, p, stats, eps, chunks, stream, like):
    """forward_planes with every plane split into `chunks` pieces across the threads."""
    x, y = _ptr(xa, like), _ptr(ya, like)
    sums = np.zeros((units * chunks, 2))
    for task in nb.prange(units * chunks):
        r = task // chunks
        start, stop = _chunk(task % chunks, chunks, p)
        k = np.float64(to_f32(x[r * p]))
        sums[task, 0], sums[task, 1] = _plane_sums(_at(x, r * p + start), stop - start, k)
    # The same static schedule as the loop above: each piece is emitted by the thread that read it.
    for task in nb.prange(units * chunks):
        r = task // chunks
        first = task - task % chunks
        k = np.float64(to_f32(x[r * p]))
        total = sums[first : first + chunks].sum(axis=0)
        m, rs = _rstd(total[0], total[1], p, eps)
        start, stop = _chunk(task % chunks, chunks, p)
        co = np.empty((3, LINE_BYTES // 2), np.float32)
        _plane_emit(_at(x, r * p + start), _at(y, r * p + start), stop - start, co, k, m, rs, stream)
        _fence()
        if task == first:
            stats[0, r], stats[1, r] = k + m, rs


@nb.njit(**JIT)
def _backward_plane_run(x, g, dx, p, lo, hi, stats, eps, stream):
    """dx for planes lo..hi-1, one plane after another (see _forward_plane_run)."""
    co = np.empty((6, LINE_BYTES // 2), np.float32)
    for r in range(lo, hi):
        xs, gs, ds = _at(x, r * p), _at(g, r * p), _at(dx, r * p)
        k, g0 = np.float64(to_f32(xs[0])), np.float64(to_f32(gs[0]))
        m, rs = stats[0, r] - k, stats[1, r]
        sg, sgd, sgg = _plane_grad_sums_f32(xs, gs, p, k, g0)
        if _grad_far(sg, sgg, p, m, rs, eps):
            sg, sgd = _plane_grad_sums(xs, gs, p, k, g0)
        mg, mgx = _grad_coefs(sg, sgd, p, m, rs)
        if stream:
            _plane_grad_emit(xs, gs, ds, p, co, k, m, rs, g0, mg, mgx, stream)
        else:
            _plane_grad(xs, gs, ds, p, k, m, rs, g0, mg, mgx)


@nb.njit(parallel=True, **JIT)
def _backward_planes(x, g, dx, p, units, stats, eps, chunks, stream):
    for task in nb.prange(chunks):
        lo, hi = _chunk(task, chunks, units)
        _backward_plane_run(x, g, dx, p, lo, hi, stats, eps, stream)
        _fence()


@nb.njit(**JIT)
def backward_planes(xa, ga, da, units, p, stats, eps, chunks, stream, like):
    """dx from x, upstream g and forward's float64 (2, units) mean and rstd, at addresses as in
    forward_planes."""
    _backward_planes(_ptr(xa, like), _ptr(ga, like), _ptr(da, like), p, units, stats, eps, chunks, stream)


@nb.njit(parallel=True, **JIT)
def backward_planes_split(xa, ga, da, units, p, stats, eps, chunks, stream, like):
    """backward_planes with every plane split into `chunks` pieces across the threads."""
    x, g, dx = _ptr(xa, like), _ptr(ga, like), _ptr(da, like)
    sums = np.zeros((units * chunks, 2))
    for task in nb.prange(units * chunks):
        r = task // chunks
        start, stop = _chunk(task % chunks, chunks, p)
        k, g0 = np.float64(to_f32(x[r * p])), np.float64(to_f32(g[r * p]))
        o = r * p + start
        sums[task, 0], sums[task, 1] = _plane_grad_sums(_at(x, o), _at(g, o), stop - start, k, g0)
    for task in nb.prange(units * chunks):
        r = task // chunks
        first = task - task % chunks
        k, g0 = np.float64(to_f32(x[r * p])), np.float64(to_f32(g[r * p]))
        m, rs = stats[0, r] - k, stats[1, r]
        total = sums[first : first + chunks].sum(axis=0)
        mg, mgx = _grad_coefs(total[0], total[1], p, m, rs)
        start, stop = _chunk(task % chunks, chunks, p)
        co = np.empty((6, LINE_BYTES // 2), np.float32)
        o = r * p + start
        _plane_grad_emit(_at(x, o), _at(g, o), _at(dx, o), stop - start, co, k, m, rs, g0, mg, mgx, stream)
        _fence()


# ---------------------------------------------------------------------------------------------
# channels_last: rows (N, P, C); a sample is the flat span of its P*C elements. It is read in
# blocks of whole rows against per-channel vectors tiled to the block's length (for the emit pass
# twice that, so any block-long window of them is contiguous). Every inner loop then runs over
# contiguous elements whatever C is (C=3 or C=9 vectorise as well as C=64), without
# reassociation, and each channel's sums keep a fixed order. Spans start at a row boundary, so
# position j of a block is channel j % C.

# Block lengths, multiples of C: the sums read blocks of about SUM_TILE elements (eight adjacent
# blocks per step: a short window the hardware prefetcher follows; 512-element blocks, eight
# streams 2 KB apart, read 1.3x slower from memory), the emit pass about EMIT_TILE. When C divides
# REG_TILE (64) both passes run the register loops above instead (_octet_sums, _octet_grad_sums,
# _block_emit): per-position vectors of one 64-element block stay in registers for a whole span.
SUM_TILE = 64
EMIT_TILE = 512


@nb.njit(**JIT)
def _tiles(c):
    """(sum block, emit block) lengths for C channels."""
    return max(1, SUM_TILE // c) * c, max(1, EMIT_TILE // c) * c


PIVOT_ROWS = 8


@nb.njit(**JIT)
def _tiled_pivot(x, kt):
    """kt <- per channel, the mean of the sample's first PIVOT_ROWS rows of x (float32-rounded,
    float64), tiled to kt's length. One row's value sits more than 3 standard deviations from
    its channel's mean for ~0.3 % of channels: with hundreds of channels nearly every sample had
    one, and its float32 guard sent the whole sample back through float64 sums (2x320x32x32:
    every call). The mean of 8 rows sits that far from it once in ~10^17."""
    cs = x.shape[1]
    rows = min(PIVOT_ROWS, x.shape[0])
    kc = kt[:cs]
    kc[:] = 0.0
    for r in range(rows):  # row by row: contiguous, vectorised (the same sum, in the same order)
        xr = x[r]
        for c in range(cs):
            kc[c] += np.float64(to_f32(xr[c]))
    for c in range(cs):
        kc[c] = np.float64(np.float32(kc[c] / rows))
    for j in range(cs, kt.shape[0]):
        kt[j] = kt[j % cs]


@nb.njit(**JIT)
def _rows_sums(x, kt, st):
    """st[0, j] += sum(x - kt[j]), st[1, j] += sum((x - kt[j])^2), x a flat span of whole rows,
    j the element's position in its block (kt's length), in float64."""
    t = kt.shape[0]
    full = x.shape[0] // t
    xb = x[: full * t].reshape(full, t)
    tail = x[full * t :]
    quads = full // 4 * 4
    for b in range(0, quads, 4):
        for j in range(t):
            d0 = np.float64(to_f32(xb[b, j])) - kt[j]
            d1 = np.float64(to_f32(xb[b + 1, j])) - kt[j]
            d2 = np.float64(to_f32(xb[b + 2, j])) - kt[j]
            d3 = np.float64(to_f32(xb[b + 3, j])) - kt[j]
            st[0, j] += (d0 + d1) + (d2 + d3)
            st[1, j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
    for b in range(quads, full):
        for j in range(t):
            d = np.float64(to_f32(xb[b, j])) - kt[j]
            st[0, j] += d
            st[1, j] += d * d
    for j in range(tail.shape[0]):
        d = np.float64(to_f32(tail[j])) - kt[j]
        st[0, j] += d
        st[1, j] += d * d


# Blocks of at most this many bytes are summed row after row, in memory order (_octets_row_major).
# Eight 1,280-byte rows read a stride apart at once (the octet loops) came 1.7x slower from memory
# than one row at a time (C = 320 float32, one thread: 131 vs 78 us a 1.3 MB sample); at 2,560
# bytes they were even and at 5,120 the octets 1.25x faster. In cache the octets are 1.6x faster
# at every C (a row at a time keeps its sums in L1, not registers).
ROW_MAJOR_BYTES = 2048


@nb.njit(**JIT)
def _octets_row_major(xb, k32, st, start, octets):
    """st += float32 sums of x - K and (x - K)^2 over rows start..octets of blocks xb, a row at a
    time, added to float64 once per eight rows (as the octet loops do)."""
    t = xb.shape[1]
    a1 = np.empty(t, np.float32)
    a2 = np.empty(t, np.float32)
    for b in range(start, octets, 8):
        a1[:] = 0.0
        a2[:] = 0.0
        for r in range(b, b + 8):
            for j in range(t):
                d = to_f32(xb[r, j]) - k32[j]
                a1[j] += d
                a2[j] += d * d
        for j in range(t):
            st[0, j] += np.float64(a1[j])
            st[1, j] += np.float64(a2[j])


@nb.njit(**JIT)
def _rows_sums_f32(x, kt, st):
    """_rows_sums with the differences, their squares and the sums of eight blocks in float32,
    added to the float64 accumulators once per eight blocks (see GUARD). With REG_TILE-element
    blocks the octets run in _octet_sums (running sums in registers), the rest here."""
    t = kt.shape[0]
    full = x.shape[0] // t
    xb = x[: full * t].reshape(full, t)
    tail = x[full * t :]
    k32 = np.empty(t, np.float32)
    for j in range(t):
        k32[j] = kt[j]
    octets = full // 8 * 8
    start = 0
    if t == REG_TILE:
        _octet_sums(x, k32, st, full // 8)
        start = octets
    if t * x.itemsize <= ROW_MAJOR_BYTES:
        _octets_row_major(xb, k32, st, start, octets)
        start = octets
    for b in range(start, octets, 8):
        for j in range(t):
            k = k32[j]
            d0, d1 = to_f32(xb[b, j]) - k, to_f32(xb[b + 1, j]) - k
            d2, d3 = to_f32(xb[b + 2, j]) - k, to_f32(xb[b + 3, j]) - k
            d4, d5 = to_f32(xb[b + 4, j]) - k, to_f32(xb[b + 5, j]) - k
            d6, d7 = to_f32(xb[b + 6, j]) - k, to_f32(xb[b + 7, j]) - k
            st[0, j] += np.float64(((d0 + d1) + (d2 + d3)) + ((d4 + d5) + (d6 + d7)))
            st[1, j] += np.float64(
                ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)) + ((d4 * d4 + d5 * d5) + (d6 * d6 + d7 * d7))
            )
    for b in range(octets, full):
        for j in range(t):
            d = to_f32(xb[b, j]) - k32[j]
            st[0, j] += np.float64(d)
            st[1, j] += np.float64(d * d)
    for j in range(tail.shape[0]):
        d = to_f32(tail[j]) - k32[j]
        st[0, j] += np.float64(d)
        st[1, j] += np.float64(d * d)


@nb.njit(**JIT)
def _fold(st, cs):
    """Per-channel totals (R, C) of tiled sums (R, T)."""
    out = np.zeros((st.shape[0], cs))
    for r in range(st.shape[0]):
        for j in range(st.shape[1]):
            out[r, j % cs] += st[r, j]
    return out


@nb.njit(**JIT)
def _tile(co, cs):
    """Each row of co repeats its first cs entries (one per channel) to its end, in place."""
    for r in range(co.shape[0]):
        for j in range(cs, co.shape[1]):
            co[r, j] = co[r, j - cs]


@nb.njit(**JIT)
def _rows_coefs(s, count, eps, kt, co, mean, rstd, cmean, per):
    """mean, rstd (float64, per channel: its group's) from shifted sums s (2, C) over `count`
    rows; co (3, 2T) <- float32 K, mean - K and rstd, tiled. Groups of `per` consecutive channels
    (GroupNorm) merge their channels' sums, each about its own pivot, in float64:
    sum((x - mu)^2) = S2 + 2 (K - mu) S1 + count (K - mu)^2; cmean <- each channel's own mean
    (what the backward needs to do the same)."""
    cs = s.shape[1]
    if per == 1:
        for c in range(cs):
            m, rs = _rstd(s[0, c], s[1, c], count, eps)
            mean[c], rstd[c] = kt[c] + m, rs
            co[0, c], co[1, c], co[2, c] = kt[c], m, rs
        _tile(co, cs)
        return
    for c in range(cs):  # apart from the sums below: a vectorised division
        cmean[c] = kt[c] + s[0, c] / count
    for first in range(0, cs, per):
        # unsigned bounds: a signed start costs a negative-index check per access, no vectors
        lo, hi = np.uintp(first), np.uintp(first + per)
        total = 0.0
        for c in range(lo, hi):
            total += cmean[c]
        mu = total / per
        ss = 0.0
        for c in range(lo, hi):
            d = kt[c] - mu
            ss += s[1, c] + 2.0 * d * s[0, c] + count * d * d
        rs = 1.0 / math.sqrt(max(ss / (count * per), 0.0) + eps)
        for c in range(lo, hi):
            mean[c], rstd[c] = mu, rs
            co[0, c], co[1, c], co[2, c] = kt[c], mu - kt[c], rs
    _tile(co, cs)


@nb.njit(**JIT)
def _rows_affine(x, y, co, phase):
    """y = ((x - K) - m) * rstd for a flat span whose first element sits at `phase` in a block."""
    t = co.shape[1] // 2
    for f in range(0, x.shape[0], t):
        n = min(t, x.shape[0] - f)
        ph = (phase + f) % t
        xs, ys = x[f : f + n], y[f : f + n]
        kk, mm, rr = co[0, ph : ph + n], co[1, ph : ph + n], co[2, ph : ph + n]
        for u in range(n):
            ys[u] = from_f32(((to_f32(xs[u]) - kk[u]) - mm[u]) * rr[u], y)


@nb.njit(**JIT)
def _rows_emit(x, y, co, cs, stream):
    """_rows_affine over a span, whole aligned lines streamed. (No prefetch of the next sample: a
    sample is 0.8-4 MB, and fetching it during this pass evicted the lines this pass reads: 1.7x
    slower at 8x64x56x56.)"""
    if REG_TILE % cs == 0:
        blocks = x.shape[0] // REG_TILE
        done = blocks * REG_TILE
        if not stream:
            _affine_blocks(x, y, co[0], co[1], co[2], blocks)
            _rows_affine(x[done:], y[done:], co, done)
            return
        if y.ctypes.data % LINE_BYTES == 0:
            _affine_blocks_nt(x, y, co[0], co[1], co[2], blocks)
            _rows_affine(x[done:], y[done:], co, done)
            return
    h, e = _stream_bounds(y, y.shape[0], stream)
    _rows_affine(x[:h], y[:h], co, 0)
    t = co.shape[1] // 2
    per_line = LINE_BYTES // y.itemsize
    ph = h % t
    for f in range(h, e, per_line):
        _affine_line(x, f, y, f, co[0], co[1], co[2], ph)
        ph += per_line
        if ph >= t:
            ph -= t
    _rows_affine(x[e:], y[e:], co, e)


# Rows of at least this many channels that REG_TILE does not hold whole (GroupNorm's C = 320 to
# 1,280, InstanceNorm's 512) take the per-row loops below: one contiguous row at a time, running
# sums and coefficients one entry per channel (no tiling, no views per block). Harness runs in
# turn on an Emerald Rapids VM (GroupNorm(32), UNet preset, NHWC, 2 threads, two runs each): numba
# forward 8-16 % and backward 10-22 % faster than the tiled loops above (with _tile in both).
# They write with regular stores (no `stream`): measured only where the harness's outputs stay cached.
# Their sums take eight rows (a contiguous octet, 10 KB at C = 320) at once, channel by channel,
# the running sums in registers, and prefetch the next octet's lines first: the octet loops read
# a stride apart, which the hardware prefetcher follows badly (ROW_MAJOR_BYTES), and a row at a
# time keeps the running sums in memory. One thread, one 1,024 x 320 float32 sample (Emerald
# Rapids VM): from memory 148 us a row at a time, 158 in octets, 113-121 in octets with the next
# one prefetched (two or four ahead: 124-136), against 102 for a plain sequential read; in cache
# 45-73, 45, 51. Harness runs in turn (UNet preset, NHWC, 2 threads), with the pivot and group
# loops below: numba forward 12-31 % and backward 5-22 % faster, geometric-mean ratio to the
# best built-in 1.09x -> 1.18x.
# On an AMD EPYC VM (2 MiB L2, 32 MiB L3) the same loops are the slow ones: 2 threads, cold
# 2x1,024 x 320 samples, the sums took 171-181 us in prefetched octets, 156 in octets, 80-115 a
# row at a time, 157-184 a row at a time with any prefetch (at 640 and 1,280 channels the row at
# a time was as fast as the octets or 1.1x faster). So the sums come in two plans, SUMS_OCTETS and
# SUMS_ROWS, that add the same float32 values in the same order (their results agree bit for
# bit), and numba_fused.py times both on a shape's first calls and keeps the faster.
WIDE_ROW = 128
SUMS_OCTETS = 0
SUMS_ROWS = 1

# The gradient's emit reads six float32 coefficients a channel besides x, g and dx: at 1,280
# channels 30 KB of them, with 15 KB of rows, more than a 32 KB L1, so every row read them again
# from L2. Rows wider than 2 x GRAD_EMIT_COLS are emitted in blocks of GRAD_EMIT_COLS channels
# over all rows (the same operations per element): AMD EPYC VM, 2 threads, cold, 2x1280x8x8
# backward 10-13 % faster; blocks at 640 channels were 6-8 % slower, and the forward's three
# coefficients a channel gained nothing at 1,280.
GRAD_EMIT_COLS = 320


@nb.njit(**JIT)
def _prefetch_span(flat, lo, hi):
    """Prefetch the lines of flat[lo:hi] (clipped to flat's end)."""
    for i in range(lo, min(hi, flat.shape[0]), 64 // flat.itemsize):
        _prefetch(flat, i)


@nb.njit(**JIT)
def _wide_sums_f32(x, k32, st, plan):
    """st (2, C) += sums of x - K and (x - K)^2 over rows x (P, C), each channel's eight rows of an
    octet added in row order, by `plan`: SUMS_ROWS a row at a time, no prefetch
    (_octets_row_major); SUMS_OCTETS eight rows at a time, channel by channel, the next eight
    prefetched (see WIDE_ROW). The last rows are added to float64 one by one."""
    p, cs = x.shape
    full = p // OCTET * OCTET
    if plan == SUMS_ROWS:
        _octets_row_major(x, k32, st, 0, full)
    else:
        flat = x.reshape(-1)
        for b in range(0, full, OCTET):
            _prefetch_span(flat, (b + OCTET) * cs, (b + 2 * OCTET) * cs)
            for j in range(cs):
                k = k32[j]
                d0, d1 = to_f32(x[b, j]) - k, to_f32(x[b + 1, j]) - k
                d2, d3 = to_f32(x[b + 2, j]) - k, to_f32(x[b + 3, j]) - k
                d4, d5 = to_f32(x[b + 4, j]) - k, to_f32(x[b + 5, j]) - k
                d6, d7 = to_f32(x[b + 6, j]) - k, to_f32(x[b + 7, j]) - k
                st[0, j] += np.float64(((((((d0 + d1) + d2) + d3) + d4) + d5) + d6) + d7)
                st[1, j] += np.float64(
                    ((((((d0 * d0 + d1 * d1) + d2 * d2) + d3 * d3) + d4 * d4) + d5 * d5) + d6 * d6) + d7 * d7
                )
    for r in range(full, p):
        for c in range(cs):
            d = to_f32(x[r, c]) - k32[c]
            st[0, c] += np.float64(d)
            st[1, c] += np.float64(d * d)


@nb.njit(**JIT)
def _wide_emit(x, y, co):
    """y = ((x - K) - m) * rstd over rows (P, C), co (3, C) float32 K, m, rstd."""
    kk, mm, rr = co[0], co[1], co[2]
    for r in range(x.shape[0]):
        for c in range(x.shape[1]):
            y[r, c] = from_f32(((to_f32(x[r, c]) - kk[c]) - mm[c]) * rr[c], y)


@nb.njit(**JIT)
def _wide_forward(x, y, mean, rstd, cmean, per, eps, k, k32, st, co, plan):
    """One channels_last sample x, y (P, C) through the per-row loops, its sums by `plan`;
    scratch of C entries."""
    p = x.shape[0]
    _tiled_pivot(x, k)
    for c in range(k.shape[0]):
        k32[c] = k[c]
    st[:] = 0.0
    _wide_sums_f32(x, k32, st, plan)
    if _any_far(st, p):
        st[:] = 0.0
        _rows_sums(x.reshape(-1), k, st)
    _rows_coefs(st, p, eps, k, co, mean, rstd, cmean, per)
    _wide_emit(x, y, co)


@nb.njit(**JIT)
def _wide_grad_sums_f32(x, g, k32, g32, st, plan):
    """st (3, C) += sums of e = g - G, e (x - K) and e^2 over rows (P, C), by `plan`: SUMS_ROWS a
    row at a time (_grad_octets_row_major), SUMS_OCTETS eight rows at a time (_grad_octet) with the
    next eight of x and g prefetched, the same sums in the same order; the last rows added to
    float64 one by one."""
    p, cs = x.shape
    octets = p // OCTET
    if plan == SUMS_ROWS:
        _grad_octets_row_major(x, g, k32, g32, st, octets)
    else:
        xf, gf = x.reshape(-1), g.reshape(-1)
        for b in range(0, octets * OCTET, OCTET):
            _prefetch_span(xf, (b + OCTET) * cs, (b + 2 * OCTET) * cs)
            _prefetch_span(gf, (b + OCTET) * cs, (b + 2 * OCTET) * cs)
            _grad_octet(x, g, k32, g32, st, b)
    for r in range(octets * OCTET, p):
        for c in range(cs):
            e = to_f32(g[r, c]) - g32[c]
            st[0, c] += np.float64(e)
            st[1, c] += np.float64(e * (to_f32(x[r, c]) - k32[c]))
            st[2, c] += np.float64(e * e)


@nb.njit(**JIT)
def _wide_grad_emit(x, g, dx, co):
    """dx = (((g - G) - mean(g) + G) - xhat mean(g xhat)) rstd over rows (P, C), co (6, C) as in
    _rows_grad_coefs."""
    kk, mm, rr, g0, mg, mgx = co[0], co[1], co[2], co[3], co[4], co[5]
    p, cs = x.shape
    cols = cs if cs <= 2 * GRAD_EMIT_COLS else GRAD_EMIT_COLS
    for first in range(0, cs, cols):
        lo, hi = np.uintp(first), np.uintp(min(cs, first + cols))
        for r in range(p):
            for c in range(lo, hi):
                xhat = ((to_f32(x[r, c]) - kk[c]) - mm[c]) * rr[c]
                dx[r, c] = from_f32((((to_f32(g[r, c]) - g0[c]) - mg[c]) - xhat * mgx[c]) * rr[c], dx)


@nb.njit(**JIT)
def _wide_backward(x, g, dx, mean, rstd, cmean, per, eps, k, gk, k32, g32, st, co, plan):
    """One channels_last sample's dx (P, C) through the per-row loops, its sums by `plan`; scratch
    of C entries."""
    p, cs = x.shape
    _tiled_pivot(x, k)
    _tiled_pivot(g, gk)
    for c in range(cs):
        k32[c], g32[c] = k[c], gk[c]
    st[:] = 0.0
    _wide_grad_sums_f32(x, g, k32, g32, st, plan)
    if _any_grad_far(st, p, mean, k, rstd, eps):
        st[:] = 0.0
        _rows_grad_sums(x.reshape(-1), g.reshape(-1), k, gk, st)
    _rows_grad_coefs(st, p, k, gk, co, mean, rstd, cmean, per)
    _wide_grad_emit(x, g, dx, co)


def wide(cs: int) -> bool:
    """Whether rows of cs channels take the per-row loops (forward_wide, backward_wide)."""
    return cs >= WIDE_ROW and REG_TILE % cs != 0


@nb.njit(**JIT)
def forward_wide(xa, ya, n, p, cs, per, stats, eps, chunks, plan, like):
    """forward_rows through the per-row loops (rows for which `wide` holds; regular stores), the
    sums by `plan` (SUMS_OCTETS or SUMS_ROWS) where forward_rows takes `stream`. Kernels of their
    own, so that only such shapes compile them."""
    x, y = nb.carray(_ptr(xa, like), (n, p, cs)), nb.carray(_ptr(ya, like), (n, p, cs))
    _forward_wide(x, y, stats[0], stats[1], stats[2], per, eps, chunks, plan)


@nb.njit(parallel=True, **JIT)
def _forward_wide(x, y, mean, rstd, cmean, per, eps, chunks, plan):
    n, p, cs = x.shape
    for task in nb.prange(chunks):
        k, k32 = np.empty(cs), np.empty(cs, np.float32)
        st, co = np.empty((2, cs)), np.empty((3, cs), np.float32)
        lo, hi = _chunk(task, chunks, n)
        for i in range(lo, hi):
            _wide_forward(x[i], y[i], mean[i], rstd[i], cmean[i], per, eps, k, k32, st, co, plan)


@nb.njit(**JIT)
def backward_wide(xa, ga, da, n, p, cs, per, stats, eps, chunks, plan, like):
    """backward_rows through the per-row loops (see forward_wide)."""
    x, g = nb.carray(_ptr(xa, like), (n, p, cs)), nb.carray(_ptr(ga, like), (n, p, cs))
    dx = nb.carray(_ptr(da, like), (n, p, cs))
    _backward_wide(x, g, dx, stats[0], stats[1], stats[2], per, eps, chunks, plan)


@nb.njit(parallel=True, **JIT)
def _backward_wide(x, g, dx, mean, rstd, cmean, per, eps, chunks, plan):
    n, p, cs = x.shape
    for task in nb.prange(chunks):
        k, gk = np.empty(cs), np.empty(cs)
        k32, g32 = np.empty(cs, np.float32), np.empty(cs, np.float32)
        st, co = np.empty((3, cs)), np.empty((6, cs), np.float32)
        lo, hi = _chunk(task, chunks, n)
        for i in range(lo, hi):
            _wide_backward(
                x[i], g[i], dx[i], mean[i], rstd[i], cmean[i], per, eps, k, gk, k32, g32, st, co, plan
            )


@nb.njit(**JIT)
def forward_rows(xa, ya, n, p, cs, per, stats, eps, chunks, stream, like):
    """y = normalize(x) per channel of each sample, or per group of `per` consecutive channels:
    x, y the addresses of n channels_last samples of p rows of cs channels of like's type, stats
    float64 (3, n, cs) <- mean and rstd (each channel its group's) and, for groups, each
    channel's own mean (for the backward)."""
    x, y = nb.carray(_ptr(xa, like), (n, p, cs)), nb.carray(_ptr(ya, like), (n, p, cs))
    _forward_rows(x, y, stats[0], stats[1], stats[2], per, eps, chunks, stream)


@nb.njit(**JIT)
def forward_rows_split(xa, ya, n, p, cs, per, stats, eps, chunks, stream, like):
    """forward_rows with every sample split into `chunks` runs of rows across the threads."""
    x, y = nb.carray(_ptr(xa, like), (n, p, cs)), nb.carray(_ptr(ya, like), (n, p, cs))
    _forward_rows_split(x, y, stats[0], stats[1], stats[2], per, eps, chunks, stream)


@nb.njit(parallel=True, **JIT)
def _forward_rows(x, y, mean, rstd, cmean, per, eps, chunks, stream):
    """Samples whole, contiguous runs of them per task (thread); mean, rstd: float64 (N, C)."""
    n, p, cs = x.shape
    ts, te = _tiles(cs)
    for task in nb.prange(chunks):
        kt = np.empty(ts)
        st = np.empty((2, ts))
        co = np.empty((3, 2 * te), np.float32)
        lo, hi = _chunk(task, chunks, n)
        for i in range(lo, hi):
            xf, yf = x[i].reshape(-1), y[i].reshape(-1)
            _tiled_pivot(x[i], kt)
            st[:] = 0.0
            _rows_sums_f32(xf, kt, st)
            s = _fold(st, cs)
            if _any_far(s, p):
                st[:] = 0.0
                _rows_sums(xf, kt, st)
                s = _fold(st, cs)
            _rows_coefs(s, p, eps, kt, co, mean[i], rstd[i], cmean[i], per)
            _rows_emit(xf, yf, co, cs, stream)
        _fence()


@nb.njit(parallel=True, **JIT)
def _forward_rows_split(x, y, mean, rstd, cmean, per, eps, chunks, stream):
    """forward_rows with every sample split into `chunks` runs of rows across the threads."""
    n, p, cs = x.shape
    ts, te = _tiles(cs)
    sums = np.zeros((n * chunks, 2, ts))
    for task in nb.prange(n * chunks):
        i = task // chunks
        start, stop = _chunk(task % chunks, chunks, p)
        kt = np.empty(ts)
        _tiled_pivot(x[i], kt)
        _rows_sums(x[i].reshape(-1)[start * cs : stop * cs], kt, sums[task])
    coefs = np.empty((n, 3, 2 * te), np.float32)
    for i in range(n):
        kt = np.empty(ts)
        _tiled_pivot(x[i], kt)
        total = sums[i * chunks : (i + 1) * chunks].sum(axis=0)
        _rows_coefs(_fold(total, cs), p, eps, kt, coefs[i], mean[i], rstd[i], cmean[i], per)
    for task in nb.prange(n * chunks):
        i = task // chunks
        start, stop = _chunk(task % chunks, chunks, p)
        xf, yf = x[i].reshape(-1)[start * cs : stop * cs], y[i].reshape(-1)[start * cs : stop * cs]
        _rows_emit(xf, yf, coefs[i], cs, stream)
        _fence()


@nb.njit(**JIT)
def _rows_grad_sums(x, g, kt, gt, st):
    """st[0, j] += sum(g - gt[j]), st[1, j] += sum((g - gt[j]) * (x - kt[j])), flat spans as in
    _rows_sums (gt: the sample's first row of g, tiled)."""
    t = kt.shape[0]
    full = x.shape[0] // t
    xb, gb = x[: full * t].reshape(full, t), g[: full * t].reshape(full, t)
    xt, gtail = x[full * t :], g[full * t :]
    quads = full // 4 * 4
    for b in range(0, quads, 4):
        for j in range(t):
            e0 = np.float64(to_f32(gb[b, j])) - gt[j]
            e1 = np.float64(to_f32(gb[b + 1, j])) - gt[j]
            e2 = np.float64(to_f32(gb[b + 2, j])) - gt[j]
            e3 = np.float64(to_f32(gb[b + 3, j])) - gt[j]
            d0 = np.float64(to_f32(xb[b, j])) - kt[j]
            d1 = np.float64(to_f32(xb[b + 1, j])) - kt[j]
            d2 = np.float64(to_f32(xb[b + 2, j])) - kt[j]
            d3 = np.float64(to_f32(xb[b + 3, j])) - kt[j]
            st[0, j] += (e0 + e1) + (e2 + e3)
            st[1, j] += (e0 * d0 + e1 * d1) + (e2 * d2 + e3 * d3)
    for b in range(quads, full):
        for j in range(t):
            e = np.float64(to_f32(gb[b, j])) - gt[j]
            st[0, j] += e
            st[1, j] += e * (np.float64(to_f32(xb[b, j])) - kt[j])
    for j in range(xt.shape[0]):
        e = np.float64(to_f32(gtail[j])) - gt[j]
        st[0, j] += e
        st[1, j] += e * (np.float64(to_f32(xt[j])) - kt[j])


@nb.njit(**JIT)
def _grad_octets(xb, gb, k32, g32, st, octets):
    """_grad_octets_row_major with the eight rows of an octet read at once, position by position:
    their float32 sums stay in registers (see ROW_MAJOR_BYTES)."""
    for b in range(0, octets * OCTET, OCTET):
        _grad_octet(xb, gb, k32, g32, st, b)


@nb.njit(**JIT)
def _grad_octet(xb, gb, k32, g32, st, b):
    """_grad_octets' sums over the one octet of rows b..b + 8."""
    for j in range(xb.shape[1]):
        k, gk = k32[j], g32[j]
        s0 = np.float32(0.0)
        s1 = np.float32(0.0)
        s2 = np.float32(0.0)
        for r in range(b, b + OCTET):
            e = to_f32(gb[r, j]) - gk
            s0 += e
            s1 += e * (to_f32(xb[r, j]) - k)
            s2 += e * e
        st[0, j] += np.float64(s0)
        st[1, j] += np.float64(s1)
        st[2, j] += np.float64(s2)


@nb.njit(**JIT)
def _grad_octets_row_major(xb, gb, k32, g32, st, octets):
    """st (3, T) += float32 sums of e = g - G, e (x - K) and e^2 over the first `octets` * 8 rows
    of blocks xb, gb, a row at a time, added to float64 once per eight rows."""
    t = xb.shape[1]
    a = np.empty((3, t), np.float32)
    for b in range(0, octets * OCTET, OCTET):
        a[:] = 0.0
        for r in range(b, b + OCTET):
            for j in range(t):
                e = to_f32(gb[r, j]) - g32[j]
                a[0, j] += e
                a[1, j] += e * (to_f32(xb[r, j]) - k32[j])
                a[2, j] += e * e
        for j in range(t):
            st[0, j] += np.float64(a[0, j])
            st[1, j] += np.float64(a[1, j])
            st[2, j] += np.float64(a[2, j])


@nb.njit(**JIT)
def _rows_grad_sums_fast(x, g, kt, gt, st, count, cs, mean, rstd, eps):
    """Per-channel (3, C) sum(g - G), sum((g - G)(x - K)), sum((g - G)^2) from float32 octets
    (_octet_grad_sums in registers when the blocks are REG_TILE long, else a row at a time) when
    both pivots pass the guard (_grad_far); otherwise an empty (0, C) array: the caller sums in
    float64. (Until the pivots were the mean of the first rows, only REG_TILE blocks took this
    path: at C = 320 one channel in ~300 failed the guard, so nearly every sample did.)"""
    t = kt.shape[0]
    k32 = np.empty(t, np.float32)
    g32 = np.empty(t, np.float32)
    for j in range(t):
        k32[j], g32[j] = kt[j], gt[j]
    full = x.shape[0] // t
    octets = full // OCTET
    st[:] = 0.0
    if t == REG_TILE:
        _octet_grad_sums(x, g, k32, g32, st, octets)
    else:
        xb, gb = x[: full * t].reshape(full, t), g[: full * t].reshape(full, t)
        if t * x.itemsize <= ROW_MAJOR_BYTES:
            _grad_octets_row_major(xb, gb, k32, g32, st, octets)
        else:
            _grad_octets(xb, gb, k32, g32, st, octets)
    done = octets * OCTET * t
    xr, gr = x[done:], g[done:]
    for j in range(xr.shape[0]):
        e = to_f32(gr[j]) - g32[j % t]
        st[0, j % t] += np.float64(e)
        st[1, j % t] += np.float64(e * (to_f32(xr[j]) - k32[j % t]))
        st[2, j % t] += np.float64(e * e)
    s = _fold(st, cs)
    if _any_grad_far(s, count, mean, kt, rstd, eps):
        return np.empty((0, cs))
    return s


@nb.njit(**JIT)
def _rows_grad_coefs(s, count, kt, gt, co, mean, rstd, cmean, per):
    """co (6, 2T) <- float32 K, mean - K, rstd, G, mean(g) - G, mean(g * xhat) per channel, tiled,
    from each channel's sums s[0] = sum(g - G), s[1] = sum((g - G)(x - K)). A group of `per`
    channels (GroupNorm) shares mean(g) and mean(g * xhat), merged in float64 from its channels'
    sums about their own pivots: sum(g (x - mu)) = s[1] + (K - mu) s[0] + G (X + count (K - mu)),
    X = count (cmean - K) the channel's own sum of x - K (forward's cmean)."""
    cs = s.shape[1]
    if per == 1:
        for c in range(cs):
            m = mean[c] - kt[c]
            mg, mgx = _grad_coefs(s[0, c], s[1, c], count, m, rstd[c])
            co[0, c], co[1, c], co[2, c] = kt[c], m, rstd[c]
            co[3, c], co[4, c], co[5, c] = gt[c], mg, mgx
        _tile(co, cs)
        return
    n = count * per
    for first in range(0, cs, per):
        lo, hi = np.uintp(first), np.uintp(first + per)  # unsigned: see _rows_coefs
        mu, rs = mean[lo], rstd[lo]
        sg = 0.0
        sgx = 0.0
        for c in range(lo, hi):
            d = kt[c] - mu
            sg += s[0, c] + count * gt[c]
            sgx += s[1, c] + d * s[0, c] + gt[c] * (count * (cmean[c] - kt[c]) + count * d)
        mean_g, mgx = sg / n, rs * (sgx / n)
        for c in range(lo, hi):
            co[0, c], co[1, c], co[2, c] = kt[c], mu - kt[c], rs
            co[3, c], co[4, c], co[5, c] = gt[c], mean_g - gt[c], mgx
    _tile(co, cs)


@nb.njit(**JIT)
def _rows_grad(x, g, dx, co, phase):
    t = co.shape[1] // 2
    for f in range(0, x.shape[0], t):
        n = min(t, x.shape[0] - f)
        ph = (phase + f) % t
        xs, gs, ds = x[f : f + n], g[f : f + n], dx[f : f + n]
        kk, mm, rr = co[0, ph : ph + n], co[1, ph : ph + n], co[2, ph : ph + n]
        g0, mg, mgx = co[3, ph : ph + n], co[4, ph : ph + n], co[5, ph : ph + n]
        for u in range(n):
            xhat = ((to_f32(xs[u]) - kk[u]) - mm[u]) * rr[u]
            ds[u] = from_f32((((to_f32(gs[u]) - g0[u]) - mg[u]) - xhat * mgx[u]) * rr[u], dx)


@nb.njit(**JIT)
def _rows_grad_emit(x, g, dx, co, cs, stream):
    """_rows_grad over a span, whole aligned lines streamed (no prefetch: see _rows_emit)."""
    if REG_TILE % cs == 0:
        blocks = x.shape[0] // REG_TILE
        done = blocks * REG_TILE
        if not stream:
            _grad_blocks(x, g, dx, co[0], co[1], co[2], co[3], co[4], co[5], blocks)
            _rows_grad(x[done:], g[done:], dx[done:], co, done)
            return
        if dx.ctypes.data % LINE_BYTES == 0:
            _grad_blocks_nt(x, g, dx, co[0], co[1], co[2], co[3], co[4], co[5], blocks)
            _rows_grad(x[done:], g[done:], dx[done:], co, done)
            return
    h, e = _stream_bounds(dx, dx.shape[0], stream)
    _rows_grad(x[:h], g[:h], dx[:h], co, 0)
    t = co.shape[1] // 2
    per_line = LINE_BYTES // dx.itemsize
    ph = h % t
    for f in range(h, e, per_line):
        _grad_line(x, g, f, dx, f, co[0], co[1], co[2], co[3], co[4], co[5], ph)
        ph += per_line
        if ph >= t:
            ph -= t
    _rows_grad(x[e:], g[e:], dx[e:], co, e)


@nb.njit(**JIT)
def backward_rows(xa, ga, da, n, p, cs, per, stats, eps, chunks, stream, like):
    """dx from x, upstream g and forward's float64 (3, n, cs) statistics, at addresses as in
    forward_rows."""
    x, g = nb.carray(_ptr(xa, like), (n, p, cs)), nb.carray(_ptr(ga, like), (n, p, cs))
    dx = nb.carray(_ptr(da, like), (n, p, cs))
    _backward_rows(x, g, dx, stats[0], stats[1], stats[2], per, eps, chunks, stream)


@nb.njit(**JIT)
def backward_rows_split(xa, ga, da, n, p, cs, per, stats, eps, chunks, stream, like):
    """backward_rows with every sample split into `chunks` runs of rows across the threads."""
    x, g = nb.carray(_ptr(xa, like), (n, p, cs)), nb.carray(_ptr(ga, like), (n, p, cs))
    dx = nb.carray(_ptr(da, like), (n, p, cs))
    _backward_rows_split(x, g, dx, stats[0], stats[1], stats[2], per, eps, chunks, stream)


@nb.njit(parallel=True, **JIT)
def _backward_rows(x, g, dx, mean, rstd, cmean, per, eps, chunks, stream):
    """dx for channels_last rows, samples whole as in _forward_rows."""
    n, p, cs = x.shape
    ts, te = _tiles(cs)
    for task in nb.prange(chunks):
        kt = np.empty(ts)
        gt = np.empty(ts)
        st = np.empty((2, ts))
        st3 = np.empty((3, ts))
        co = np.empty((6, 2 * te), np.float32)
        lo, hi = _chunk(task, chunks, n)
        for i in range(lo, hi):
            xf, gf, df = x[i].reshape(-1), g[i].reshape(-1), dx[i].reshape(-1)
            _tiled_pivot(x[i], kt)
            _tiled_pivot(g[i], gt)
            s = _rows_grad_sums_fast(xf, gf, kt, gt, st3, p, cs, mean[i], rstd[i], eps)
            if s.shape[0] == 0:
                st[:] = 0.0
                _rows_grad_sums(xf, gf, kt, gt, st)
                s = _fold(st, cs)
            _rows_grad_coefs(s, p, kt, gt, co, mean[i], rstd[i], cmean[i], per)
            _rows_grad_emit(xf, gf, df, co, cs, stream)
        _fence()


@nb.njit(parallel=True, **JIT)
def _backward_rows_split(x, g, dx, mean, rstd, cmean, per, eps, chunks, stream):
    """backward_rows with every sample split into `chunks` runs of rows across the threads."""
    n, p, cs = x.shape
    ts, te = _tiles(cs)
    sums = np.zeros((n * chunks, 2, ts))
    for task in nb.prange(n * chunks):
        i = task // chunks
        start, stop = _chunk(task % chunks, chunks, p)
        kt = np.empty(ts)
        gt = np.empty(ts)
        _tiled_pivot(x[i], kt)
        _tiled_pivot(g[i], gt)
        span = slice(start * cs, stop * cs)
        _rows_grad_sums(x[i].reshape(-1)[span], g[i].reshape(-1)[span], kt, gt, sums[task])
    coefs = np.empty((n, 6, 2 * te), np.float32)
    for i in range(n):
        kt = np.empty(ts)
        gt = np.empty(ts)
        _tiled_pivot(x[i], kt)
        _tiled_pivot(g[i], gt)
        total = sums[i * chunks : (i + 1) * chunks].sum(axis=0)
        _rows_grad_coefs(_fold(total, cs), p, kt, gt, coefs[i], mean[i], rstd[i], cmean[i], per)
    for task in nb.prange(n * chunks):
        i = task // chunks
        start, stop = _chunk(task % chunks, chunks, p)
        span = slice(start * cs, stop * cs)
        xf, gf, df = x[i].reshape(-1)[span], g[i].reshape(-1)[span], dx[i].reshape(-1)[span]
        _rows_grad_emit(xf, gf, df, coefs[i], cs, stream)
        _fence()
