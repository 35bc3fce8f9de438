"""`python -m bench check IMPL`: correctness, semantics and edge cases of one implementation, untimed.

It also holds `run_jobs`, the plain way to run (implementation, case) pairs in the harness's worker
processes without the runner's sweep, resume and crash retries; the pytest-benchmark front end
(benchmarks/) uses it too.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TextIO

from bench.cases import Case, CaseKey, Shape
from bench.errors import BenchError
from bench.reference import EDGE_CASES
from bench.registry import Impl, Source, describe_source, framework_of, sources
from bench.results import Row, row_from_dict
from bench.runner import Worker, keras_backends_present, probe, unrun_row, worker_env
from bench.timing import TimingSettings

# H != W and C differs from both: an implementation that reduces over the wrong axes, or mixes up
# NCHW and NHWC, gets a different answer; 48-pixel planes keep biased and unbiased std 1 % apart.
CHECK_SHAPES: list[Shape] = [(2, 3, 6, 8)]


@dataclass(frozen=True)
class Job:
    impl: Impl
    keras_backend: str | None  # the worker group's Keras backend; None for other frameworks
    case: Case

    @property
    def backend(self) -> str:
        return self.keras_backend or self.impl.backends[0]


@dataclass
class JobsResult:
    rows: list[Row] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # framework -> version, from the workers


def _row(job: Job, status: str, message: str) -> Row:
    return unrun_row(job.impl, job.backend, job.case, status, message)


def run_jobs(
    jobs: list[Job],
    found: list[Source],
    *,
    task: str,
    threads: int,
    settings: TimingSettings | None = None,
    require_correct: bool = False,
    timeout_s: float = 300.0,
    say: Callable[[str], None] | None = None,
) -> JobsResult:
    """One row per job from one worker per (framework, Keras backend, device), in job order.

    `task` is "check" (no timing) or "run"; with `require_correct` a wrong output is not timed. A
    job its worker did not finish gets a "crashed" or "timeout" row (no retry: that is the runner's).
    """
    settings = settings or TimingSettings()
    groups: dict[tuple[str, str | None, str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.impl.framework, job.keras_backend, job.case.device), []).append(job)
    result = JobsResult()
    for (framework, backend, device), group in groups.items():
        if say:
            say(f"{framework}{'-' + backend if backend else ''}/{device}: {len(group)} cases")
        _run_group(
            framework,
            backend,
            device,
            group,
            found,
            task,
            threads,
            settings,
            require_correct,
            timeout_s,
            result,
        )
    order = {(j.impl.name, j.backend, j.case.key()): i for i, j in enumerate(jobs)}
    result.rows = [replace(r, threads=threads, settings=settings.key()) for r in result.rows]
    result.rows.sort(key=lambda r: order.get((r.impl, r.backend, r.case_key()), len(order)))
    return result


def _run_group(
    framework: str,
    backend: str | None,
    device: str,
    group: list[Job],
    found: list[Source],
    task: str,
    threads: int,
    settings: TimingSettings,
    require_correct: bool,
    timeout_s: float,
    result: JobsResult,
) -> None:
    batches: list[tuple[Case, list[str]]] = []
    for job in group:
        if batches and batches[-1][0] == job.case:
            batches[-1][1].append(job.impl.name)
        else:
            batches.append((job.case, [job.impl.name]))
    spec = {
        "task": task,
        "framework": framework,
        "keras_backend": backend,
        "device": device,
        "threads": threads,
        "settings": asdict(settings),
        "require_correct": require_correct,
        "sources": [list(asdict(s).values()) for s in found],
        "jobs": [{"case": asdict(c), "impls": names} for c, names in batches],
    }
    pending = {(j.case.key(), j.impl.name): j for j in group}
    with tempfile.NamedTemporaryFile(prefix="normbench-worker-", suffix=".log") as log:
        worker = Worker(spec, worker_env(threads, backend), Path(log.name))
        current: tuple[CaseKey, str, str] | None = None  # (case key, impl, phase)
        last_event = time.monotonic()
        failure: tuple[str, str] | None = None
        while True:
            events, closed = worker.events(1.0)
            if events:
                last_event = time.monotonic()
            for e in events:
                kind = e["event"]
                if kind == "hello":
                    result.versions.update(e["versions"])
                elif kind == "begin":
                    current = (CaseKey.from_json(e["case"]), e["impl"], e["phase"])
                elif kind == "row":
                    row = row_from_dict(e["row"])
                    pending.pop((row.case_key(), row.impl), None)
                    result.rows.append(row)
                elif kind == "missing" and (CaseKey.from_json(e["case"]), e["impl"]) in pending:
                    job = pending.pop((CaseKey.from_json(e["case"]), e["impl"]))
                    result.rows.append(_row(job, "error", "implementation failed to import in the worker"))
                elif kind == "fatal":
                    failure = ("unavailable", e["message"])
            if closed:
                break
            if time.monotonic() - last_event > timeout_s:
                phase = f" during {current[2]} of {current[1]}" if current else ""
                failure = ("timeout", f"no progress for {timeout_s:g} s{phase}; worker killed")
                worker.kill()
                break
        if failure is None or failure[0] != "timeout":
            worker.proc.wait()
            worker.close()
        if pending and failure is None:
            phase = f" during {current[2]} of {current[1]} {current[0]}" if current else ""
            # An exit code (not a signal) means a Python exception: its last line says which.
            text = Path(log.name).read_text(errors="replace") if worker.proc.returncode > 0 else ""
            last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
            failure = ("crashed", f"{worker.exit_description()}{phase}" + (f": {last[:300]}" if last else ""))
    for job in pending.values():
        assert failure is not None
        result.rows.append(_row(job, *failure))


# ---- python -m bench check ------------------------------------------------------------------


def find_impl(name: str, found: list[Source], threads: int) -> Impl:
    """Probe only the framework the name's prefix says (fast), then everything (names may differ)."""
    fw = framework_of(name)
    impls = (
        probe([s for s in found if s.framework == fw], threads)
        if any(s.framework == fw for s in found)
        else {}
    )
    if name not in impls:
        impls = probe(found, threads)
    if name not in impls:
        raise BenchError(f"unknown implementation {name!r}; known: {', '.join(sorted(impls))}")
    return impls[name]


def _chosen(kind: str, asked: list[str] | None, declared: tuple[str, ...], name: str) -> list[str]:
    if not asked:
        return list(declared)
    undeclared = [a for a in asked if a not in declared]
    if undeclared:
        raise BenchError(
            f"{name} does not declare {kind} {', '.join(undeclared)} (declares {', '.join(declared)})"
        )
    return list(asked)


def plan_checks(
    impl: Impl,
    devices: list[str],
    dtypes: list[str] | None,
    layouts: list[str] | None,
    modes: list[str] | None,
    shapes: list[Shape] | None,
    eps: float,
    edge: bool,
) -> tuple[list[Job], list[str]]:
    """Every declared (mode, dtype, layout) the filters leave, on each device and Keras backend."""
    notes: list[str] = []
    kinds = [d.split(":")[0] for d in devices]
    if not any(k in impl.devices for k in kinds):
        raise BenchError(
            f"{impl.name} declares devices {', '.join(impl.devices)}; "
            f"nothing to check on {', '.join(devices)}"
        )
    dts = _chosen("dtype", dtypes, impl.dtypes, impl.name)
    lays = _chosen("layout", layouts, impl.layouts, impl.name)
    mds = _chosen("mode", modes, impl.modes, impl.name)
    backends: list[str | None] = [None]
    if impl.framework == "keras":
        present = keras_backends_present()
        backends = [b for b in impl.backends if b in present]
        notes += [
            f"keras backend {b} is not installed: not checked" for b in impl.backends if b not in present
        ]
        if not backends:
            raise BenchError(
                f"{impl.name}: none of its Keras backends ({', '.join(impl.backends)}) is installed"
            )
    jobs = []
    for device, kind in zip(devices, kinds):
        if kind not in impl.devices:
            notes.append(f"{device}: not declared (declares {', '.join(impl.devices)})")
            continue
        cases = [
            Case(shape=s, dtype=d, layout=lay, mode=m, device=device, eps=eps)
            for m in mds
            for d in dts
            for lay in lays
            for s in shapes or CHECK_SHAPES
        ]
        if edge and "forward" in impl.modes:
            for input_kind, (shape, dtype) in EDGE_CASES.items():
                if dtype not in impl.dtypes:
                    notes.append(f"edge case {input_kind} needs {dtype}, not declared: not checked")
                    continue
                cases += [
                    Case(
                        shape=shape,
                        dtype=dtype,
                        layout=lay,
                        mode="forward",
                        device=device,
                        eps=eps,
                        input_kind=input_kind,
                    )
                    for lay in lays
                ]
        jobs += [Job(impl, b, c) for b in backends for c in cases]
    return jobs, notes


def passed(row: Row) -> bool:
    return row.status == "ok" and bool(row.correct) and not row.semantics_mismatch


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2g}"


