"""Memory of one call, the allocator's steady state, page faults, and the cache the device really has.

**Steady state.** normbench models a long-running training process that has reached its
high-water mark: memory it once touched stays mapped, and a freed output is handed back without
a page fault whatever its size. glibc's defaults do not give that: blocks over its mmap threshold
(dynamic, at most 32 MiB) come fresh from the kernel on every call, and a free heap top over the
trim threshold goes back to it, so one implementation's large temporaries could change the next
one's fault state. Workers therefore start with `GLIBC_TUNABLES` (see `steady_env`) that disable
mmap for large blocks and trimming, and re-assert it with mallopt; every timed call runs so.
Faults are still counted (`FaultCounter`) and stored per call in each row, so a row that does
pay them says so.

**Memory of one call** (CPU): return the heap's free memory to the kernel (malloc_trim), enable
mmap for blocks over 256 KiB for the measured call only, so its large buffers come fresh from the
kernel; reset the kernel's peak RSS counter (write 5 to
/proc/self/clear_refs), call, read VmHWM. The rise over the RSS before the call is what the call
touched: output plus temporaries. Page granularity (4 KiB); `tests/test_memory.py` calibrates it
with an implementation that allocates a known amount. GPU: the framework allocator's statistics
(see bench/frameworks/).

**Effective cache.** A VM may report a 32 MiB L3 while the host serves far more from cache.
`probe_cache` sweeps copy bandwidth against footprint; the effective cache is where bandwidth
falls to the DRAM plateau, and the cold policy rotates inputs through twice that. The sweep (~5 s
of both cores) is a property of the machine: a run reuses the same machine's sweep of the last day
(`bench.environment.SweepStore`), and checks again, every run, that its rotation is cold.
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench import environment

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MEASURE_MMAP_BYTES = 256 * 1024
GLIBC_DEFAULT_MMAP_MAX = 65536
INT_MAX = 2**31 - 1
# glibc's largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): in a default
# process every block at least this large comes fresh from the kernel on every allocation.
MMAP_CEILING_BYTES = 32 << 20


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def steady_env() -> dict[str, str]:
    """Set before a worker starts, so even the interpreter's first allocations follow it."""
    return {"GLIBC_TUNABLES": f"glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={INT_MAX}"}


