"""Numba: fused per-plane normalization (forward and input gradient), NCHW and channels_last in place."""

from __future__ import annotations

import os
import statistics
import time
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


# A call whose tensors (inputs and output) add up to at least 1.5x the last-level cache writes its
# output with non-temporal stores (see _numba_kernels.py): the output could not stay cached anyway,
# and skipping the read-for-ownership saves a third of the traffic. Below that, regular stores
# leave the output in cache for whoever reads it next (and an allocator that hands the same
# buffer back): measured at 8x64x56x56 float32 forward, 2 threads, regular stores took 0.08
# ns/element against 0.17 streamed. At exactly the cache's size (4x64x128x128 forward: 16 MiB in,
# 16 MiB out, a 32 MiB L3) the harness's runs against F.group_norm (3 each, in turn) gave 0.98,
# 1.04 and 1.12x with regular stores, 1.02, 0.90 and 0.88x streamed (0.84x in the sample run).
STREAM_MIN_BYTES = _last_level_cache_bytes() * 3 // 2

# channels_last: a sample's second pass reads it again from L2 while it writes the output. When a
# sample's inputs and output do not fit L2 together, regular stores allocate the output's lines in
# L2 and evict the input lines that the same pass is about to read (the oldest ones in LRU order
# are those not yet re-read), so the pass reads them again from L3; streaming stores bypass L2.
# Measured at 8x64x56x56 float32, 2 threads (800 KB samples, 1 MB L2): forward 0.336 vs 0.358
# ns/element (10th percentiles), backward 0.428 vs 0.464. Only where C divides 64, whose register
# loops stream whole blocks: other C stream line by line (_affine_line), and GroupNorm(32) on the
# UNet preset (C = 320 to 1280, 1.3 MB samples) ran forward 1.13-1.21x faster with regular stores
# (harness runs in turn, 2 threads: 192 -> 166 and 171 us at 2x320x32x32, 132 -> 98 and 101 us
# at 2x640x16x16; backward alike within noise).
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


# The kernels' element type for each tensor dtype, as a scalar they specialise on (float16 travels
# as uint16 bits, bfloat16 as int16 bits: NumPy has no bfloat16 and Numba no float16).
# With each, its size in bytes.
_ELEMENT = {
    torch.float32: (np.float32(0), 4),
    torch.float16: (np.uint16(0), 2),
    torch.bfloat16: (np.int16(0), 2),
}

# (channels_last, mode) -> (kernel taking whole units, kernel splitting units across threads)
_KERNELS = {
    (False, "forward"): (kernels.forward_planes, kernels.forward_planes_split),
    (True, "forward"): (kernels.forward_rows, kernels.forward_rows_split),
    (False, "backward"): (kernels.backward_planes, kernels.backward_planes_split),
    (True, "backward"): (kernels.backward_rows, kernels.backward_rows_split),
}

# The per-row loops' sums (kernels.wide) have two plans with the same results bit for bit, and
# which is faster depends on the machine (_numba_kernels.py, SUMS_OCTETS): the first calls of
# each (mode, shape, dtype, thread count) try them in turn, PLAN_TRIALS timed calls each after
# PLAN_WARMUP untimed ones, and the later calls take the one with the lower median. With one
# untimed call and three each, 1 of 3 processes on an AMD VM kept the plan 1.4x slower at
# 2x320x32x32 (its first calls pay the allocator's first use of the output's pages).
PLAN_WARMUP = 2
PLAN_TRIALS = 5


class PlanChooser:
    """Picks, per key, the fastest of `plans` by timing the calls it is given (`clock`: seconds)."""

    def __init__(self, plans: tuple[int, ...], trials: int, warmup: int = 1, clock=time.perf_counter) -> None:
        self.plans, self.trials, self.warmup, self.clock = plans, trials, warmup, clock
        self.chosen: dict[tuple, int] = {}
        self._times: dict[tuple, list[list[float]]] = {}
        self._untimed: dict[tuple, int] = {}

    def call(self, key: tuple, launch) -> int:
        """launch(plan) with the key's chosen plan, or, while it has none, with the first plan for
        the key's `warmup` first calls (untimed: compilation, first touch), then with the plan that
        has the fewest timings; returns the plan it ran."""
        plan = self.chosen.get(key)
        if plan is not None:
            launch(plan)
            return plan
        untimed = self._untimed.get(key, 0)
        if untimed < self.warmup:
            self._untimed[key] = untimed + 1
            launch(self.plans[0])
            return self.plans[0]
        times = self._times.setdefault(key, [[] for _ in self.plans])
        i = min(range(len(self.plans)), key=lambda j: len(times[j]))
        start = self.clock()
        launch(self.plans[i])
        times[i].append(self.clock() - start)
        if all(len(t) >= self.trials for t in times):
            best = min(range(len(self.plans)), key=lambda j: statistics.median(times[j]))
            self.chosen[key] = self.plans[best]
            self._times.pop(key, None)  # (another thread's call may have got there first)
            self._untimed.pop(key, None)
        return self.plans[i]


