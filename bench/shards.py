"""Parts of one sweep: a deterministic split of the plan into N disjoint shards (`bench run --shard
K/N`), the plan's identity, and `bench merge` of the parts' results files into one.

The unit of the split is one case of one worker group, (group label, case), with every
measurement the plan makes of it, the rows that need no worker (unavailable, oom) included: such a
row goes wherever its group's case goes. Units are ordered by group label, then by the case's place
in the sweep, and cut into N contiguous, near-equal runs of measurements; a cut moves to a group's
edge when one is within a quarter of a shard, so most groups stay whole (fewer framework imports
per shard). Nothing in the order depends on the machine (which frameworks are installed decides
whether a row is measured or unavailable, never which shard holds it), so shards planned on
different machines still add up to the whole plan.

A merge keeps each row's machine (`Row.machine`, its host). Rows of one plan (same `plan_id`, or
the same run id) measured on one host, or on hosts alike (same CPU model, cores and GPUs: a
cluster's nodes of one kind), become one run, so frameworks measured on two H100 nodes still meet
in one verdict; other hardware stays a run of its own, and the report puts those side by side.
The same measurement twice from one host is an error naming both files; from two hosts alike,
both stay, one run per host.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import frameworks
from bench.cases import CaseKey, MeasurementKey
from bench.errors import BenchError
from bench.results import Row, machine_class, read_envs, read_rows, row_machine, write_envs
from bench.workers import WorkerSpec, group_jobs

if TYPE_CHECKING:
    from bench.registry import Impl
    from bench.runner import Plan, RunConfig

# RunConfig fields that change how a run is supervised, not what it measures: `--resume` may change
# them (the CLI), and they are no part of a plan's identity.
SUPERVISION = ("case_timeout_s", "import_timeout_s", "max_memory_bytes", "fail_fast", "reprobe")
# RunConfig fields that do not change what is measured: supervision, which part of the plan a run
# takes, and where implementations were found (absolute paths differ between checkouts; the
# measurement keys say what was found).
NOT_IDENTITY = (*SUPERVISION, "shard", "groups", "impl_paths", "impl_modules", "op_paths")
GROUP_SLACK = 0.25  # a cut moves to a group's edge within this fraction of a shard's measurements


# ---- the split ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    index: int  # K, from 1
    count: int  # N

    def text(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str, option: str = "--shard") -> Shard:
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip()) if text else None
    if m is None or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise BenchError(f"bad {option} {text!r}; expected K/N with 1 <= K <= N, such as 2/4")
    return Shard(int(m.group(1)), int(m.group(2)))


def group_label(framework: str, backend: str | None, device: str) -> str:
    """A worker group's name, as `WorkerSpec.label` writes it: `torch/cuda:0`, `<framework>-<backend>/cpu`."""
    return f"{framework}{'-' + backend if backend else ''}/{device}"


def spec_keys(spec: WorkerSpec, impls: dict[str, Impl]) -> Iterable[tuple[MeasurementKey, str]]:
    """(measurement key, implementation name) of each job of a worker group, in order."""
    fw = frameworks.get(spec.framework)
    for job in spec.jobs:
        for name in job.impls:
            impl = impls.get(name)
            backend = fw.row_backend(impl.backends if impl else fw.backends, spec.backend)
            yield MeasurementKey(name, backend, job.case.key()), name


def _direct_label(row: Row, impls: dict[str, Impl]) -> str:
    """The worker group a row that needs no worker would have run in."""
    fw = frameworks.frameworks().get(row.framework)
    impl = impls.get(row.impl)
    if fw is None or impl is None:
        return f"{row.framework or '?'}/{row.device}"
    backend = row.backend if row.backend in fw.expand(impl.backends) else None
    return group_label(fw.name, backend, row.device)