def print_verdict(impl: Impl, rows: list[Row], notes: list[str], out: TextIO) -> int:
    """The table, the edge cases and one verdict line; returns the exit code (0 correct, 1 not)."""
    checks = [r for r in rows if r.input_kind == "random"]
    edges = [r for r in rows if r.input_kind != "random"]
    print(
        f"{impl.name} ({impl.framework}, {describe_source(impl.source)}): declared {impl.semantics}", file=out
    )
    table = [
        (
            "backend",
            "device",
            "mode",
            "dtype",
            "layout",
            "shape",
            "result",
            "max_rel_err",
            "tolerance",
            "detected semantics",
        )
    ]
    for r in checks:
        detected = r.semantics or "-"
        if r.semantics_mismatch:
            detected += f" (declared {r.semantics_declared})"
        table.append(
            (
                r.backend,
                r.device,
                r.mode,
                r.dtype,
                r.layout,
                "x".join(map(str, r.shape)),
                "ok" if passed(r) else ("WRONG" if r.status == "ok" else r.status.upper()),
                _fmt(r.max_rel_err),
                _fmt(r.tolerance),
                detected,
            )
        )
    widths = [max(len(t[k]) for t in table) for k in range(len(table[0]))]
    for i, t in enumerate(table):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip(), file=out)
        if i and not passed(checks[i - 1]) and checks[i - 1].message:
            print(f"    -> {checks[i - 1].message}", file=out)
    if edges:
        print("edge cases (forward; reported, not part of the verdict):", file=out)
        width = max(len(r.input_kind) for r in edges)
        for r in edges:
            what = (
                r.message.removeprefix(f"{r.input_kind}: ")
                if r.status == "ok"
                else f"{r.status}: {r.message}"
            )
            print(f"  {r.backend}  {r.device}  {r.input_kind.ljust(width)}  {r.layout}  {what}", file=out)
    for note in notes:
        print(f"note: {note}", file=out)
    bad = [r for r in checks if not passed(r)]
    if bad:
        print(f"verdict: WRONG: {len(bad)} of {len(checks)} checks failed", file=out)
        return 1
    print(
        f"verdict: ok: {len(checks)} of {len(checks)} checks within tolerance of the float64 reference, "
        f"semantics {impl.semantics} as declared",
        file=out,
    )
    return 0


def check(
    name: str,
    devices: list[str],
    dtypes: list[str] | None = None,
    layouts: list[str] | None = None,
    modes: list[str] | None = None,
    shapes: list[Shape] | None = None,
    eps: float = 1e-5,
    edge: bool = True,
    impl_paths: list[str] = (),  # type: ignore[assignment]
    impl_modules: list[str] = (),  # type: ignore[assignment]
    out: TextIO = sys.stdout,
) -> int:
    threads = os.cpu_count() or 1
    found = sources(impl_paths, impl_modules)
    impl = find_impl(name, found, threads)
    if impl.unavailable:
        print(f"{impl.name} ({describe_source(impl.source)}): unavailable: {impl.unavailable}", file=out)
        print("verdict: WRONG: the implementation cannot be loaded", file=out)
        return 1
    jobs, notes = plan_checks(impl, devices, dtypes, layouts, modes, shapes, eps, edge)
    result = run_jobs(jobs, found, task="check", threads=threads)
    return print_verdict(impl, result.rows, notes, out)
