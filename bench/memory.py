"""Peak and extra memory of one call.

CPU method: free what the allocator caches (gc, then glibc malloc_trim), reset the kernel's peak
RSS counter (write 5 to /proc/self/clear_refs), make the call, read VmHWM. The rise over the RSS
before the call is what the call touched: its output plus its temporaries. Workers start with a
fixed glibc mmap threshold so large buffers are returned to the system when freed and a second
call cannot hide its temporaries in memory the first one cached. Page granularity (4 KiB);
`tests/test_memory.py` calibrates it with an implementation that allocates a known amount.
GPU: the framework's own allocator statistics (see bench/frameworks/).
"""

from __future__ import annotations

import ctypes
import gc
import os
from collections.abc import Callable
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(256 * 1024), "MALLOC_TRIM_THRESHOLD_": str(256 * 1024)}


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


def measure_cpu(call: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes the call touched beyond what was resident before it, and the call's result."""
    release_cached()
    base = rss_bytes()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    result = call()
    return max(0, peak_rss_bytes() - base), result