_wide_plans = PlanChooser((kernels.SUMS_OCTETS, kernels.SUMS_ROWS), PLAN_TRIALS, PLAN_WARMUP)

# Numba's thread count, as the builder last set it (numba.get_num_threads() costs ~0.7 us a call).
# It only sets how many tasks a call is cut into: any other count is as correct.
_threads = numba.get_num_threads()


def set_threads(threads: int) -> None:
    """Numba's pool and the kernels' task count: `threads`, at most NUMBA_NUM_THREADS."""
    global _threads
    _threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(_threads)


def _whole(units: int, unit_bytes: int, threads: int) -> int:
    """How many units the threads take whole; the rest are split across all threads."""
    left = units % threads
    if left and (units < threads or unit_bytes >= SPLIT_MIN_BYTES):
        return units - left
    return units


def _launch(
    mode: str, rows: bool, tensors: tuple[torch.Tensor, ...], stats: np.ndarray, eps: float, per: int = 1
) -> None:
    """Run the `mode` kernels over the tensors (x, y or x, g, dx: same shape, dtype and memory
    format), passed by address: runs of whole units (NCHW groups of `per` planes, or channels_last
    samples), one run per thread, then the units left split across threads. Only the kernels a
    call needs get compiled: the split ones only when a unit is left over. stats: float64 (2,
    units) for planes, (3, N, C) for samples (mean and rstd of each channel's group, and the
    channel's own mean). NCHW GroupNorm is the same kernels: a group of `per`
    consecutive planes is one contiguous span, normalized as one unit. A NumPy view of each tensor
    cost ~1.4 us, a sixth of a small call (the best built-in's whole forward at 8x3x32x32 is
    ~8 us); this function costs ~1 us itself."""
    whole_kernel, split_kernel = _KERNELS[rows, mode]
    wide = rows and kernels.wide(tensors[0].shape[1])
    if wide:
        whole_kernel = kernels.forward_wide if mode == "forward" else kernels.backward_wide
    x = tensors[0]
    element = _ELEMENT.get(x.dtype)
    if element is None:
        raise TypeError(f"numba_fused supports float32, float16 and bfloat16 tensors, not {x.dtype}")
    like, itemsize = element
    n, c, h, w = x.shape
    if rows:
        units, shape, unit_bytes = n, (h * w, c, per), h * w * c * itemsize
    else:
        units, shape, unit_bytes = n * c // per, (per * h * w,), per * h * w * itemsize
    count = len(tensors)
    stream = count * units * unit_bytes >= STREAM_MIN_BYTES or (
        rows and count * unit_bytes > ROWS_STREAM_UNIT_BYTES and kernels.REG_TILE % c == 0
    )
    threads = _threads
    whole = _whole(units, (count - 1) * unit_bytes, threads)
    addresses = [t.data_ptr() for t in tensors]
    if whole and wide:
        key = (mode, whole, *shape, x.dtype, threads)
        _wide_plans.call(
            key, lambda plan: whole_kernel(*addresses, whole, *shape, stats, eps, threads, plan, like)
        )
    elif whole:
        whole_kernel(*addresses, whole, *shape, stats, eps, threads, stream, like)
    if whole < units:
        rest = [a + whole * unit_bytes for a in addresses]
        split_kernel(*rest, units - whole, *shape, stats[:, whole:], eps, threads, stream, like)


