"""`python -m bench repro --runs K [run options]`: the same run in K fresh processes, and the spread of
its medians from process to process, with the fault state and cache residency of each.

One process's samples show its own noise only. Whether a median can be trusted depends on what
the next process gets: allocator state, page faults, what is still in the cache. This runs the
configuration K times, each a new `bench run` (new workers, new inputs), and reports per
implementation and case the spread (max/min - 1) of the K medians beside whether the runs agreed
on fault state and cache residency: a spread with equal states is noise; with unequal states it
is the state, not the code. The speed-of-light copies each run measured (start, between groups,
end) give the machine's own noise floor beside it: on a shared VM no median agrees better than
the machine's bandwidth does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median

from bench.cases import MeasurementKey
from bench.errors import BenchError
from bench.results import read_env, read_rows
from bench.stats import CACHE_RESIDENT_SOL, FAULTING_PER_CALL, positive_numbers, sol_fraction

TARGET_SPREAD = 0.10


@dataclass(frozen=True)
class Spread:
    """One implementation and case over K processes."""

    variant: str
    case: str
    medians_s: tuple[float, ...]
    spread: float  # max/min - 1 of the medians
    faults_per_call: tuple[float, ...]
    sol_fractions: tuple[float, ...]
    same_fault_state: bool
    same_cache_state: bool

    @property
    def within_target(self) -> bool:
        return self.spread <= TARGET_SPREAD


def spreads(paths: list[Path]) -> list[Spread]:
    """Per (implementation, backend, case) measured ok in every file: the spread of its medians."""
    per_run = []
    for p in paths:
        env = read_env(p)
        rows = {
            r.key(): r
            for r in read_rows(p)
            if r.status == "ok" and r.time_median_s and r.input_kind == "random"
        }
        per_run.append((env, rows))
    common: list[MeasurementKey] = sorted(set.intersection(*(set(rows) for _, rows in per_run)))
    out = []
    for key in common:
        same = [found[key] for _, found in per_run]
        medians = tuple(float(r.time_median_s or 0.0) for r in same)
        faults = tuple(float(r.faults_per_call or 0.0) for r in same)
        sols = tuple(sol_fraction(r.achieved_gbps, r, env) or 0.0 for (env, _), r in zip(per_run, same))
        out.append(
            Spread(
                variant=same[0].variant,
                case=key.case.text(),
                medians_s=medians,
                spread=max(medians) / min(medians) - 1,
                faults_per_call=faults,
                sol_fractions=sols,
                same_fault_state=len({f >= FAULTING_PER_CALL for f in faults}) == 1,
                same_cache_state=len({s > CACHE_RESIDENT_SOL for s in sols}) == 1,
            )
        )
    return out


@dataclass(frozen=True)
class Floor:
    """The machine's own noise over the K runs: the speed-of-light copy, measured several times in
    each run. Implementations' medians cannot be expected to agree better than this moved."""

    device: str
    gbps: tuple[float, ...]  # every copy measurement of every run, in order
    spread: float  # max/min - 1 over all of them
    worst_in_run: float | None  # the largest max/min - 1 within one run (None: one copy a run)


def noise_floor(paths: list[Path]) -> list[Floor]:
    per_device: dict[str, list[list[float]]] = {}
    for p in paths:
        samples = read_env(p).get("copy_gbps_samples")
        for device, values in samples.items() if isinstance(samples, dict) else ():
            if found := positive_numbers(values):
                per_device.setdefault(device, []).append(found)
    return [
        Floor(
            device,
            tuple(v for run in runs for v in run),
            max(max(run) for run in runs) / min(min(run) for run in runs) - 1,
            max((max(run) / min(run) - 1 for run in runs if len(run) > 1), default=None),
        )
        for device, runs in sorted(per_device.items())
    ]


def run_many(runs: int, run_args: list[str], out_dir: Path) -> list[Path]:
    """`bench run RUN_ARGS --out DIR/run-k.jsonl`, K times, each in its own process."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(1, runs + 1):
        path = out_dir / f"run-{k}.jsonl"
        print(f"repro: run {k} of {runs} -> {path}", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "bench", "run", *run_args, "--out", str(path)], check=False
        )
        if done.returncode != 0:
            raise BenchError(
                f"repro: run {k} of {runs} exited with code {done.returncode}; its rows are in {path}"
            )
        paths.append(path)
    return paths


def print_table(found: list[Spread], floors: list[Floor], out_dir: Path) -> None:
    head = f"{'implementation':28} {'case':36} {'median':>10} {'spread':>7}"
    print(f"{head}  faults/call        SOL          states")
    for s in found:
        states = "equal" if s.same_fault_state and s.same_cache_state else "DIFFER"
        faults = "/".join(f"{f:.3g}" for f in s.faults_per_call)
        sols = "/".join(f"{x:.2f}" for x in s.sol_fractions)
        mark = "" if s.within_target else " >10%"
        print(
            f"{s.variant:28} {s.case:36} {median(s.medians_s) * 1e3:8.4g}ms {s.spread:7.1%}{mark:5} "
            f"{faults:18} {sols:12} {states}"
        )
    for f in floors:
        print(
            f"the machine itself, {f.device}: copy bandwidth {min(f.gbps):.1f}-{max(f.gbps):.1f} GB/s over "
            f"the runs (spread {f.spread:.0%}; "
            + (
                f"{f.worst_in_run:.0%} within one run at worst)"
                if f.worst_in_run is not None
                else "each run copied once)"
            )
        )
    within = sum(s.within_target for s in found)
    print(f"{within} of {len(found)} within {TARGET_SPREAD:.0%}; runs and summary in {out_dir}")
    summary = {"spreads": [asdict(s) for s in found], "noise_floor": [asdict(f) for f in floors]}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
