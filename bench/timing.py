"""Sample a callable until the noise settles; the statistics every row carries."""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from bench.memory import FaultCounter

# The clock, taken when normbench loads: an implementation that replaces time.perf_counter later
# does not reach it (and one that replaces this is named by bench.guard).
read_clock = time.perf_counter


@dataclass(frozen=True)
class TimingSettings:
    """Budgets in seconds, not counts: a tiny and a huge case both get sound numbers."""

    warmup_s: float = 0.05
    min_time_s: float = 0.2
    max_time_s: float = 2.0
    min_samples: int = 10
    max_samples: int = 1000
    target_rel_ci: float = 0.01  # stop once the 95 % CI of the median is within +-1 %
    round_s: float = 0.02  # per implementation per interleaved round
    warm_cache: bool = False

    def key(self) -> str:
        return (
            f"w{self.warmup_s:g}/min{self.min_time_s:g}/max{self.max_time_s:g}/n{self.min_samples}-"
            f"{self.max_samples}/ci{self.target_rel_ci:g}/{'warm' if self.warm_cache else 'cold'}"
        )


PRESET_TIMING = {
    "smoke": TimingSettings(warmup_s=0.005, min_time_s=0.02, max_time_s=0.1, min_samples=5, round_s=0.01),
    "quick": TimingSettings(warmup_s=0.05, min_time_s=0.2, max_time_s=1.0),
    "full": TimingSettings(warmup_s=0.1, min_time_s=0.3, max_time_s=1.5),
}


def preset_timing(preset: str) -> TimingSettings:
    """How long a shared preset samples each case (an operator's own preset names one of these:
    bench.cases.preset_timing_name)."""
    return PRESET_TIMING.get(preset, PRESET_TIMING["full"])


def timer_overhead_s() -> float:
    """Cost of one pair of host clock reads; a sample lasts >= 1000x this (overhead < 0.1 %)."""
    reads = []
    for _ in range(200):
        t0 = read_clock()
        reads.append(read_clock() - t0)
    return float(np.median(reads))


def _ci_ranks(n: int, z: float = 1.96) -> tuple[int, int]:
    """The order statistics that bound the median's 95 % CI among n sorted samples."""
    half = z * math.sqrt(n) / 2
    return max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half))


def median_ci(samples: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free 95 % CI of the median from order statistics (no normality assumed)."""
    s = np.sort(samples)
    lo, hi = _ci_ranks(len(s), z)
    return float(s[lo]), float(s[hi])


def median_rel_ci(s: list[float]) -> float | None:
    """`summarize(s).rel_ci` of samples `s` kept sorted, in a microsecond: the sampler asks after
    every sample, and NumPy's median, percentiles and sort took 110-175 us a time (as long as a
    short sample), all of it between the timed calls."""
    n = len(s)
    if n == 0:
        return None
    med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    lo, hi = _ci_ranks(n)
    return (s[hi] - s[lo]) / (2 * med) if med > 0 else None


@dataclass(frozen=True)
class Stats:
    """Statistics of one list of per-call times; `row_fields` is the one place they become a row's."""

    median: float | None
    iqr: float | None
    min: float | None
    rel_iqr: float | None
    rel_ci: float | None  # half-width of the median's 95 % CI over the median
    n: int

    def row_fields(self) -> dict[str, Any]:
        return {
            "time_median_s": self.median,
            "time_iqr_s": self.iqr,
            "time_min_s": self.min,
            "time_rel_iqr": self.rel_iqr,
            "time_rel_ci": self.rel_ci,
            "n_samples": self.n,
        }


def summarize(samples: list[float] | tuple[float, ...] | np.ndarray) -> Stats:
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        return Stats(None, None, None, None, None, 0)
    med = float(np.median(a))
    q1, q3 = np.percentile(a, [25, 75])
    lo, hi = median_ci(a)
    return Stats(
        median=med,
        iqr=float(q3 - q1),
        min=float(a.min()),
        rel_iqr=float((q3 - q1) / med) if med > 0 else None,
        rel_ci=float((hi - lo) / (2 * med)) if med > 0 else None,
        n=int(a.size),
    )


