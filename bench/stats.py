"""Statistics shared by the analysis and `compare`: bootstrap CIs on ratios of medians, and the
speed of light (a row's bandwidth over the copy bandwidth its run measured)."""

from __future__ import annotations

import math
import resource
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

N_BOOT = 1000


def boot_medians(samples: Sequence[float], rng: np.random.Generator, n_boot: int = N_BOOT) -> np.ndarray:
    """Medians of n_boot resamples (with replacement) of one row's raw samples."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        return np.full(n_boot, np.nan)
    if a.size == 1:
        return np.full(n_boot, a[0])
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    return np.median(a[idx], axis=1)


def ratio_ci(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]], seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Geometric mean over pairs of median(a)/median(b), with a bootstrap CI at `level`."""
    rng = np.random.default_rng(seed)
    point = float(np.exp(np.mean([np.log(np.median(a) / np.median(b)) for a, b in pairs])))
    logs = np.zeros(N_BOOT)
    for a, b in pairs:
        logs += np.log(boot_medians(a, rng) / boot_medians(b, rng))
    boot = np.exp(logs / len(pairs))
    lo, hi = np.nanpercentile(boot, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return point, float(lo), float(hi)


# ---- speed of light: the copy bandwidth a run measured, and each row's fraction of it ----------

CACHE_RESIDENT_SOL = 1.1  # above the copy bandwidth by more than its noise: the data sat in a cache
FAULTING_PER_CALL = 1.0  # minor page faults per timed call from which a time includes the kernel's work
FAULT_FACTOR = 4.0  # two faulting rows whose faults per call differ this much are in different states


def positive_numbers(value: Any) -> list[float]:
    items = value if isinstance(value, list | tuple) else [value]
    return [
        float(v)
        for v in items
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    ]


def copy_gbps_samples(env: Mapping[str, Any], device: str) -> list[float]:
    """The copy bandwidths (GB/s, read + write) a run measured on `device`: at start, between worker
    groups and at the end (`copy_gbps_samples`), or the one median older sidecars hold."""
    samples = env.get("copy_gbps_samples")
    found = positive_numbers(samples.get(device)) if isinstance(samples, Mapping) else []
    if found:
        return found
    single = env.get("copy_gbps")
    return positive_numbers(single.get(device)) if isinstance(single, Mapping) else []


# A case's limit is its copy's median over the same rounds as the row (the machine's drift reaches
# both alike): unknown, never used, where that median is uncertain by more than LIMIT_NOISE (the
# half-width of its 95 % CI over it) or its calls paid page faults for more than LIMIT_FAULTED of
# the bytes they move (fresh pages: first touch, not the memory pattern of a steady process; a
# page or two per call, as JAX's allocator takes, is not that).
LIMIT_NOISE = 0.05
LIMIT_FAULTED = 0.05
PAGE_BYTES = resource.getpagesize()


def row_limit(row: Any, env: Mapping[str, Any] | None) -> tuple[float | None, str]:
    """A row's speed of light (GB/s) and what it is: its case's copy timed beside it (`limit_*`
    fields), or, for rows from before per-case limits, the run's median DRAM copy. None, and why,
    where there is none that can be used."""
    how = getattr(row, "limit_how", "")
    if how:
        gbps, noise, faults = row.limit_gbps, row.limit_rel_ci, row.limit_faults_per_call
        if gbps is None or how.startswith("not measured"):
            return None, how
        if noise is None or noise > LIMIT_NOISE:
            return None, f"unknown: its copy's median is uncertain by {noise or 1:.0%} (95 % CI)"
        moved = getattr(row, "ideal_bytes", 0) or 0
        if faults and (not moved or faults * PAGE_BYTES > LIMIT_FAULTED * moved):
            return None, f"unknown: its copy paid {faults:.3g} page faults per call (fresh pages)"
        return float(gbps), how
    copies = copy_gbps_samples(env or {}, row.device)
    return (float(np.median(copies)), "the run's DRAM copy") if copies else (None, "no copy was measured")


def sol_fraction(achieved_gbps: float | None, row: Any, env: Mapping[str, Any] | None) -> float | None:
    """Achieved bandwidth over the row's speed of light (`row_limit`)."""
    limit, _ = row_limit(row, env)
    if achieved_gbps is None or limit is None:
        return None
    return achieved_gbps / limit