def _indexable(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """x as the kernels read it, and whether they read it as channels_last rows. Contiguous and
    channels_last tensors are used in place; other strides are copied once. (Only addresses reach
    the kernels, so autograd history needs no detach.)"""
    if x.dim() != 4 or not x.is_cpu:
        raise ValueError(f"expected a CPU N,C,H,W tensor, got shape {tuple(x.shape)} on {x.device}")
    if x.is_contiguous():
        return x, False
    if x.is_contiguous(memory_format=torch.channels_last):
        return x, True
    return x.detach().contiguous(), False


def _forward(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, np.ndarray]:
    """y, and the float64 statistics in the kernels' form: (2, N*C) for planes, (2, N, C) rows."""
    return _forward_indexed(*_indexable(x), eps)


def _forward_indexed(
    x: torch.Tensor, rows: bool, eps: float, per: int = 1
) -> tuple[torch.Tensor, np.ndarray]:
    y = torch.empty_like(x)
    n, c = x.shape[:2]
    stats = np.empty((3, n, c) if rows else (2, n * c // per))
    if y.numel():
        _launch("forward", rows, (x, y), stats, float(eps), per)
    return y, stats


def forward(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y in x's memory format, and the float64 per-plane mean and rstd, each of shape (N, C)."""
    y, stats = _forward(x, eps)
    stats_t = torch.from_numpy(stats[:2]).reshape(2, *x.shape[:2])
    return y, stats_t[0], stats_t[1]


def _backward(x: torch.Tensor, dy: torch.Tensor, stats: np.ndarray, eps: float) -> torch.Tensor:
    return _backward_indexed(*_indexable(x), dy, stats, eps)


def _backward_indexed(
    x: torch.Tensor, rows: bool, dy: torch.Tensor, stats: np.ndarray, eps: float, per: int = 1
) -> torch.Tensor:
    fmt = torch.channels_last if rows else torch.contiguous_format
    if dy.dtype != x.dtype or not dy.is_contiguous(memory_format=fmt):
        dy = dy.to(x.dtype).contiguous(memory_format=fmt)  # e.g. the expanded ones of y.sum().backward()
    dx = torch.empty_like(x)
    if dx.numel():
        _launch("backward", rows, (x, dy, dx), stats, float(eps), per)
    return dx


def backward(
    x: torch.Tensor, dy: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, eps: float
) -> torch.Tensor:
    """dL/dx from x, dL/dy and forward's saved statistics (and its eps); dx has x's memory format."""
    stats = torch.stack([mean, rstd, mean]).to(torch.float64).contiguous().numpy()
    if not x.is_contiguous(memory_format=torch.channels_last) or x.is_contiguous():
        stats = stats[:2].reshape(2, -1)
    return _backward(x, dy, stats, eps)


class NumbaInstanceNormFunction(torch.autograd.Function):
    """y = (x - mean) / sqrt(var + eps) per (n, c) plane, or per group of `per` consecutive
    channels; keeps x, mean and rstd for dx."""

    @staticmethod
    def forward(ctx, x, eps, per):
        xi, rows = _indexable(x)
        y, stats = _forward_indexed(xi, rows, eps, per)
        ctx.save_for_backward(xi)  # x as the kernels read it (x itself, or its one copy)
        ctx.stats = stats  # float64 mean and rstd (see _forward), computed here, never modified
        ctx.rows = rows
        ctx.eps, ctx.per = eps, per
        return y

    @staticmethod
    def backward(ctx, dy):
        # The kernels are not differentiable themselves (what once_differentiable would enforce,
        # for ~10 us a call; this check costs nothing).
        if torch.is_grad_enabled():
            raise RuntimeError("numba_fused has no double backward (autograd.grad with create_graph=True)")
        (x,) = ctx.saved_tensors
        return _backward_indexed(x, ctx.rows, dy, ctx.stats, ctx.eps, ctx.per), None, None


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """F.instance_norm(x, eps=eps) without running stats or affine, on CPU tensors."""
    if x.requires_grad and torch.is_grad_enabled():
        return NumbaInstanceNormFunction.apply(x, eps, 1)
    return _forward(x, eps)[0]


def group_norm(x: torch.Tensor, num_groups: int, eps: float = 1e-5) -> torch.Tensor:
    """F.group_norm(x, num_groups, eps=eps) without affine, on CPU tensors, NCHW or channels_last
    (read in place: no layout copy), for any G that divides C."""
    c = x.shape[1] if x.dim() == 4 else 0
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"num_groups {num_groups} does not divide the {c} channels of {tuple(x.shape)}")
    xi, rows = _indexable(x)
    per = c // num_groups
    if x.requires_grad and torch.is_grad_enabled():
        return NumbaInstanceNormFunction.apply(x, eps, per)
    return _forward_indexed(xi, rows, eps, per)[0]


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
    set_threads(torch.get_num_threads())
    eps = float(case.eps)
    return lambda x: instance_norm(x, eps)


@register(
    op="group_norm",
    framework="torch",
    layout=("NCHW", "NHWC"),
    std="population",
    eps_at="sqrt",
    modes=("forward", "backward", "train"),
    dtypes=("float32", "float16", "bfloat16"),
    devices=("cpu",),
    roles=("own",),
)
def numba_groupnorm(case):
    """numba_fused's kernels on GroupNorm(G): NCHW, a group of C/G planes is one contiguous span;
    channels_last, each channel's sums are merged into its group's before the second pass."""
    set_threads(torch.get_num_threads())
    eps, groups = float(case.eps), case.params()["num_groups"]
    return lambda x: group_norm(x, groups, eps)