def labelled_keys(plan: Plan) -> list[tuple[str, MeasurementKey]]:
    """Every measurement of the plan with its worker group's label: the grouped ones, then the rows
    that need no worker."""
    out = [(spec.label, key) for spec in plan.groups for key, _ in spec_keys(spec, plan.impls)]
    out += [(_direct_label(row, plan.impls), row.key()) for row in plan.direct]
    return out


def plan_id(cfg: RunConfig, plan: Plan) -> str:
    """A stable hash of what the whole plan measures: the config (less NOT_IDENTITY) and the sorted
    measurement keys. Shards of one sweep share it; an unrelated file does not."""
    what = {k: v for k, v in cfg.to_json().items() if k not in NOT_IDENTITY}
    keys = sorted({key for _, key in labelled_keys(plan)})
    doc = {"config": what, "keys": [[k.impl, k.backend, k.case.to_json()] for k in keys]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Unit:
    """One case of one worker group: what a shard takes whole."""

    group: str
    case: CaseKey
    keys: tuple[MeasurementKey, ...]


def units(plan: Plan, case_order: Sequence[CaseKey]) -> list[Unit]:
    """The plan's units by group label, then by the case's place in the sweep (`case_order`)."""
    rank: dict[CaseKey, int] = {}
    for k in case_order:
        rank.setdefault(k, len(rank))
    found: dict[tuple[str, CaseKey], list[MeasurementKey]] = {}
    for label, key in labelled_keys(plan):
        found.setdefault((label, key.case), []).append(key)
    order = sorted(found, key=lambda gc: (gc[0], rank.get(gc[1], len(rank)), gc[1]))
    return [Unit(g, c, tuple(found[(g, c)])) for g, c in order]


def cut(items: Sequence[Unit], count: int) -> list[list[Unit]]:
    """`count` contiguous parts of near-equal measurement counts (some empty when there are fewer
    units than parts). Each cut goes to the group edge nearest its target when that is within
    GROUP_SLACK of a part, else to the nearest unit edge; ties go to the earlier edge."""
    cum = [0]
    for u in items:
        cum.append(cum[-1] + len(u.keys))
    total, n = cum[-1], len(items)
    edges = [i for i in range(n + 1) if i in (0, n) or items[i].group != items[i - 1].group]
    bounds = [0]
    for k in range(1, count):
        target = total * k / count
        lo = bounds[-1]
        best_edge = min((e for e in edges if e >= lo), key=lambda e: (abs(cum[e] - target), e))
        if abs(cum[best_edge] - target) <= GROUP_SLACK * total / count:
            bounds.append(best_edge)
        else:
            bounds.append(min(range(lo, n + 1), key=lambda e: (abs(cum[e] - target), e)))
    bounds.append(n)
    return [list(items[a:b]) for a, b in zip(bounds, bounds[1:])]


def in_groups(label: str, groups: Sequence[str]) -> bool:
    """Whether a worker group's label is one of `groups`: labels (a cluster job's) or globs
    (`--group 'keras-*'`)."""
    return any(fnmatch.fnmatchcase(label, g) for g in groups)


def check_groups(plan: Plan, groups: Sequence[str]) -> None:
    """A `--group` glob that names no worker group of the plan is bad input, said before anything runs."""
    labels = sorted({label for label, _ in labelled_keys(plan)})
    for g in groups:
        if not any(fnmatch.fnmatchcase(label, g) for label in labels):
            raise BenchError(
                f"--group {g!r} matches no worker group of this run; its groups: {', '.join(labels)}"
            )


def restrict(
    plan: Plan, case_order: Sequence[CaseKey], *, shard: str = "", groups: Sequence[str] = ()
) -> Plan:
    """The plan less what another shard, or another cluster job's groups, measures."""
    if not shard and not groups:
        return plan
    labelled = labelled_keys(plan)
    keep = {key for _, key in labelled}
    if shard:
        s = parse_shard(shard)
        part = cut(units(plan, case_order), s.count)[s.index - 1]
        keep = {key for u in part for key in u.keys}
    if groups:
        keep &= {key for label, key in labelled if in_groups(label, groups)}
    specs = []
    for spec in plan.groups:
        cases = {job.case.key(): job.case for job in spec.jobs}
        pairs = [(cases[key.case], name) for key, name in spec_keys(spec, plan.impls) if key in keep]
        if pairs:
            specs.append(replace(spec, jobs=group_jobs(pairs)))
    return replace(plan, groups=specs, direct=[r for r in plan.direct if r.key() in keep])


# ---- the merge ------------------------------------------------------------------------------


@dataclass
class _Source:
    """One run of one file on one machine."""

    path: Path
    order: int
    run_id: str
    machine: str
    env: dict[str, Any]
    rows: list[Row] = field(default_factory=list)

    @property
    def plan_id(self) -> str:
        return str(self.env.get("plan_id") or "")

    @property
    def shard(self) -> Shard | None:
        try:
            return parse_shard(str(self.env.get("shard") or ""))
        except BenchError:
            return None


@dataclass(frozen=True)
class MergedRun:
    run_id: str
    machine: str
    rows: int
    files: tuple[str, ...]
    shards: str


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def merge(
    paths: Sequence[Path],
    out: Path,
    *,
    config: dict[str, Any] | None = None,
    overwrite: bool = False,
    say: Callable[[str], None] = _say,
) -> list[MergedRun]:
    """Write one results file (and sidecar) from many, keeping each row's machine.

    `config`: the merged runs' RunConfig record (a cluster submission's); by default the first
    source's, its shard and groups cleared. BenchError, before anything is written, for an input
    given twice, an output that exists (unless `overwrite`) or is an input, no usable row, or the
    same measurement from one machine in two sources."""
    paths = [Path(p) for p in paths]
    resolved = [p.resolve() for p in paths]
    for i, p in enumerate(resolved):
        if p in resolved[:i]:
            raise BenchError(f"{paths[i]} is given twice")
    if out.resolve() in resolved:
        raise BenchError(f"the output {out} is also an input; merge into a new file")
    if out.exists() and not overwrite:
        raise BenchError(f"{out} exists; merge writes a new file (remove it, or choose another name)")
    sources = _read_sources(paths, say)
    if not any(s.rows for s in sources):
        raise BenchError(f"no usable rows in {', '.join(map(str, paths))}")
    runs = _group(_drop_stopped(sources))
    ids = _run_ids(runs)
    rows: list[Row] = []
    envs: dict[str, dict[str, Any]] = {}
    merged = []
    seen: dict[tuple[str, MeasurementKey], tuple[_Source, list[Row], int]] = {}
    for run, run_id in zip(runs, ids):
        mine = _rows_of(run, run_id, seen)
        rows += mine
        envs[run_id] = _env_of(run, run_id, config, say)
        merged.append(
            MergedRun(
                run_id,
                str(envs[run_id].get("host", "")),
                len(mine),
                tuple(dict.fromkeys(str(s.path) for s in run)),
                str(envs[run_id].get("shard", "")),
            )
        )
    _warn_missing_shards(sources, say)
    _write_rows(out, rows)
    write_envs(out, envs)
    return merged


def _read_sources(paths: Sequence[Path], say: Callable[[str], None]) -> list[_Source]:
    sources: dict[tuple[int, str, str], _Source] = {}
    for order, path in enumerate(paths):
        envs = read_envs(path)
        for row in read_rows(path, lambda m: say(f"warning: {m}")):
            run_id = row.run_id or path.stem
            env = envs.get(run_id, {})
            machine = row_machine(row, envs)
            key = (order, run_id, machine)
            if key not in sources:
                sources[key] = _Source(path, order, run_id, machine, dict(env))
            sources[key].rows.append(row)
    return list(sources.values())


def _drop_stopped(sources: list[_Source]) -> list[_Source]:
    """A `stopped` row is no measurement: where any part measured its key on the same machine
    (a resumed job, a shard run again), that row stands and the stopped one goes."""
    measured = {(s.machine, r.key()) for s in sources for r in s.rows if r.status != "stopped"}
    for s in sources:
        s.rows = [r for r in s.rows if r.status != "stopped" or (s.machine, r.key()) not in measured]
    return [s for s in sources if s.rows]


def _group(sources: list[_Source]) -> list[list[_Source]]:
    """Sources that make one run: one plan (or one run id) on one host, and on hosts alike (same
    CPU, cores and GPUs: a cluster's nodes of one kind), so a framework measured on node 7 and
    another on node 8 still meet in one verdict. Hosts alike that measured the same case are kept
    apart, one run each. In order of first appearance."""
    parent = list(range(len(sources)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str, str], int] = {}
    for i, s in enumerate(sources):
        kind = machine_class(s.env)
        links = [("run", s.machine, s.run_id), ("plan", s.machine, s.plan_id)]
        links += [("kind-run", kind, s.run_id), ("kind-plan", kind, s.plan_id)] if kind else []
        for link in links:
            if link[2]:
                j = first.setdefault(link, i)
                parent[find(i)] = find(j)
    groups: dict[int, list[_Source]] = {}
    for i, s in enumerate(sources):
        groups.setdefault(find(i), []).append(s)

    def rank(s: _Source) -> tuple[Any, ...]:
        shard = s.shard
        failed = "failed_job" in s.env  # rows written for a failed cluster job: their env is thin
        return (failed, shard.index if shard else 0, str(s.env.get("started", "")), s.order)

    runs = []
    for group in groups.values():
        by_host: dict[str, list[_Source]] = {}
        for s in group:
            by_host.setdefault(s.machine, []).append(s)
        measured_by: dict[MeasurementKey, set[str]] = {}
        for s in group:
            for r in s.rows:
                measured_by.setdefault(r.key(), set()).add(s.machine)
        if any(len(hosts) > 1 for hosts in measured_by.values()):
            runs += [sorted(g, key=rank) for g in by_host.values()]
        else:
            runs.append(sorted(group, key=rank))
    return runs


def _run_ids(runs: list[list[_Source]]) -> list[str]:
    """Each merged run's id: its first source's, with `@host` (or `@kind` for several hosts alike)
    where runs would share one."""
    first = [run[0].run_id for run in runs]
    ids: list[str] = []
    for rid, run in zip(first, runs):
        hosts = sorted({s.machine for s in run})
        tag = hosts[0] if len(hosts) == 1 else _slug(machine_class(run[0].env).split(";")[0])
        new = rid if first.count(rid) == 1 else f"{rid}@{tag or 'unknown'}"
        n = 2
        while new in ids:
            new, n = f"{new.rsplit('~', 1)[0]}~{n}", n + 1
        ids.append(new)
    return ids


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _rows_of(
    run: list[_Source],
    run_id: str,
    seen: dict[tuple[str, MeasurementKey], tuple[_Source, list[Row], int]],
) -> list[Row]:
    """The run's rows under its merged id. `seen` spans every run: the same measurement from one
    machine in two sources is a clash, whether or not their plans match; a case measured again
    within one source (a resume) keeps its later row. A `stopped` row is no measurement: any other
    row of its key replaces it, wherever it comes from."""
    rows: list[Row] = []
    for s in run:
        for row in s.rows:
            key = (s.machine, row.key())
            if key in seen:
                other, where_rows, at = seen[key]
                if row.status == "stopped" and other is not s:
                    continue  # stopped in two parts (see _drop_stopped): one says it
                if other is not s:
                    where = (
                        f"both in {s.path} (runs {other.run_id} and {s.run_id})"
                        if other.path == s.path
                        else f"in both {other.path} and {s.path}"
                    )
                    raise BenchError(
                        f"{row.key().text()} from machine {s.machine or '(unknown)'} is {where}: parts of "
                        "one sweep must not overlap; leave one of them out"
                    )
                where_rows[at] = replace(row, run_id=run_id, machine=s.machine)
                continue
            seen[key] = (s, rows, len(rows))
            rows.append(replace(row, run_id=run_id, machine=s.machine))
    return rows


def _env_of(
    run: list[_Source], run_id: str, config: dict[str, Any] | None, say: Callable[[str], None]
) -> dict[str, Any]:
    """One env record for the merged run: the first source's, with what each source measured of the
    machine pooled (copy bandwidth samples concatenated) and the sources listed in `merged_from`."""
    envs = [s.env for s in run]
    env: dict[str, Any] = dict(next((e for e in envs if e), {}))
    env["run_id"] = run_id
    hosts = list(dict.fromkeys(s.machine for s in run if s.machine))
    if hosts:
        env["host"], env["hosts"] = ", ".join(hosts), hosts
    env["machine"] = machine_class(env)
    env["merged_from"] = [
        {
            "file": str(s.path),
            "run_id": s.run_id,
            "host": s.machine,
            "rows": len(s.rows),
            **{
                k: s.env[k]
                for k in ("shard", "groups", "job", "failed_job", "started", "finished")
                if k in s.env
            },
        }
        for s in run
    ]
    shards = sorted({s.shard for s in run if s.shard}, key=lambda sh: (sh.count, sh.index))
    env["shard"] = ", ".join(sh.text() for sh in shards)
    samples: dict[str, list[float]] = {}
    for e in envs:
        for device, xs in (e.get("copy_gbps_samples") or {}).items():
            samples.setdefault(device, []).extend(xs)
    env["copy_gbps_samples"] = samples
    env["copy_gbps"] = {d: round(statistics.median(xs), 3) for d, xs in samples.items() if xs}
    for key in ("device_names", "versions", "copy_method", "effective_cache_bytes", "cache"):
        pooled: dict[str, Any] = {}
        for e in envs:
            for k, v in (e.get(key) or {}).items():
                pooled.setdefault(k, v)
        if pooled:
            env[key] = pooled
    env["workers"] = [w for e in envs for w in e.get("workers") or []]
    started = [str(e["started"]) for e in envs if e.get("started")]
    finished = [str(e["finished"]) for e in envs if e.get("finished")]
    if started:
        env["started"] = min(started)
    if finished:
        env["finished"] = max(finished)
    env["interrupted"] = any(bool(e.get("interrupted")) for e in envs)
    if config is not None:
        env["config"] = config
    elif isinstance(env.get("config"), dict):
        env["config"] = {**env["config"], "shard": "", "groups": []}
    for what in ("git_commit", "packages"):
        values = {json.dumps(e[what], sort_keys=True) for e in envs if e.get(what)}
        if len(values) > 1:
            say(f"warning: run {run_id}: its parts ran with different {what.replace('_', ' ')}")
    return env


def _warn_missing_shards(sources: list[_Source], say: Callable[[str], None]) -> None:
    by_plan: dict[str, set[Shard]] = {}
    for s in sources:
        if s.shard and s.plan_id:
            by_plan.setdefault(s.plan_id, set()).add(s.shard)
    for pid, found in by_plan.items():
        counts = sorted({sh.count for sh in found})
        if len(counts) > 1:
            say(f"warning: plan {pid}: shards cut {' and '.join(f'{n} ways' for n in counts)} overlap")
            continue
        n = counts[0]
        missing = [f"{k}/{n}" for k in range(1, n + 1) if Shard(k, n) not in found]
        if missing:
            say(
                f"warning: plan {pid}: shard {', '.join(missing)} is not among the inputs: the merged "
                "file is not the whole sweep"
            )


def _write_rows(out: Path, rows: list[Row]) -> None:
    """All rows at once, atomically: a failed merge leaves no half file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(row.to_json() + "\n" for row in rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BenchError(f"cannot write {out}: {exc.strerror or exc}") from None
