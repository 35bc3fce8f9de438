"""Peak and extra memory of one call.

CPU method: lower glibc's mmap threshold so large buffers come fresh from the kernel, free what
the allocator caches (gc, then malloc_trim), reset the kernel's peak RSS counter (write 5 to
/proc/self/clear_refs), make the call, read VmHWM. The rise over the RSS before the call is what
the call touched: its output plus its temporaries; a call cannot hide its temporaries in memory an
earlier one cached. Page granularity (4 KiB); `tests/test_memory.py` calibrates it with an
implementation that allocates a known amount.

The low threshold holds only while memory is measured. Timed calls run with buffers up to 32 MiB
recycled from the heap, as in any long-lived process (glibc's dynamic threshold settles there);
with a fixed low threshold every call would pay fresh page faults for its output, which made
`F.group_norm` at 8x64x28x28 ten times slower than `torch.utils.benchmark` measures it.
GPU: the framework's own allocator statistics (see bench/frameworks/).
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# mallopt parameters (malloc.h) and the values used while measuring and while timing.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MEASURE_MMAP_BYTES = 256 * 1024
STEADY_MMAP_BYTES = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


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


def release_cached() -> None:
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _mmap_threshold(nbytes: int) -> None:
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, nbytes)
        _LIBC.mallopt(M_TRIM_THRESHOLD, 2 * nbytes)


def steady_allocator() -> None:
    """Fix the threshold where a long-lived process's dynamic one settles, for every timed call."""
    _mmap_threshold(STEADY_MMAP_BYTES)


def measure_cpu(call: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes the call touched beyond what was resident before it, and the call's result."""
    _mmap_threshold(MEASURE_MMAP_BYTES)
    try:
        release_cached()
        base = rss_bytes()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        result = call()
        return max(0, peak_rss_bytes() - base), result
    finally:
        _mmap_threshold(STEADY_MMAP_BYTES)
