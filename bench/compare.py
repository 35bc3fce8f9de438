"""`python -m bench compare BASE NEW`: ratio of medians per (impl, case) with a bootstrap CI."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

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


def case_key(r: Row) -> tuple[Any, ...]:
    return (r.impl, r.backend, r.device, r.dtype, r.layout, r.mode, tuple(r.shape))


def classify(lo: float, hi: float, threshold: float) -> str:
    """slower/faster when the whole CI is beyond the threshold; same when it lies within it."""
    if lo > 1 + threshold:
        return "slower"
    if hi < 1 / (1 + threshold):
        return "faster"
    if lo >= 1 / (1 + threshold) and hi <= 1 + threshold:
        return "same"
    return "ambiguous"


def compare_rows(base: list[Row], new: list[Row], threshold: float) -> list[dict[str, Any]]:
    old = {case_key(r): r for r in base if r.status == "ok" and r.samples_s}
    out: list[dict[str, Any]] = []
    for r in new:
        k = case_key(r)
        b = old.get(k)
        if b is None or r.status != "ok" or not r.samples_s:
            continue
        ratio, lo, hi = ratio_ci([(r.samples_s, b.samples_s)], seed=len(out))
        out.append({
            "impl": r.impl, "backend": r.backend, "device": r.device, "dtype": r.dtype, "layout": r.layout,
            "mode": r.mode, "shape": list(r.shape), "base_median_s": b.time_median_s,
            "new_median_s": r.time_median_s, "ratio": ratio, "ci_low": lo, "ci_high": hi,
            "verdict": classify(lo, hi, threshold),
        })  # fmt: skip
    return out


def compare_files(base: Path, new: Path, threshold: float, json_out: str | None = None) -> int:
    results = compare_rows(read_rows(base), read_rows(new), threshold)
    if not results:
        raise BenchError(f"no measured (implementation, case) pair is in both {base} and {new}")
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
        Path(json_out).write_text(json.dumps({"threshold": threshold, "comparisons": results}, indent=1))
    if counts["slower"]:
        print(f"{counts['slower']} significantly slower beyond {threshold:.1%}", file=sys.stderr)
        return 1
    return 0
