"""`python -m bench compare BASE NEW`: ratio of medians per (impl, case) with a bootstrap CI.

The bootstrap sees only the noise inside each run. Two runs also differ as a whole (another
process's cache footprint, frequency, where the scheduler put the threads): on a shared 2-core VM
whole groups of rows moved by 10-20 % between two identical runs. That run-to-run noise is
estimated from the spread of the log ratios across all matched rows (a robust MAD around their
median, so a change that moves every row alike is not mistaken for noise) and added to each
row's interval. `--run-noise 0` turns this off; a percentage sets it.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.results import Row, read_rows
from bench.stats import ratio_ci


def parse_threshold(text: str) -> float:
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise BenchError(f"bad --threshold {text!r}; expected a percentage such as 5%") from None
    if not 0 < value < 10:
        raise BenchError(f"bad --threshold {text!r}; expected a percentage between 0% and 1000%")
    return value


MIN_PAIRS_FOR_NOISE = 8  # fewer matched rows cannot say how much runs differ as a whole


def parse_run_noise(text: str) -> float | None:
    """`auto` (None: estimate from the rows) or a percentage: the run-to-run standard deviation."""
    if text.strip() == "auto":
        return None
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise BenchError(f"bad --run-noise {text!r}; expected auto or a percentage such as 3%") from None
    if not 0 <= value < 1:
        raise BenchError(f"bad --run-noise {text!r}; expected auto or a percentage from 0% to 100%")
    return value


def estimate_run_noise(log_ratios: list[float]) -> float:
    """Standard deviation of log(new/base) between runs: 1.4826 MAD, robust to a few real changes."""
    if len(log_ratios) < MIN_PAIRS_FOR_NOISE:
        return 0.0
    a = np.asarray(log_ratios)
    return float(1.4826 * np.median(np.abs(a - np.median(a))))


def widen(ratio: float, lo: float, hi: float, sigma: float) -> tuple[float, float]:
    """Add run-to-run noise (sd `sigma` in log space) to a 95 % interval, in quadrature."""
    extra = (1.96 * sigma) ** 2
    down = math.sqrt(math.log(ratio / lo) ** 2 + extra)
    up = math.sqrt(math.log(hi / ratio) ** 2 + extra)
    return ratio * math.exp(-down), ratio * math.exp(up)


def classify(ratio: float, lo: float, hi: float, threshold: float) -> str:
    """slower/faster when the whole CI is beyond the threshold; same when the CI lies within it, or
    when it holds 1 (no evidence of a change) and the estimate is within it; ambiguous otherwise."""
    band_lo, band_hi = 1 / (1 + threshold), 1 + threshold
    if lo > band_hi:
        return "slower"
    if hi < band_lo:
        return "faster"
    if band_lo <= lo and hi <= band_hi:
        return "same"
    if lo <= 1 <= hi and band_lo <= ratio <= band_hi:
        return "same"
    return "ambiguous"


def compare_rows(
    base: list[Row], new: list[Row], threshold: float, run_noise: float | None = None
) -> tuple[list[dict[str, Any]], float]:
    """One comparison per matched row, and the run-to-run noise (log-space sd) that was applied."""
    old = {r.key(): r for r in base if r.status == "ok" and r.samples_s}
    out: list[dict[str, Any]] = []
    for r in new:
        k = r.key()
        b = old.get(k)
        if b is None or r.status != "ok" or not r.samples_s:
            continue
        ratio, lo, hi = ratio_ci([(r.samples_s, b.samples_s)], seed=len(out))
        out.append({
            "impl": r.impl, "backend": r.backend, "device": r.device, "dtype": r.dtype, "layout": r.layout,
            "mode": r.mode, "shape": list(r.shape), "base_median_s": b.time_median_s,
            "new_median_s": r.time_median_s, "ratio": ratio, "within_run_ci": [lo, hi],
        })  # fmt: skip
    sigma = estimate_run_noise([math.log(c["ratio"]) for c in out]) if run_noise is None else run_noise
    for c in out:
        in_lo, in_hi = c["within_run_ci"]
        lo, hi = widen(c["ratio"], in_lo, in_hi, sigma)
        c.update(ci_low=lo, ci_high=hi, verdict=classify(c["ratio"], lo, hi, threshold))
    return out, sigma


def compare_files(
    base: Path, new: Path, threshold: float, json_out: str | None = None, run_noise: float | None = None
) -> int:
    results, sigma = compare_rows(read_rows(base), read_rows(new), threshold, run_noise)
    if not results:
        raise BenchError(f"no measured (implementation, case) pair is in both {base} and {new}")
    how = "set by --run-noise" if run_noise is not None else f"estimated from {len(results)} matched rows"
    if run_noise is None and len(results) < MIN_PAIRS_FOR_NOISE:
        how = f"not estimated: {len(results)} matched rows, {MIN_PAIRS_FOR_NOISE} needed"
    print(f"run-to-run noise: {sigma:.1%} sd ({how}); the 95 % CIs below include it")
    print(
        f"{'implementation':22} {'backend':10} {'case':34} {'base':>10} {'new':>10} {'new/base':>9}  "
        f"{'95% CI':>15}  verdict"
    )
    for c in results:
        case = f"{c['device']} {'x'.join(map(str, c['shape']))} {c['dtype']} {c['layout']} {c['mode']}"
        print(
            f"{c['impl']:22} {c['backend']:10} {case:34} {c['base_median_s'] * 1e3:8.4g}ms "
            f"{c['new_median_s'] * 1e3:8.4g}ms {c['ratio']:9.3f}  [{c['ci_low']:.3f}, {c['ci_high']:.3f}]  "
            f"{c['verdict']}"
        )
    counts = {v: sum(c["verdict"] == v for c in results) for v in ("faster", "slower", "same", "ambiguous")}
    print("summary: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + f" (threshold {threshold:.1%})")
    if json_out:
        doc = {"threshold": threshold, "run_noise_sd": sigma, "comparisons": results}
        Path(json_out).write_text(json.dumps(doc, indent=1))
    if counts["slower"]:
        print(f"{counts['slower']} significantly slower beyond {threshold:.1%}", file=sys.stderr)
        return 1
    return 0