class HostClock:
    """CPU: the device's time is the call latency (host clock around call + sync)."""

    kind = "host"
    runs_per_measure = 1

    def measure(self, run: Callable[[int, bool], Any], k: int) -> tuple[float, float]:
        t0 = read_clock()
        run(k, True)
        latency = (read_clock() - t0) / k
        return latency, latency


@dataclass
class Sampler:
    """Samples one prepared callable; driven in rounds so implementations interleave."""

    run: Callable[[int, bool], Any]  # run(k, sync_each): k calls on rotating buffers
    settings: TimingSettings
    clock: Any = field(default_factory=HostClock)
    min_sample_s: float = 1e-4
    min_warmup_calls: int = 1  # the worker sets the number of rotating input buffers
    min_rounds: int = 1  # converged only after this many rounds (the worker: what its parent needs)
    rounds: int = 0  # rounds begun
    calls_per_sample: int = 1
    device_samples: list[float] = field(default_factory=list)
    latency_samples: list[float] = field(default_factory=list)
    spent_s: float = 0.0  # wall time in completed rounds
    sampled_s: float = 0.0  # time inside timed calls, all rounds
    stop_reason: str | None = None
    faults: FaultCounter = field(default_factory=FaultCounter)  # page faults over timed calls only
    _sorted: list[float] = field(default_factory=list, repr=False)  # device_samples, kept sorted

    def warm_up(self) -> None:
        """Run for the warm-up budget and at least one pass over the rotating inputs (every buffer
        touched, the heap at its high-water mark; that pass may take ten budgets, at most 1 s),
        then choose k so one sample outlasts the timer's overhead. A case sampled for at most
        `max_time_s` is not warmed up for longer than that (a quick `--max-time`)."""
        start = read_clock()
        calls = 0
        s = self.settings
        longest = min(1.0, 10 * s.warmup_s, max(s.warmup_s, s.max_time_s))
        while True:
            self.run(1, True)
            calls += 1
            elapsed = read_clock() - start
            if elapsed >= self.settings.warmup_s and (calls >= self.min_warmup_calls or elapsed >= longest):
                break
        per_call = elapsed / calls
        self.calls_per_sample = max(1, math.ceil(self.min_sample_s / max(per_call, 1e-9)))

    def round(self, after_first: Callable[[], None] | None = None) -> None:
        """Samples for about `round_s`. One untimed call first: the implementation before this one
        in the interleaved rounds may have evicted this one's output buffer and code from the
        caches, and a process that calls one operation again and again has them warm (the
        inputs stay cold: they rotate). `after_first` runs after that call, untimed (the worker
        checks there what the last round's output holds after a later call)."""
        if self.stop_reason:
            return
        start = read_clock()
        self.rounds += 1
        self.run(1, True)
        if after_first is not None:
            after_first()
        timed_from = read_clock()  # a slow untimed call leaves the round its round_s of samples
        while True:
            k = self.calls_per_sample
            calls = k * getattr(self.clock, "runs_per_measure", 1)
            latency, device = self.faults.around(partial(self.clock.measure, self.run, k), calls)
            self.latency_samples.append(latency)
            self.device_samples.append(device)
            bisect.insort(self._sorted, device)
            self.sampled_s += latency * self.calls_per_sample
            now = read_clock()
            if self._check_stop(self.spent_s + now - start) or now - timed_from >= self.settings.round_s:
                break
        self.spent_s += read_clock() - start

    def _check_stop(self, wall_s: float) -> bool:
        s = self.settings
        n = len(self.device_samples)
        spent = max(wall_s, self.sampled_s)
        if n >= s.max_samples:
            self.stop_reason = "max_samples"
        elif spent >= s.max_time_s and n >= 3:
            self.stop_reason = "max_time"
        elif n >= s.min_samples and spent >= s.min_time_s and self.rounds >= self.min_rounds:
            rel_ci = median_rel_ci(self._sorted)
            if rel_ci is not None and rel_ci <= s.target_rel_ci:
                self.stop_reason = "converged"
        return self.stop_reason is not None
