"""Bootstrap confidence intervals on ratios of medians, shared by the report and `compare`."""

from __future__ import annotations

from collections.abc import Sequence

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
    pairs: list[tuple[Sequence[float], Sequence[float]]], seed: int = 0, level: float = 0.95
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