def steady_allocator() -> None:
    """Memory once touched stays mapped: no mmap for large blocks, no trimming of the heap."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_MAX, 0)
        _LIBC.mallopt(M_TRIM_THRESHOLD, INT_MAX)


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True)
class CpuReading:
    """A process's CPU time as the kernel counts it: all its threads', dead ones included, in clock
    ticks (coarse), and each live thread's to the nanosecond; with each live thread's time spent
    runnable on a run queue, waiting for a CPU (schedstat's run_delay; 0 where not counted)."""

    total_s: float
    threads: dict[str, float]
    waited: dict[str, float] = field(default_factory=dict)

    def since(self, earlier: CpuReading) -> float:
        """Seconds of CPU the process had since `earlier`: the threads' own clocks where they lived
        through both readings, the coarse total less a tick where threads came and went."""
        precise = sum(
            max(0.0, t - earlier.threads[tid]) for tid, t in self.threads.items() if tid in earlier.threads
        )
        return max(precise, self.total_s - earlier.total_s - CLOCK_TICK_S)

    def wanted_since(self, earlier: CpuReading) -> float:
        """Seconds the process's threads were on a CPU or waiting for one since `earlier`: a loaded
        machine's waiting counts, sleeping does not."""
        waited = sum(
            max(0.0, t - earlier.waited[tid]) for tid, t in self.waited.items() if tid in earlier.waited
        )
        return self.since(earlier) + waited


def cpu_reading(pid: int) -> CpuReading | None:
    """The CPU time of process `pid` (None where /proc does not say)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S  # utime, stime
        threads, waited = {}, {}
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                with open(f"{task.path}/schedstat") as f:
                    on_cpu, on_queue = (int(v) / 1e9 for v in f.read().split()[:2])
            except (OSError, ValueError):
                continue  # a thread that ended meanwhile
            threads[task.name], waited[task.name] = on_cpu, on_queue
        return CpuReading(total, threads, waited)
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("VmHWM not in /proc/self/status")


def supported() -> str | None:
    """None when the CPU method works here, else why not."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        peak_rss_bytes()
    except OSError as exc:
        return f"peak-RSS reset unavailable ({exc})"
    return None


def measure_cpu(call: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes the call touched beyond what was resident before it, and the call's result."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_MAX, GLIBC_DEFAULT_MMAP_MAX)
        _LIBC.mallopt(M_MMAP_THRESHOLD, MEASURE_MMAP_BYTES)
    try:
        # Hand what the heap holds back to the kernel first, or the call would be served from
        # memory an earlier call left behind and look free. Every implementation warms up after
        # all memory measurements, so the timed calls find the heap at its high-water mark again.
        gc.collect()
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        base = rss_bytes()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        result = call()
        return max(0, peak_rss_bytes() - base), result
    finally:
        steady_allocator()


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks")
    ] + [("fordblks", ctypes.c_size_t), ("keepcost", ctypes.c_size_t)]


def _heap_bytes() -> int | None:
    """Bytes of heap glibc holds from the kernel (all arenas), or None without mallinfo2."""
    fn = getattr(_LIBC, "mallinfo2", None) if _LIBC is not None else None
    if fn is None:
        return None
    fn.restype = _MallInfo2
    return int(fn().arena)


def _plug_free_chunks(block_bytes: int, most: int = 64) -> list[int]:
    """Allocate, from the heap, the free chunks that could serve a `block_bytes` request: a process
    that ran with mmap off has them (a freed large output), and glibc serves a request from a free
    chunk before it maps fresh memory, whatever its mmap threshold. A default process never put
    such blocks in its heap. Stops when the heap must grow for the next one; that one is held too,
    since freed it would rejoin the heap's top chunk, which a heap that outgrew its break (a large
    one, extended by mmap) cannot hand back, and the next request would be carved from it."""
    assert _LIBC is not None
    _LIBC.malloc.restype = ctypes.c_void_p
    _LIBC.free.argtypes = [ctypes.c_void_p]
    held: list[int] = []
    while len(held) < most:
        before = _heap_bytes()
        p = _LIBC.malloc(ctypes.c_size_t(block_bytes))
        if not p:
            break
        held.append(p)
        after = _heap_bytes()
        if before is None or after is None or after > before:
            break  # the heap grew for it: no free chunk that large was left
    return held


@contextmanager
def default_allocator(block_bytes: int = MMAP_CEILING_BYTES) -> Iterator[bool]:
    """glibc as a default process has it once its dynamic thresholds have converged: blocks from
    32 MiB up (MMAP_CEILING_BYTES) mmapped fresh on every allocation and unmapped on free, heap tops
    over twice that trimmed. The heap's free chunks of `block_bytes` or more (what the steady state
    left) are held meanwhile, so they cannot serve the calls. Yields False where glibc's mallopt or
    mallinfo2 is not there."""
    if _LIBC is None or _heap_bytes() is None:
        yield False
        return
    held = _plug_free_chunks(block_bytes)  # mmap is still off: these come from the heap
    _LIBC.mallopt(M_MMAP_MAX, GLIBC_DEFAULT_MMAP_MAX)
    _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_CEILING_BYTES)
    _LIBC.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_CEILING_BYTES)
    _LIBC.malloc_trim(0)
    try:
        yield True
    finally:
        for p in held:
            _LIBC.free(ctypes.c_void_p(p))
        steady_allocator()


