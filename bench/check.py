"""`python -m bench check IMPL`: correctness, semantics and edge cases of one implementation, untimed.

It measures through the same worker client as `bench run` (bench/workers.py), so a crash, a hang
or a wrong output gives the same row here as in a run.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from bench import frameworks, operators
from bench.cases import Case, Shape, edge_cases, unused_params, variants
from bench.errors import BenchError
from bench.registry import Impl, declared_names, describe_source, sources
from bench.results import Row
from bench.workers import Limits, discover, run_jobs


def find_impl(name: str, found: list, threads: int, limits: Limits) -> Impl:  # type: ignore[type-arg]
    """Read the names every source declares (nothing imported); probe only the one that has it."""
    names = declared_names(found)
    if name not in names:
        raise BenchError(f"unknown implementation {name!r}; known: {', '.join(sorted(names))}")
    disc = discover(found, threads, limits, only={name})
    if name not in disc.impls:
        raise BenchError(f"unknown implementation {name!r}; known: {', '.join(sorted(disc.impls))}")
    return disc.impls[name]


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
    params: dict[str, tuple[int, ...]] | None = None,
) -> tuple[list[tuple[Impl, str | None, Case]], list[str]]:
    """Every declared (mode, dtype, layout) the filters leave, on each device and worker backend,
    for each of the operator parameter values asked for (the operator's defaults otherwise)."""
    op = operators.get(impl.op)
    notes = unused_params(params or {}, (op.name,))
    fw = frameworks.get(impl.framework)
    kinds = [d.split(":")[0] for d in devices]
    if not any(k in impl.devices for k in kinds):
        raise BenchError(
            f"{impl.name} declares devices {', '.join(impl.devices)}; "
            f"nothing to check on {', '.join(devices)}"
        )
    dts = _chosen("dtype", dtypes, impl.dtypes, impl.name)
    lays = _chosen("layout", layouts, impl.layouts, impl.name)
    mds = _chosen("mode", modes, impl.modes, impl.name)
    if fw.no_autograd:
        notes += [f"{m}: {fw.no_autograd}" for m in mds if m != "forward"]
        mds = [m for m in mds if m == "forward"]
    backends: list[str | None] = []
    for b in fw.expand(impl.backends):
        reason = fw.missing(b)
        if reason:
            notes.append(f"{reason}: not checked")
        else:
            backends.append(b)
    if not backends:
        raise BenchError(f"{impl.name}: {fw.missing(None) or 'none of its backends is installed'}")
    jobs: list[tuple[Impl, str | None, Case]] = []
    for device, kind in zip(devices, kinds):
        if kind not in impl.devices:
            notes.append(f"{device}: not declared (declares {', '.join(impl.devices)})")
            continue
        cases: list[Case] = []
        for v in variants(op.name, params or {}, shapes or list(op.check_shapes)):
            notes += v.skip_lines("checked")
            cases += [
                Case(
                    shape=s, dtype=d, layout=lay, mode=m, device=device, eps=eps, op=op.name, op_params=v.text
                )
                for m in mds
                for d in dts
                for lay in lays
                for s in v.shapes
            ]
            if edge and "forward" in impl.modes:
                cases += edge_cases(op.name, device, lays, eps, impl.dtypes, v.values)
        if edge and "forward" in impl.modes:
            notes += [
                f"edge case {kind} needs {dtype}, not declared: not checked"
                for kind, (_, dtype) in op.edge_cases.items()
                if dtype not in impl.dtypes
            ]
        jobs += [(impl, b, c) for b in backends for c in cases]
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
    header = ("backend", "device", "mode", "dtype", "layout", "shape", "result", "max_rel_err", "tolerance")
    table = [(*header, "detected semantics")]
    for r in checks:
        detected = r.semantics or "-"
        if r.semantics_mismatch:
            detected += f" (declared {r.semantics_declared})"
        result = "ok" if passed(r) else ("WRONG" if r.status == "ok" else r.status.upper())
        shape = "x".join(map(str, r.shape))
        table.append(
            (
                r.backend,
                r.device,
                r.mode,
                r.dtype,
                r.layout,
                shape,
                result,
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
    if bad or not checks:
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
    ops: tuple[str, ...] | None = None,
    params: dict[str, tuple[int, ...]] | None = None,
    impl_paths: list[str] | tuple[str, ...] = (),
    impl_modules: list[str] | tuple[str, ...] = (),
    out: TextIO = sys.stdout,
    limits: Limits = Limits(),  # noqa: B008  frozen
) -> int:
    threads = os.cpu_count() or 1
    found = sources(impl_paths, impl_modules)
    impl = find_impl(name, found, threads, limits)
    if ops and impl.op not in ops:
        raise BenchError(f"{impl.name} computes {impl.op}, not {' or '.join(ops)}")
    if impl.unavailable:
        print(f"{impl.name} ({describe_source(impl.source)}): unavailable: {impl.unavailable}", file=out)
        print("verdict: WRONG: the implementation cannot be loaded", file=out)
        return 1
    jobs, notes = plan_checks(impl, devices, dtypes, layouts, modes, shapes, eps, edge, params or {})
    result = run_jobs(jobs, found, task="check", threads=threads, limits=limits)
    return print_verdict(impl, result.rows, notes, out)
