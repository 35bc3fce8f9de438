"""`python -m bench compare BASE NEW`: ratio of medians per (impl, case) with a bootstrap CI.

The bootstrap sees only the noise inside each run. Two runs also differ as a whole (another
process's cache footprint, frequency, where the scheduler put the threads): on a shared 2-core VM
whole groups of rows moved by 10-20 % between two identical runs. That run-to-run noise is
estimated from the spread of the log ratios across all matched rows (a robust MAD around their
median, so a change that moves every row alike is not mistaken for noise) and added to each
row's interval. `--run-noise 0` turns this off; a percentage sets it.

A time that includes page faults, or one streamed from a cache, is not comparable with one that
does not: where the two runs' rows differ in that state, the comparison says so instead of calling
one of them faster or slower.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import operators
from bench.cases import CaseKey, MeasurementKey
from bench.errors import BenchError
from bench.frameworks import variant
from bench.results import Row, machine_class, read_envs, read_results, row_machine
from bench.stats import CACHE_RESIDENT_SOL, FAULT_FACTOR, FAULTING_PER_CALL, ratio_ci, sol_fraction


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
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo = hi = ratio  # the bootstrap overflowed (times ~1e300 apart): the estimate decides
    if lo > band_hi:
        return "slower"
    if hi < band_lo:
        return "faster"
    if band_lo <= lo and hi <= band_hi:
        return "same"
    if lo <= 1 <= hi and band_lo <= ratio <= band_hi:
        return "same"
    return "ambiguous"


def fault_state(faults_per_call: float | None) -> str:
    """ "faulting" when a timed call pays page faults (the kernel's work is in its time), else "clean"."""
    if faults_per_call is None:
        return "unknown"
    return "faulting" if faults_per_call >= FAULTING_PER_CALL else "clean"


def fault_state_differs(base: float | None, new: float | None) -> bool:
    """One run's calls fault and the other's do not, or both fault but at very different rates."""
    if base is None or new is None:
        return False
    if fault_state(base) != fault_state(new):
        return True
    return fault_state(base) == "faulting" and max(base, new) / min(base, new) >= FAULT_FACTOR


def cache_state_differs(base_sol: float | None, new_sol: float | None) -> bool:
    """One run streamed from a cache (above the copy bandwidth) and the other did not."""
    if base_sol is None or new_sol is None:
        return False
    return (base_sol > CACHE_RESIDENT_SOL) != (new_sol > CACHE_RESIDENT_SOL)


@dataclass(frozen=True)
class Change:
    """One (implementation, case) measured in both runs: new/base time with its 95 % CI."""

    impl: str
    backend: str
    framework: str
    device: str
    dtype: str
    layout: str
    mode: str
    shape: tuple[int, int, int, int]
    op: str  # the operator and its parameters (`num_groups=32`): part of what pairs the rows
    op_params: str
    base_median_s: float
    new_median_s: float
    ratio: float  # new over base: > 1 means the new run is slower
    within_run_ci: tuple[float, float]
    ci_low: float
    ci_high: float
    verdict: str  # faster | slower | same | ambiguous | fault state differs | cache state differs
    warning: str  # "" or why the two times are not comparable as they stand
    base_faults_per_call: float | None
    new_faults_per_call: float | None
    base_sol_fraction: float | None
    new_sol_fraction: float | None

    @property
    def variant(self) -> str:
        return variant(self.impl, self.framework, self.backend)

    @property
    def op_label(self) -> str:
        """What a report calls the operator with its parameters (bench.operators.label)."""
        return operators.label(self.op, self.op_params)

    def key(self) -> MeasurementKey:
        what = (self.device, self.dtype, self.layout, self.mode, self.shape)
        return MeasurementKey(self.impl, self.backend, CaseKey(*what, "random", self.op, self.op_params))

    def case_text(self) -> str:
        """`cpu 8x3x32x32 float32 NCHW forward`, the operator first when it is not the default one."""
        return f"{self.device} {self.key().case.text()}"


def row_sol_fraction(row: Row, envs: Mapping[str, Mapping[str, Any]]) -> float | None:
    """The row's bandwidth over its speed of light (`bench.stats.row_limit`); the row's provisional
    value when it predates per-case limits and its run's environment is not known."""
    env = envs.get(row.run_id)
    return sol_fraction(row.achieved_gbps, row, env) if env or row.limit_how else row.sol_fraction


def _samples(row: Row) -> tuple[float, ...]:
    return row.samples_s or ((row.time_median_s,) if row.time_median_s else ())


def compare_rows(
    base: list[Row],
    new: list[Row],
    threshold: float,
    run_noise: float | None = None,
    sol: Callable[[Row], float | None] | None = None,
) -> tuple[list[Change], float]:
    """One Change per (implementation, case) measured in both, and the run-to-run noise (log-space
    sd) that was added to each CI. A pair whose page-fault or cache state differs between the runs
    is not called faster or slower: its verdict says which state differs."""
    sol_of = sol or (lambda r: r.sol_fraction)
    old = _comparable(base)
    pairs: list[tuple[Row, Row, float, float, float]] = []
    for r in new:
        b = old.get(r.key())
        if b is None or r.status != "ok" or not _samples(r):
            continue
        ratio, lo, hi = ratio_ci([(_samples(r), _samples(b))], seed=len(pairs))
        pairs.append((b, r, ratio, lo, hi))
    sigma = estimate_run_noise([math.log(p[2]) for p in pairs]) if run_noise is None else run_noise
    out = []
    for b, r, ratio, in_lo, in_hi in pairs:
        lo, hi = widen(ratio, in_lo, in_hi, sigma)
        verdict = classify(ratio, lo, hi, threshold)
        base_sol, new_sol = sol_of(b), sol_of(r)
        warning = ""
        if fault_state_differs(b.faults_per_call, r.faults_per_call):
            warning = "fault state differs"
        elif cache_state_differs(base_sol, new_sol):
            warning = "cache state differs"
        if warning and verdict in ("faster", "slower"):
            verdict = warning
        out.append(
            Change(
                impl=r.impl, backend=r.backend, framework=r.framework, device=r.device, dtype=r.dtype,
                layout=r.layout, mode=r.mode, shape=r.shape, op=r.op, op_params=r.op_params,
                base_median_s=float(np.median(_samples(b))),
                new_median_s=float(np.median(_samples(r))), ratio=ratio, within_run_ci=(in_lo, in_hi),
                ci_low=lo, ci_high=hi, verdict=verdict, warning=warning,
                base_faults_per_call=b.faults_per_call, new_faults_per_call=r.faults_per_call,
                base_sol_fraction=base_sol, new_sol_fraction=new_sol,
            )
        )  # fmt: skip
    return out, sigma


def _comparable(rows: list[Row]) -> dict[MeasurementKey, Row]:
    """The rows compare_rows can pair, by key: measured, on random input, with samples."""
    return {r.key(): r for r in rows if r.status == "ok" and r.input_kind == "random" and _samples(r)}


def unpaired(base: list[Row], new: list[Row]) -> tuple[list[MeasurementKey], list[MeasurementKey]]:
    """The measurements of one file that the other lacks (only in base, only in new), in file order:
    another operator parameter, shape or implementation is not compared with anything."""
    b, n = _comparable(base), _comparable(new)
    return [k for k in b if k not in n], [k for k in n if k not in b]


def _unpaired_line(which: str, keys: list[MeasurementKey], shown: int = 3) -> str:
    names = "; ".join(k.text() for k in keys[:shown])
    more = f"; and {len(keys) - shown} more" if len(keys) > shown else ""
    return f"not compared, {len(keys)} measured row{'s' * (len(keys) != 1)} only in {which}: {names}{more}"


def check_json_out(path: Path) -> None:
    """Refuse a --json path that cannot be written, before anything is read or printed."""
    if path.is_dir():
        raise BenchError(f"--json {str(path)!r} is a directory; expected a file path")
    if not path.parent.is_dir():
        raise BenchError(f"--json {str(path)!r}: folder {str(path.parent)!r} does not exist")
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError:
        raise BenchError(f"--json {str(path)!r} is not writable") from None


def _faults(v: float | None) -> str:
    return "?" if v is None else f"{v:.2g}"


def _print_changes(results: list[Change], sigma: float, run_noise: float | None) -> None:
    how = "set by --run-noise" if run_noise is not None else f"estimated from {len(results)} matched rows"
    if run_noise is None and len(results) < MIN_PAIRS_FOR_NOISE:
        how = f"not estimated: {len(results)} matched rows, {MIN_PAIRS_FOR_NOISE} needed"
    print(f"run-to-run noise: {sigma:.1%} sd ({how}); the 95 % CIs below include it")
    print(
        f"{'implementation':22} {'backend':10} {'case':34} {'base':>10} {'new':>10} {'new/base':>9}  "
        f"{'95% CI':>15}  verdict"
    )
    for c in results:
        print(
            f"{c.impl:22} {c.backend:10} {c.case_text():34} {c.base_median_s * 1e3:8.4g}ms "
            f"{c.new_median_s * 1e3:8.4g}ms {c.ratio:9.3f}  [{c.ci_low:.3f}, {c.ci_high:.3f}]  {c.verdict}"
        )
    for c in results:
        if c.warning == "fault state differs":
            print(
                f"warning: {c.variant} {c.case_text()}: page faults per call "
                f"{_faults(c.base_faults_per_call)} in base, {_faults(c.new_faults_per_call)} in new: "
                f"the time difference ({c.ratio:.2f}x) "
                "may be the kernel's page faults, not the code",
                file=sys.stderr,
            )
        elif c.warning == "cache state differs":
            print(
                f"warning: {c.variant} {c.case_text()}: speed of light {_faults(c.base_sol_fraction)} in "
                f"base, {_faults(c.new_sol_fraction)} in new: one run streamed from a cache "
                f"(> {CACHE_RESIDENT_SOL:g}), the other did not",
                file=sys.stderr,
            )


def machine_pairs(
    base: Path, new: Path, base_rows: list[Row], new_rows: list[Row], envs: Mapping[str, Mapping[str, Any]]
) -> tuple[list[tuple[str, str, list[Row], list[Row]]], list[str]]:
    """Which rows are compared with which: a file of one machine against a file of one machine
    (whatever they are); otherwise each kind of machine both files hold (the same GPUs, CPU and
    cores: merged files hold several) against itself. Also a line naming what was left out."""
    by_base: dict[str, list[Row]] = {}
    by_new: dict[str, list[Row]] = {}
    for rows, by in ((base_rows, by_base), (new_rows, by_new)):
        for r in rows:
            by.setdefault(machine_class(envs.get(r.run_id, {})) or row_machine(r, envs), []).append(r)
    if len(by_base) == 1 and len(by_new) == 1:
        (mb, rb), (mn, rn) = next(iter(by_base.items())), next(iter(by_new.items()))
        return [(mb, mn, rb, rn)], []
    common = [m for m in by_base if m in by_new]
    if not common:
        raise BenchError(
            f"no machine is in both files: {base} holds {', '.join(map(_machine, by_base))}; {new} holds "
            f"{', '.join(map(_machine, by_new))}"
        )
    left_out = [
        f"only in {which}: {', '.join(map(_machine, only))}"
        for which, only in (
            ("base", [m for m in by_base if m not in by_new]),
            ("new", [m for m in by_new if m not in by_base]),
        )
        if only
    ]
    return [(m, m, by_base[m], by_new[m]) for m in common], left_out


def _machine(name: str) -> str:
    return name or "(unknown machine)"


def compare_files(
    base: Path, new: Path, threshold: float, json_out: str | None = None, run_noise: float | None = None
) -> int:
    """Print the comparison; exit status 1 when anything is significantly slower, else 0. Usage and
    I/O errors raise BenchError (exit 2) before anything is printed or written. Files of several
    machines (merged shards or cluster jobs) are compared machine by machine."""
    if json_out:
        check_json_out(Path(json_out))
    base_rows, new_rows = read_results([base]), read_results([new])
    envs = {**read_envs(base), **read_envs(new)}
    pairs, left_out = machine_pairs(base, new, base_rows, new_rows, envs)
    compared = []
    for mb, mn, rb, rn in pairs:
        changes, sigma = compare_rows(rb, rn, threshold, run_noise, sol=lambda r: row_sol_fraction(r, envs))
        compared.append((mb, mn, changes, sigma))
    results = [c for _, _, changes, _ in compared for c in changes]
    if not results:
        raise BenchError(f"no measured (implementation, case) pair is in both {base} and {new}")
    several = len(compared) > 1
    if several or left_out:
        print(f"machines compared: {', '.join(_machine(mb) for mb, _, _, _ in compared)}")
    for line in left_out:
        print(f"not compared, {line}")
    lone = {mb: unpaired(rb, rn) for mb, _, rb, rn in pairs}
    for mb, _, changes, sigma in compared:
        if several:
            print(f"\n== {_machine(mb)} ==")
        for which, keys in zip(("base", "new"), lone[mb], strict=True):
            if keys:
                print(_unpaired_line(which, keys))
        _print_changes(changes, sigma, run_noise)
    verdicts = ("faster", "slower", "same", "ambiguous", "fault state differs", "cache state differs")
    counts = {v: sum(c.verdict == v for c in results) for v in verdicts}
    print(
        "summary: "
        + ", ".join(f"{n} {v}" for v, n in counts.items() if n or v in verdicts[:4])
        + f" (threshold {threshold:.1%})"
    )
    if json_out:
        doc = {
            "threshold": threshold,
            "run_noise_sd": compared[0][3],
            "comparisons": [
                {**asdict(c), "base_machine": mb, "new_machine": mn}
                for mb, mn, changes, _ in compared
                for c in changes
            ],
            "machines": [
                {
                    "base": mb,
                    "new": mn,
                    "run_noise_sd": sigma,
                    "pairs": len(changes),
                    "only_in_base": len(lone[mb][0]),
                    "only_in_new": len(lone[mb][1]),
                }
                for mb, mn, changes, sigma in compared
            ],
        }
        try:
            Path(json_out).write_text(json.dumps(doc, indent=1))
        except OSError as exc:
            raise BenchError(f"cannot write --json {json_out!r}: {exc.strerror or exc}") from None
    if counts["slower"]:
        print(f"{counts['slower']} significantly slower beyond {threshold:.1%}", file=sys.stderr)
        return 1
    return 0