def faults() -> tuple[int, int]:
    """(minor, major) page faults of this process so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_majflt


@dataclass
class FaultCounter:
    """Page faults over the timed calls only: `around` wraps each timed sample.

    `per_call` is the median over samples of faults per call: what the typical call pays, as the
    median time is what the typical call takes. A heap that grows once in a thousand calls (the
    interpreter's own allocations moving the output's place) is not a call that pays faults."""

    minor: list[float] = field(default_factory=list)  # per sample: faults per call
    major: list[float] = field(default_factory=list)

    def around(self, measure: Callable[[], Any], calls: int) -> Any:
        minor0, major0 = faults()
        result = measure()
        minor1, major1 = faults()
        self.minor.append((minor1 - minor0) / calls)
        self.major.append((major1 - major0) / calls)
        return result

    def per_call(self) -> tuple[float | None, float | None]:
        if not self.minor:
            return None, None
        return statistics.median(self.minor), statistics.median(self.major)


# A copy that defines a limit must not pay first-touch page faults (a VM's host may populate fresh
# pages at a fraction of its copy bandwidth): its timed passes may fault at most this often per MiB
# moved (the interpreter's own small allocations), or the copy is taken again, up to COPY_TRIES.
FAULTS_PER_MIB_OK = 0.5
COPY_TRIES = 3


@dataclass(frozen=True)
class CopyFigure:
    gbps: float  # read + write, of the median timed pass
    faults_per_mib: float  # minor page faults of the timed passes, per MiB moved
    tries: int

    @property
    def faulted(self) -> bool:
        return self.faults_per_mib > FAULTS_PER_MIB_OK


def copy_figure(
    one_pass: Callable[[], Any], bytes_per_pass: int, min_time_s: float = 0.1, tries: int = COPY_TRIES
) -> CopyFigure:
    """GB/s (read + write) of the median pass, after one untimed pass; at least 5 passes. A copy
    whose timed passes paid page faults is taken again (its pages are touched by then), up to
    `tries` times; the figure says what the last one paid."""
    figure = CopyFigure(0.0, 0.0, 0)
    for attempt in range(1, tries + 1):
        one_pass()
        times: list[float] = []
        spent = 0.0
        before = faults()[0]
        while (len(times) < 5 or spent < min_time_s) and len(times) < 400:
            t0 = time.perf_counter()
            one_pass()
            times.append(time.perf_counter() - t0)
            spent += times[-1]
        mib = len(times) * bytes_per_pass / (1 << 20)
        figure = CopyFigure(
            bytes_per_pass / statistics.median(times) / 1e9, (faults()[0] - before) / mib, attempt
        )
        if not figure.faulted:
            break
    return figure


def copy_bandwidth(one_pass: Callable[[], Any], bytes_per_pass: int, min_time_s: float = 0.1) -> float:
    return copy_figure(one_pass, bytes_per_pass, min_time_s).gbps


PLATEAU_SLACK = 1.15  # bandwidth within this of the DRAM plateau counts as "out of cache"
# Every copy is made of pieces of at most this many bytes (source and destination), rotating over
# the footprint: one way of copying for the sweep, the speed-of-light reference and the cold check,
# and pieces the size of a large case's tensors (one 1 GiB copy runs slower than 1 GiB of 16 MiB
# copies, both from DRAM).
COPY_PIECE_BYTES = 32 << 20
# On a GPU a piece is one kernel: 32 MiB pieces ran at 3.0 TB/s on an H200 where one 2 GiB copy ran
# at 4.3 (each small copy pays its ramp-up and tail), so the reference copy would flatter every row.
GPU_COPY_PIECE_BYTES = 1 << 30
PROBE_REPEATS = 3  # sweeps (and cold checks) in turns; each footprint keeps its median


def copy_pieces(footprint: int, piece_bytes: int = COPY_PIECE_BYTES) -> int:
    return max(1, footprint // piece_bytes)


def _piece_source_bytes(footprint: int, count: int) -> int:
    """Source bytes of each of `count` pieces that copy `footprint` (source and destination), in
    whole float32 elements."""
    return footprint // count // 2 // 4 * 4


# (source bytes of one piece, pieces) -> copy(indices): a framework's pieces, allocated and written
# once; the call copies the pieces at those indices into their destinations and waits for the device.
PieceAllocator = Callable[[int, int], Callable[[Sequence[int]], None]]
# (footprint, bytes per timed pass or None for the whole footprint) -> GB/s
CopyGbps = Callable[[int, "int | None"], float]


class Copier:
    """Copies of any footprint from one set of pieces, allocated and touched once: the sweep, the
    cold check and the plateau copies it alternates with share the largest footprint's memory
    (1 GiB of fresh pages cost as much as the copy itself, once per copy before). A footprint is
    the first pieces of the set; one the pieces do not divide gets its own pieces, so every
    footprint measured is the one asked for.

    A pass shorter than the footprint rotates through it: each piece was last touched a footprint
    ago. The cold check times its plateau copies in passes as long as the cold copy's, so that a
    neighbour on a shared machine interrupts both alike (one 1 GiB pass is preempted where a 64 MiB
    one is not, and the cold copy looked cache-fast beside it)."""

    def __init__(
        self, allocate: PieceAllocator, max_footprint: int, piece_bytes: int = COPY_PIECE_BYTES
    ) -> None:
        self.allocate = allocate
        self.piece_bytes = piece_bytes
        self.count = copy_pieces(max_footprint, piece_bytes)
        self.half = _piece_source_bytes(max_footprint, self.count)
        self.copy = allocate(self.half, self.count)

    def gbps(self, footprint: int, pass_bytes: int | None = None) -> float:
        return self.figure(footprint, pass_bytes).gbps

    def figure(self, footprint: int, pass_bytes: int | None = None) -> CopyFigure:
        piece = 2 * self.half
        if footprint % piece or footprint > piece * self.count:
            n = copy_pieces(footprint, self.piece_bytes)
            half = _piece_source_bytes(footprint, n)
            own = self.allocate(half, n)
            return copy_figure(lambda: own(range(n)), 2 * half * n)
        k = footprint // piece
        per = k if pass_bytes is None else max(1, min(k, pass_bytes // piece))
        start = 0

        def one_pass() -> None:
            nonlocal start
            self.copy([(start + j) % k for j in range(per)])
            start = (start + per) % k

        return copy_figure(one_pass, piece * per)


@dataclass
class CacheProbe:
    """Copy bandwidth against footprint (src + dst bytes), and what it says about the caches."""

    sweep: list[tuple[int, float]] = field(default_factory=list)
    dram_gbps: float = 0.0  # the plateau: footprints far beyond every cache
    effective_cache_bytes: int = 0  # smallest footprint from which on bandwidth is the plateau's
    rotation_bytes: int = 0  # what the cold policy rotates through: twice the effective cache
    cold_copy_gbps: float = 0.0  # the copy itself, rotating through rotation_bytes
    plateau_check_gbps: float = 0.0  # the largest footprint again, in turns with the cold copy
    cold_verified: bool = False  # cold copy <= 1.1 x plateau check: inputs really come from DRAM
    swept_at: str = ""  # when the sweep was measured (ISO, UTC)
    sweep_reused: bool = False  # the sweep is this machine's earlier one; the cold check is this run's
    given: bool = False  # the effective cache came from --effective-cache: no sweep

    def as_env(self) -> dict[str, Any]:
        return {
            "sweep": [[b, round(g, 2)] for b, g in self.sweep],
            "dram_gbps": round(self.dram_gbps, 3),
            "effective_cache_bytes": self.effective_cache_bytes,
            "rotation_bytes": self.rotation_bytes,
            "cold_copy_gbps": round(self.cold_copy_gbps, 3),
            "plateau_check_gbps": round(self.plateau_check_gbps, 3),
            "cold_verified": self.cold_verified,
            "swept_at": self.swept_at,
            "sweep_reused": self.sweep_reused,
            "given": self.given,
        }


def probe_cache(
    copy: CopyGbps,
    reported_bytes: int,
    max_bytes: int,
    max_rotation_bytes: int,
    repeats: int = PROBE_REPEATS,
    known: tuple[Sequence[tuple[int, float]], str] | None = None,
    whole_plateau: bool = False,
) -> CacheProbe:
    """Sweep footprints from a quarter of the reported cache up to `max_bytes` (x4 a step); the
    rotation is twice the effective cache, at most `max_rotation_bytes` (then `cold_verified` says
    whether that still reaches DRAM).

    A shared machine's bandwidth moves by a fifth from one second to the next, so one copy per
    footprint can put a fast point past the plateau (or a slow one before it): the sweep runs
    `repeats` times in turns and keeps each footprint's median; the plateau starts where two
    footprints in a row are on it; the cold copy alternates with a copy of the largest footprint,
    and the two medians are compared.

    `known` = (sweep, swept_at): the same machine's earlier sweep (its caches do not change from
    one run to the next). The cold check is this run's own, and so is the DRAM bandwidth reported
    (the cold check's copies of the largest footprint); a known sweep whose rotation this run
    finds not cold (it was measured on a machine in another state) is measured again.

    The plateau copies of the cold check time passes as long as the cold copy's (a shared CPU
    preempts a long pass where it spares a short one); `whole_plateau` times whole footprints, for
    a device whose sync would weigh on short passes (a GPU's 100 MiB copy takes 30 us).

    `copy(footprint_bytes, pass_bytes or None)` returns GB/s (`Copier.gbps`). Never timed against
    any implementation: it runs once, at the start of a run, in the copy worker.
    """
    size = max(1 << 20, reported_bytes // 4)
    sizes = []
    while size < max_bytes:
        sizes.append(size)
        size *= 4
    sizes.append(max_bytes)
    if known is not None and [b for b, _ in known[0]] == sizes:
        probe = _judge([(int(b), float(g)) for b, g in known[0]], reported_bytes, max_rotation_bytes)
        probe.swept_at, probe.sweep_reused = known[1], True
        _check_cold(probe, copy, max_bytes, repeats, whole_plateau)
        if probe.cold_verified:
            probe.dram_gbps = probe.plateau_check_gbps
            return probe
    seen: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(repeats):
        for s in sizes:
            seen[s].append(copy(s, None))
    probe = _judge([(s, statistics.median(seen[s])) for s in sizes], reported_bytes, max_rotation_bytes)
    probe.swept_at = environment.now()
    _check_cold(probe, copy, max_bytes, repeats, whole_plateau)
    return probe


def given_cache(
    copy: CopyGbps,
    effective_bytes: int,
    max_bytes: int,
    max_rotation_bytes: int,
    repeats: int = PROBE_REPEATS,
    whole_plateau: bool = False,
) -> CacheProbe:
    """`--effective-cache`: the cache is given, not swept (a machine whose caches you know, or a
    test simulating another host); the cold check and the DRAM bandwidth are still this run's."""
    probe = CacheProbe(
        effective_cache_bytes=effective_bytes,
        rotation_bytes=min(2 * effective_bytes, max_rotation_bytes),
        given=True,
        swept_at=environment.now(),
    )
    _check_cold(probe, copy, max_bytes, repeats, whole_plateau)
    probe.dram_gbps = probe.plateau_check_gbps
    return probe


def _judge(sweep: list[tuple[int, float]], reported_bytes: int, max_rotation_bytes: int) -> CacheProbe:
    """The plateau, the effective cache and the rotation a sweep implies."""
    probe = CacheProbe(sweep=sweep)
    probe.dram_gbps = statistics.median(g for _, g in sweep[-2:])  # both past every cache

    def on_plateau(i: int) -> bool:
        return i >= len(sweep) or sweep[i][1] <= PLATEAU_SLACK * probe.dram_gbps

    last = len(sweep) - 1
    first = next((i for i in range(last) if on_plateau(i) and on_plateau(i + 1)), last)
    probe.effective_cache_bytes = max(sweep[first][0], reported_bytes)
    probe.rotation_bytes = min(2 * probe.effective_cache_bytes, max_rotation_bytes)
    return probe


def _check_cold(probe: CacheProbe, copy: CopyGbps, max_bytes: int, repeats: int, whole_plateau: bool) -> None:
    """The cold copy in turns with the largest footprint's: is the rotation really out of cache?
    The largest footprint's passes are as long as the cold copy's (see `Copier`), or whole."""
    cold, plateau = [], []
    for _ in range(repeats):
        cold.append(copy(probe.rotation_bytes, None))
        plateau.append(copy(max_bytes, None if whole_plateau else probe.rotation_bytes))
    probe.cold_copy_gbps = statistics.median(cold)
    probe.plateau_check_gbps = statistics.median(plateau)
    probe.cold_verified = probe.cold_copy_gbps <= 1.1 * probe.plateau_check_gbps


# ---- the cold policy: what a case rotates through, and what it holds -----------------------------

MAX_BUFFERS = 256  # per case: each buffer costs setup (a backward graph, a JAX linearization)
# A worker with its framework loaded, before any case (torch ~0.5 GiB, TensorFlow ~0.9 GiB).
WORKER_BASE_BYTES = 1 << 30
# Per buffer, the tensors a call reads that the previous call did not touch: the input (outputs are
# fresh each call, freed and handed back hot), and in backward the forward's output its graph saved.
ROTATING_TENSORS = {"forward": 1, "backward": 2, "train": 1}
# Per buffer, what the worker holds: the input and its pristine copy; backward adds the graph's
# saved output and its own state.
HELD_TENSORS = {"forward": 2, "backward": 4, "train": 2}
# Float64 arrays a worker holds for one case's check: the input as made and as the dtype rounds it,
# its centred copy, the declared and the canonical outputs and an implementation's output converted;
# with a gradient, the upstream gradient twice, the reference gradient and the converted one.
FLOAT64_ARRAYS = {"forward": 7, "backward": 11, "train": 11}


@dataclass(frozen=True)
class Buffers:
    """One case's input buffers under the cold policy: how many, the distinct bytes a pass over them
    reads (what decides whether inputs come from DRAM), and what they hold in memory."""

    count: int
    rotated_bytes: int
    held_bytes: int


def reference_bytes(numel: int, mode: str) -> int:
    """Host bytes of the float64 arrays one case's check holds."""
    return FLOAT64_ARRAYS[mode] * 8 * numel


def plan_buffers(
    numel: int,
    itemsize: int,
    mode: str,
    on_host: bool,
    rotation_bytes: int,
    warm_cache: bool,
    max_memory: int,
) -> Buffers | None:
    """The buffers a worker makes for one case: enough to rotate through `rotation_bytes` (twice the
    effective cache) at most MAX_BUFFERS, one with `warm_cache`; on the host (a CPU device), no more
    than --max-memory leaves beside the worker itself and the case's float64 reference (then fewer
    buffers, and the row's cache state says how cold it was). None: not even one buffer fits.
    The planner and the worker both call this, so what is budgeted is what is allocated."""
    tensor = numel * itemsize
    rotating, held = ROTATING_TENSORS[mode] * tensor, HELD_TENSORS[mode] * tensor
    count = 1 if warm_cache else min(MAX_BUFFERS, max(1, -(-rotation_bytes // rotating)))
    if max_memory:
        room = max_memory - WORKER_BASE_BYTES - reference_bytes(numel, mode)
        if on_host:
            if room < held:
                return None
            count = min(count, room // held)
        elif room < 0:
            return None
    return Buffers(count, count * rotating, count * held)


def cache_state(rotated_bytes: int, effective_cache_bytes: int) -> str:
    """Where a row's inputs came from, by the bytes it really rotated through: "cold" from twice the
    effective cache (each input evicted before it is read again), "warm" when they all fit in it,
    "partly cached" between; "" when the cache is not known."""
    if effective_cache_bytes <= 0 or rotated_bytes <= 0:
        return ""
    if rotated_bytes >= 2 * effective_cache_bytes:
        return "cold"
    return "warm" if rotated_bytes <= effective_cache_bytes else "partly cached"
