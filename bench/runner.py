"""Plans the sweep, drives one worker client per worker group, appends rows, survives failures."""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import json
import math
import os
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import environment, frameworks, memory, operators, shards, stats, verify
from bench.cases import (
    Case,
    MeasurementKey,
    Shape,
    device_kind,
    edge_cases,
    preset_shapes,
    unused_params,
    variants,
)
from bench.errors import BenchError
from bench.locks import RunLock
from bench.progress import Progress, for_stream, group_summary
from bench.registry import Impl, Source, declared_names, sources
from bench.results import ResultsWriter, Row, read_envs, read_rows, write_env
from bench.timing import TimingSettings
from bench.workers import (
    Begin,
    CopyResult,
    CopyService,
    Discovery,
    Done,
    Hello,
    Limits,
    Listener,
    WorkerClient,
    WorkerSpec,
    discover,
    group_jobs,
    unrun_row,
)

ROOT = Path(__file__).resolve().parent.parent
# The speed-of-light copy is measured again between groups, and at the end, at most this often: a
# run of a few seconds measures it once (each copy costs ~1 s at 2 GiB, a fifth of a one-row run).
COPY_EVERY_S = 30.0
MAX_STOPS = 3  # a measurement in flight at this many stops of one run is not tried again


@dataclass(frozen=True)
class RunConfig:
    """What a run measures and how: everything `--resume` restores from the results' sidecar.

    Built once by the CLI from its options (or from a sidecar, for a resume); the runner never
    changes it. `to_json`/`from_json` are the sidecar's "config" record.
    """

    impl_globs: tuple[str, ...] = ("*",)
    ops: tuple[str, ...] = ()  # empty: every operator a chosen implementation computes
    # operator parameter -> the values to measure (e.g. num_groups: (32, 1)); absent: its default
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)
    devices: tuple[str, ...] = ("cpu",)
    preset: str = "quick"
    shapes: tuple[Shape, ...] = ()  # empty: the preset's for each device
    dtypes: tuple[str, ...] = ("float32",)
    layouts: tuple[str, ...] = ("NCHW",)
    modes: tuple[str, ...] = ("forward",)
    threads: int = 1
    eps: float = 1e-5
    settings: TimingSettings = field(default_factory=TimingSettings)
    impl_paths: tuple[str, ...] = ()
    impl_modules: tuple[str, ...] = ()
    op_paths: tuple[str, ...] = ()  # operator folders and files (--op-path), resolved
    edge: bool = False
    case_timeout_s: float = 300.0
    import_timeout_s: float = 120.0
    max_memory_bytes: int = 0
    effective_cache_bytes: int = 0  # --effective-cache: given instead of swept (0: sweep)
    fail_fast: bool = False
    shard: str = ""  # "K/N": only that part of the plan (bench.shards); empty: the whole plan
    groups: tuple[str, ...] = ()  # only these worker groups (a cluster job's); empty: every group
    reprobe: bool = False  # sweep the caches and probe every source again (no sweep store, no probe memo)

    @property
    def limits(self) -> Limits:
        return Limits(self.case_timeout_s, self.import_timeout_s, self.max_memory_bytes)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        tuples = ("impl_globs", "ops", "devices", "dtypes", "layouts", "modes", "impl_paths", "impl_modules")
        for k in (*tuples, "op_paths"):
            if k in kw:
                kw[k] = tuple(kw[k])
        if "groups" in kw:
            kw["groups"] = tuple(kw["groups"])
        if "params" in kw:
            kw["params"] = {k: tuple(v) for k, v in kw["params"].items()}
        if "shapes" in kw:
            kw["shapes"] = tuple(tuple(s) for s in kw["shapes"])
        if "settings" in kw:
            kw["settings"] = TimingSettings(**kw["settings"])
        return cls(**kw)


@dataclass
class Plan:
    """The sweep: worker groups (each a spec with its jobs) and rows that need no worker."""

    groups: list[WorkerSpec]
    direct: list[Row]
    impls: dict[str, Impl]
    ops: tuple[str, ...] = ()  # the operators it measures (plan_ops)
    unplanned: tuple[str, ...] = ()  # why some (operator, parameters, shape) are not measured

    @property
    def measurements(self) -> int:
        return sum(len(j.impls) for g in self.groups for j in g.jobs)


def select_impls(all_impls: dict[str, Impl] | set[str], globs: tuple[str, ...]) -> list[str]:
    chosen: dict[str, None] = {}
    for g in globs:
        matched = [n for n in sorted(all_impls) if fnmatch.fnmatchcase(n, g)]
        if not matched:
            raise BenchError(f"--impl {g!r} matches no implementation; known: {', '.join(sorted(all_impls))}")
        chosen.update(dict.fromkeys(matched))
    return list(chosen)


def plan_ops(cfg: RunConfig, impls: dict[str, Impl], chosen: list[str]) -> tuple[str, ...]:
    """The operators a run measures: --op's, or every operator a chosen implementation computes."""
    if cfg.ops:
        return cfg.ops
    computed = {impls[name].op for name in chosen}
    return tuple(op for op in operators.operators() if op in computed)


def cases(cfg: RunConfig, device: str, ops: tuple[str, ...] | None = None) -> list[Case]:
    """The run's cases on `device`: per operator (`ops`; default: the run's --op, else the default
    operator) and parameter values, each shape it can take."""
    return _cases(cfg, device, ops or cfg.ops or (operators.DEFAULT,))[0]


def _cases(cfg: RunConfig, device: str, ops: tuple[str, ...]) -> tuple[list[Case], list[str]]:
    """The cases, and why some shapes are not measured with some operator parameters (a line each)."""
    found: list[Case] = []
    skipped: list[str] = []
    for op in ops:
        shapes = list(cfg.shapes) or preset_shapes(cfg.preset, device, op)
        for v in variants(op, cfg.params, shapes):
            skipped += v.skip_lines("planned")
            found += [
                Case(
                    shape=s, dtype=d, layout=lay, mode=m, device=device, eps=cfg.eps, op=op, op_params=v.text
                )
                for s, m, d, lay in itertools.product(v.shapes, cfg.modes, cfg.dtypes, cfg.layouts)
            ]
            if cfg.edge:
                found += edge_cases(op, device, cfg.layouts, cfg.eps, values=v.values)
    return found, skipped


def case_buffers(cfg: RunConfig, case: Case, rotation_bytes: int) -> memory.Buffers | None:
    """The case's input buffers as its worker will make them (None: they cannot fit --max-memory)."""
    return memory.plan_buffers(
        case.numel, case.itemsize, case.mode, device_kind(case.device) == "cpu", rotation_bytes,
        cfg.settings.warm_cache, cfg.max_memory_bytes,
    )  # fmt: skip


def too_big(cfg: RunConfig, case: Case) -> str:
    """Why a case cannot run under --max-memory, for its oom row."""
    ref = memory.reference_bytes(case.numel, case.mode)
    on_host = device_kind(case.device) == "cpu"
    held = memory.HELD_TENSORS[case.mode] * case.numel * case.itemsize if on_host else 0
    need, gib = memory.WORKER_BASE_BYTES + ref + held, 2**30
    return (
        f"needs about {need / gib:.1f} GiB (its float64 reference {ref / gib:.1f} GiB"
        f"{f', one input buffer {held / gib:.1f} GiB' if held else ''} and the worker's "
        f"{memory.WORKER_BASE_BYTES / gib:.0f} GiB), over --max-memory {cfg.max_memory_bytes / gib:.1f} GiB; "
        "not run"
    )


def make_plan(
    cfg: RunConfig,
    impls: dict[str, Impl],
    chosen: list[str],
    rotation: dict[str, int],
    caches: dict[str, int] | None = None,
) -> Plan:
    """Every (implementation, backend, case): a job of a worker group, or a row saying why not.
    `rotation` and `caches`: per device, the cold policy's rotation and the effective cache."""
    known = frameworks.frameworks()
    groups: dict[tuple[str, str | None, str], list[tuple[Case, str]]] = {}
    direct: list[Row] = []
    ops = plan_ops(cfg, impls, chosen)
    unplanned = unused_params(cfg.params, ops)
    for device in cfg.devices:
        device_cases, skipped = _cases(cfg, device, ops)
        unplanned += skipped
        for case in device_cases:
            fits = case_buffers(cfg, case, rotation.get(device, 0)) is not None
            for name in chosen:
                impl = impls[name]
                if impl.op != case.op:
                    continue  # another operator's case: not this implementation's to measure
                fw = known.get(impl.framework)
                group_backends = fw.expand(impl.backends) if fw else (None,)
                for backend in group_backends:
                    row_backend = fw.row_backend(impl.backends, backend) if fw else ""
                    reason = impl.unavailable or impl.unsupported_reason(case)
                    if not reason and fw and case.mode != "forward" and fw.no_autograd:
                        reason = fw.no_autograd
                    if not reason and fw:
                        reason = fw.missing(backend)
                    if reason:
                        direct.append(unrun_row(impl, row_backend, case, "unavailable", reason))
                        continue
                    if not fits:
                        direct.append(unrun_row(impl, row_backend, case, "oom", too_big(cfg, case)))
                        continue
                    groups.setdefault((impl.framework, backend, device), []).append((case, name))
    specs = [
        WorkerSpec(
            task="run",
            framework=fw_name,
            backend=backend,
            device=device,
            threads=cfg.threads,
            jobs=group_jobs(pairs),
            settings=cfg.settings,
            rotation_bytes=rotation.get(device, 0),
            effective_cache_bytes=(caches or {}).get(device, 0),
            max_memory_bytes=cfg.max_memory_bytes,
        )
        for (fw_name, backend, device), pairs in groups.items()
    ]
    return Plan(specs, direct, impls, ops, tuple(unplanned))


def max_rotation_bytes(device: str, max_memory: int = 0) -> int:
    """The most the cold policy rotates through. On a CPU a case holds its buffers twice (with their
    pristine copy) beside its float64 reference: 1/8 of RAM, and a quarter of --max-memory, which
    leaves a 1 GiB cache (3D V-Cache parts hold more) its 2 GiB on a 24 GiB machine. Each case's
    buffers are also fitted to --max-memory (`bench.memory.plan_buffers`); a row that rotates
    less than twice the cache says so in its cache state. A GPU's cache is its L2: 2 GiB."""
    if device_kind(device) != "cpu":
        return 2 << 30
    total = environment.total_memory_bytes()
    return min(total // 8, max_memory // 4) if max_memory else total // 8


def stop_summary(reasons: Counter[str], target_rel_ci: float) -> str:
    """`timed rows: 40 converged (median's 95 % CI within +-1 %), 3 on the time budget`: how many
    rows reached the noise target, and how many a budget cut short (their CI is in the row)."""
    what = {
        "converged": f"converged (median's 95 % CI within +-{target_rel_ci:.0%})",
        "max_time": "on the time budget (--max-time)",
        "max_samples": "on the sample cap",
    }
    order = [r for r in what if r in reasons] + sorted(set(reasons) - set(what))
    parts = [f"{reasons[r]} {what.get(r, r)}" for r in order]
    return "timed rows: " + ", ".join(parts)


def new_run_id() -> str:
    return environment.new_run_id()


class Run(Listener):
    """One `bench run`: its config, its results file, its progress. Lifecycle:

    `Run(cfg, out, ...)` -> `execute()`: discover implementations (probe workers), plan and keep
    this run's part (`part_of`: a shard, a cluster job's groups), drop what the file already holds
    (resume), write the sidecar, measure the copy bandwidth and the effective cache, then one
    WorkerClient per group (rows appended as they come), the copy again
    between groups and at the end. SIGINT/SIGTERM stop it between events, every row written kept.
    """

    def __init__(
        self,
        cfg: RunConfig,
        out: Path,
        *,
        resume_run: str | None = None,
        run_id: str | None = None,
        command: str = "",
        progress: Progress | None = None,
        clock: Callable[[], float] = time.monotonic,
        check_groups: bool = False,
    ) -> None:
        self.cfg = cfg
        if cfg.op_paths:  # its operators, for this process and its workers (a cluster job's too)
            operators.use_paths(cfg.op_paths)
        self.check_groups = (
            check_groups  # `--group` globs from a person: one that matches nothing is an error
        )
        self.out = out
        self.resume_run = resume_run
        self.command = command
        self.display = progress or for_stream(sys.stderr)
        self.say = self.display.say
        self.clock = clock
        self.run_id = resume_run or run_id or new_run_id()
        self.stop_signal: int | None = None
        self.lock_wait_s = 0.0  # how long to wait for another process measuring this run to end
        self.stop_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)  # each stops the run
        self.started = clock()
        self.written = 0  # rows written
        self.total = 0
        self.measured = 0  # rows from workers only: unavailable rows would flatter the ETA
        self.measured_total = 0
        self.measure_started: float | None = None
        self.group_statuses: Counter[str] = Counter()
        self.stop_reasons: Counter[str] = Counter()  # why each timed row stopped sampling
        self.done_keys: set[MeasurementKey] = set()
        self.stops: Counter[MeasurementKey] = Counter()  # stopped rows of this run, per measurement
        self.stopped_written = 0  # `stopped` rows this process wrote (a signal ended it mid-case)
        self.in_flight: dict[str, tuple[WorkerSpec, Begin]] = {}  # worker group -> its current phase
        self.case_rows: dict[Any, list[Row]] = {}
        self.env: dict[str, Any] = {}
        self.writer: ResultsWriter | None = None
        self.last_copy_at = 0.0
        self.copy_framework: str | None = None
        self.rotation: dict[str, int] = {}
        self.caches: dict[str, int] = {}  # effective cache per device, from the copy worker's probe
        self.copy_bytes: dict[str, int] = {}
        self.copiers: dict[str, CopyService] = {}
        self._impls: dict[str, Impl] = {}
        self._found: list[Source] = []

    # ---- planning --------------------------------------------------------------------------
    def discover(self) -> tuple[Discovery, list[str], list[Source]]:
        found = sources(list(self.cfg.impl_paths), list(self.cfg.impl_modules))
        wanted = select_impls(declared_names(found), self.cfg.impl_globs)  # fails fast, nothing probed
        self.display.update(0, None, "importing implementations")
        disc = discover(
            found,
            self.cfg.threads,
            self.cfg.limits,
            only=set(wanted),
            say=self.say,
            reuse=not self.cfg.reprobe,
        )
        for dup in disc.duplicates:
            self.say(f"warning: {dup.source}: {dup.unavailable}")
        chosen = select_impls(disc.impls, self.cfg.impl_globs)
        return disc, chosen, found

    # ---- running ---------------------------------------------------------------------------
    def execute(self) -> Path:
        """The run, holding its lock: no second normbench measures this run of this file at once."""
        lock = RunLock.for_results(self.out, self.run_id).acquire(self.lock_wait_s)
        try:
            return self._execute()
        finally:
            lock.release()

    def _execute(self) -> Path:
        cfg = self.cfg
        disc, chosen, found = self.discover()
        history = read_rows(self.out, history=True) if self.resume_run else []  # stopped rows counted
        existing = [r for r in history if r.run_id == self.run_id]
        self.done_keys = {r.key() for r in existing if r.status != "stopped"}  # a stopped one runs again
        self.stops = Counter(r.key() for r in existing if r.status == "stopped")
        self.env = self._new_env(disc, found)
        if self.check_groups and cfg.groups:
            shards.check_groups(make_plan(cfg, disc.impls, chosen, {}), cfg.groups)
        # What is left does not depend on the copy probe (the rotation only decides between a
        # measurement and an oom row of the same key): a finished run is said so before it starts.
        if self.resume_run and not any(self._remaining(self.part_of(make_plan(cfg, disc.impls, chosen, {})))):
            self.say(f"nothing to resume: every case of run {self.run_id} in {self.out} is measured")
            return self.out
        writer = self.writer = ResultsWriter(self.out)
        # The run's handlers stay until its last word: a second Ctrl-C while the workers stop, the
        # sidecar is written or the resume line is said only asks again to stop.
        previous = {s: signal.signal(s, self.on_signal) for s in self.stop_signals}
        try:
            return self._measure(disc, chosen, writer)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def say_unwitnessed(self) -> None:
        """A time budget too short for the parent to check what a row's clock claims, said once."""
        s = self.cfg.settings
        rounds = verify.rounds_to_judge(s.round_s)
        if s.max_time_s < rounds * s.round_s:
            self.say(
                f"note: --max-time {s.max_time_s:g} s ends a row before the {rounds} sampling rounds of "
                f"{s.round_s * 1e3:g} ms over which the parent holds its claimed time to the wall clock: a "
                "clock that lies can go unnoticed (every timed answer is still checked)"
            )

    def _measure(self, disc: Any, chosen: list[str], writer: ResultsWriter) -> Path:
        cfg = self.cfg
        try:
            self.write_env()
            self.measure_copy()
            plan = self.part_of(make_plan(cfg, disc.impls, chosen, self.rotation, self.caches))
            self.write_env()
            direct, groups = self._remaining(plan)
            self.measured_total = sum(len(j.impls) for g in groups for j in g.jobs)
            self.total = len(direct) + self.measured_total
            self.say(
                f"normbench run {self.run_id}: {self.total} measurements in {len(groups)} worker groups "
                f"-> {self.out}"
            )
            self.say_unwitnessed()
            self.display.start(self.total)
            for row in direct:
                self.write(row)
            for line in plan.unplanned:
                self.say(line)
            if direct:
                self.say(
                    f"not run: {len(direct)} rows unavailable (implementation not installed, or it does not "
                    "support the layout, mode or dtype; reasons in the report's Errors)"
                )
            self.measure_started = self.clock()
            for i, spec in enumerate(groups):
                if self.stop_signal:
                    break
                if i and self.clock() - self.last_copy_at > COPY_EVERY_S:
                    self.measure_copy()
                self.run_group(spec, plan.impls)
            if not self.stop_signal and self.clock() - self.last_copy_at > COPY_EVERY_S:
                self.measure_copy()  # the end of a long run (a short one's copy at its start holds)
        finally:
            self.display.stop()
            if self.stop_signal:
                self.write_stopped()
            self.env["finished"] = environment.now()
            self.env["interrupted"] = bool(self.stop_signal)
            self.env["gpu_end"] = environment.gpu_info()
            for copier in self.copiers.values():
                copier.close()
            failing = sys.exc_info()[1] is not None
            try:
                self.write_env()
            except BenchError:
                if not failing:  # the first error (a full disk, say) is the one to report
                    raise
            finally:
                writer.close()
        if self.stop_signal:
            name = signal.Signals(self.stop_signal).name
            stopped = f" ({self.stopped_written} of them stopped mid-case)" if self.stopped_written else ""
            self.say(
                f"interrupted by {name}: {self.written} of {self.total} rows{stopped} are in {self.out}; "
                f"resume with: python -m bench run --resume {self.out}"
            )
            raise KeyboardInterrupt(self.stop_signal)
        self.say(f"done: {self.written} rows in {self.out} ({self.clock() - self.started:.0f} s)")
        if self.stop_reasons:
            self.say(stop_summary(self.stop_reasons, self.cfg.settings.target_rel_ci))
        return self.out

    def part_of(self, plan: Plan) -> Plan:
        """What this run measures of the plan: all of it, a `--shard K/N`, or a cluster job's groups.
        The sidecar records the whole plan's identity, so `bench merge` knows shards of one sweep."""
        self.env["plan_id"] = shards.plan_id(self.cfg, plan)
        if self.cfg.shard:
            self.env["shard"] = self.cfg.shard
        if self.cfg.groups:
            self.env["groups"] = list(self.cfg.groups)
        order = [c.key() for device in self.cfg.devices for c in cases(self.cfg, device, plan.ops)]
        return shards.restrict(plan, order, shard=self.cfg.shard, groups=self.cfg.groups)

    def _remaining(self, plan: Plan) -> tuple[list[Row], list[WorkerSpec]]:
        """What of the plan the results file does not hold yet: its rows written directly, and its
        worker groups with only their missing measurements (groups left with none dropped)."""
        direct = [r for r in plan.direct if r.key() not in self.done_keys]
        groups = [g for g in (self._left(g) for g in plan.groups) if g.jobs]
        return direct, groups

    def _left(self, spec: WorkerSpec) -> WorkerSpec:
        fw = frameworks.get(spec.framework)
        pairs = []
        for job in spec.jobs:
            for name in job.impls:
                impl_backends = self._impls[name].backends if name in self._impls else fw.backends
                key = MeasurementKey(name, fw.row_backend(impl_backends, spec.backend), job.case.key())
                if key not in self.done_keys:
                    pairs.append((job.case, name))
        return replace(spec, jobs=group_jobs(pairs), sources=self._sources_for(spec))

    def _sources_for(self, spec: WorkerSpec) -> tuple[Source, ...]:
        names = {n for job in spec.jobs for n in job.impls}
        labels = {self._impls[n].source for n in names if n in self._impls}
        return tuple(s for s in self._found if s.label() in labels)

    def _new_env(self, disc: Discovery, found: list[Source]) -> dict[str, Any]:
        self._impls, self._found = disc.impls, found
        env = environment.collect(self.cfg, self.run_id, disc.impls, self.command)
        env["config"] = self.cfg.to_json()
        env["duplicates"] = [
            {"name": d.name, "source": d.source, "reason": d.unavailable} for d in disc.duplicates
        ]
        if self.resume_run:
            old = read_envs(self.out).get(self.run_id, {})
            resumed = old.get("resumed", []) + [{"started": env["started"], "command": self.command}]
            env = {**old, "resumed": resumed}
        return env

    def write_env(self) -> None:
        assert self.writer is not None
        with self.writer.locked():
            write_env(self.out, self.run_id, self.env)

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            return
        # Again while stopping: said without the display's lock (a handler may interrupt its holder)
        os.write(2, b"\nstopping already: the workers are being stopped and every row kept (a moment)\n")

    def should_stop(self) -> bool:
        return self.stop_signal is not None

    # ---- rows ------------------------------------------------------------------------------
    def complete(self, row: Row) -> Row:
        """The run's facts on a row: run id, machine, threads, settings, speed of light so far."""
        row = replace(
            row,
            run_id=self.run_id,
            machine=str(self.env.get("host", "")),
            threads=self.cfg.threads,
            settings=self.cfg.settings.key(),
        )
        if row.status == "ok" and row.time_median_s and row.ideal_bytes:
            gbps = row.ideal_bytes / row.time_median_s / 1e9
            row = replace(row, achieved_gbps=gbps, sol_fraction=stats.sol_fraction(gbps, row, self.env))
        return row

    def copy_gbps(self, device: str) -> float | None:
        samples = self.env.get("copy_gbps_samples", {}).get(device)
        return statistics.median(samples) if samples else None

    def write(self, row: Row) -> None:
        assert self.writer is not None
        row = self.complete(row)
        self.writer.write(row)
        if row.stop_reason:
            self.stop_reasons[row.stop_reason] += 1
        self.done_keys.add(row.key())
        self.written += 1
        self.display.update(self.written, self.eta_s())
        if self.cfg.fail_fast and row.status not in ("ok", "unavailable", "stopped"):
            raise BenchError(f"--fail-fast: {row.impl} {row.case_key().text()}: {row.status}: {row.message}")

    def eta_s(self) -> float | None:
        """Seconds left at the pace of the rows the workers have measured so far."""
        if not self.measured or self.measure_started is None:
            return None
        pace_s = (self.clock() - self.measure_started) / self.measured
        return pace_s * max(self.measured_total - self.measured, 0)

    # ---- the Listener side: events of the current group ------------------------------------
    def write_stopped(self) -> None:
        """A signal stopped the run: a `stopped` row for each measurement in flight, which --resume
        measures again. A measurement in flight at MAX_STOPS stops of one run (an implementation that
        signals normbench itself, or a case longer than the job's time limit) is not tried again."""
        for spec, event in self.in_flight.values():
            impl = self._impls.get(event.impl)
            if impl is None or event.case is None:
                continue
            backend = frameworks.get(spec.framework).row_backend(impl.backends, spec.backend)
            key = MeasurementKey(impl.name, backend, event.case)
            if key in self.done_keys:
                continue
            self.stops[key] += 1
            name = signal.Signals(self.stop_signal).name if self.stop_signal else "a signal"
            if self.stops[key] >= MAX_STOPS:
                status = "crashed"
                message = (
                    f"in flight at {self.stops[key]} stops of this run (the last by {name}, during "
                    f"{event.phase}); not tried again: measure it alone, or give the job more time"
                )
            else:
                status = "stopped"
                message = f"stopped by {name} during {event.phase}; --resume measures it again"
                self.stopped_written += 1
            self.write(unrun_row(impl, backend, event.case, status, message))
        self.in_flight.clear()

    def begin(self, spec: WorkerSpec, event: Begin) -> None:
        if event.impl and event.case is not None:
            self.in_flight[spec.label] = (spec, event)
        else:
            self.in_flight.pop(spec.label, None)
        if event.phase == "import":
            what = f"importing {event.source}"
        elif event.phase == "inputs":
            what = f"inputs of {event.case.text() if event.case else '?'}"
        elif event.phase == "limit":
            what = f"the speed of light of {event.case.text() if event.case else '?'} (a copy)"
        else:
            what = f"{event.impl} {event.case.text() if event.case else ''} ({event.phase})"
        self.display.update(self.written, self.eta_s(), f"{spec.label} {what}")

    def hello(self, spec: WorkerSpec, event: Hello) -> None:
        self.env.setdefault("versions", {}).update(event.versions)
        self.env.setdefault("device_names", {})[spec.device] = event.device_name

    def done(self, spec: WorkerSpec, event: Done) -> None:
        # CPU time over wall time: shows each framework kept to --threads.
        self.env.setdefault("workers", []).append(
            {
                "group": spec.label,
                "cpu_s": round(event.cpu_s, 2),
                "wall_s": round(event.wall_s, 2),
                "cpu_per_wall": round(event.cpu_s / max(event.wall_s, 1e-9), 3),
            }
        )

    def row(self, spec: WorkerSpec, row: Row) -> None:
        self.write(row)
        self.measured += 1
        self.group_statuses[row.status] += 1
        key = row.case_key()
        self.case_rows.setdefault(key, []).append(row)
        expected = next((len(j.impls) for j in spec.jobs if j.case.key() == key), 0)
        if len(self.case_rows[key]) >= expected:
            self.case_done(spec, self.case_rows.pop(key))

    def note(self, spec: WorkerSpec, message: str) -> None:
        self.say(message)

    def copy(self, spec: WorkerSpec, event: CopyResult) -> None:
        device = spec.device
        faulted = event.faults_per_mib > memory.FAULTS_PER_MIB_OK  # still paying fresh pages: not a limit
        if faulted:
            self.say(
                f"warning: {device}: the copy bandwidth paid {event.faults_per_mib:.2g} page faults per "
                f"MiB in {memory.COPY_TRIES} tries ({event.gbps:.1f} GB/s): not used"
            )
        else:
            self.env.setdefault("copy_gbps_samples", {}).setdefault(device, []).append(round(event.gbps, 3))
            self.env.setdefault("copy_gbps", {})[device] = round(self.copy_gbps(device) or 0.0, 3)
            self.env.setdefault("copy_method", {})[device] = f"{event.framework} copy"
        if event.cache is not None:
            self.env.setdefault("cache", {})[device] = event.cache
            self.env.setdefault("effective_cache_bytes", {})[device] = event.cache["effective_cache_bytes"]
            self.rotation[device] = int(event.cache["rotation_bytes"])
            self.caches[device] = int(event.cache["effective_cache_bytes"])
            self.say_cold_policy(device, event.cache)
            footprint = max(4 * int(event.cache["effective_cache_bytes"]), 512 << 20)
            self.copy_bytes[device] = min(footprint, self.copy_bytes[device])
            if not event.cache["cold_verified"]:
                rotation_mib = event.cache["rotation_bytes"] >> 20
                self.say(
                    f"warning: {device}: copies rotating through {rotation_mib} MiB still "
                    f"ran at {event.cache['cold_copy_gbps']:.1f} GB/s, over the DRAM plateau "
                    f"{event.cache['plateau_check_gbps']:.1f} GB/s "
                    "measured in turns with them: cold-cache times may be partly cache-resident"
                )
        self.say(f"copy bandwidth on {device}: {event.gbps:.1f} GB/s (read + write)")

    def say_cold_policy(self, device: str, cache: dict[str, Any]) -> None:
        """What the cold policy does on this machine, once per device: in the output and the
        sidecar (`rotation_short`), as the report says it."""
        effective, rotation = int(cache["effective_cache_bytes"]), int(cache["rotation_bytes"])
        cache["rotation_short"] = rotation < 2 * effective
        if self.cfg.settings.warm_cache:
            return
        given = " (given with --effective-cache)" if cache.get("given") else ""
        if cache["rotation_short"]:
            self.say(
                f"warning: {device}: twice the {effective >> 20} MiB effective cache{given} is over the "
                f"rotation budget, {rotation >> 20} MiB (1/8 of RAM, a quarter of --max-memory): rows "
                f"that rotate through less than {2 * effective >> 20} MiB are labelled partly cached or warm"
            )
        else:
            self.say(
                f"cold inputs on {device}: each case rotates through {rotation >> 20} MiB, twice the "
                f"{effective >> 20} MiB effective cache{given} (at most {memory.MAX_BUFFERS} buffers; "
                "each row's cache state says what it got)"
            )

    def case_done(self, spec: WorkerSpec, rows: list[Row]) -> None:
        """One line per finished case, every implementation's time: on a terminal only."""
        parts = []
        for r in rows:
            if r.input_kind != "random":
                parts.append(
                    f"{r.impl} {'safe' if r.correct else 'UNSAFE'}"
                    if r.status == "ok"
                    else f"{r.impl} {r.status}"
                )
            elif r.status == "ok" and r.time_median_s:
                parts.append(f"{r.impl} {r.time_median_s * 1e3:.3g} ms{'' if r.correct else ' WRONG'}")
            else:
                parts.append(f"{r.impl} {r.status}")
        self.display.case(f"{spec.label} {rows[0].case_key().text()}: " + ", ".join(parts))

    # ---- groups and the copy reference -----------------------------------------------------
    def run_group(self, spec: WorkerSpec, impls: dict[str, Impl]) -> None:
        log = self.out.with_name(self.out.name.removesuffix(".jsonl") + ".workers.log")
        started = self.clock()
        self.group_statuses = Counter()
        self.display.update(self.written, self.eta_s(), f"{spec.label}: starting a worker")
        try:
            WorkerClient(spec, impls, self, self.cfg.limits, log=log, should_stop=self.should_stop).run()
        finally:
            elapsed_s = self.clock() - started
            self.say(
                group_summary(spec.label, self.group_statuses, elapsed_s, interrupted=bool(self.stop_signal))
            )

    def measure_copy(self) -> None:
        """The speed-of-light reference: a large copy on each device, same threads, from one copy
        worker per device kept for the run. Its first copy also sweeps bandwidth against footprint
        for the effective cache (never during a timed call)."""
        ranked = sorted(frameworks.frameworks().values(), key=lambda fw: -fw.copy_priority)
        for device in self.cfg.devices:
            if device not in self.copiers:
                fw = next((f for f in ranked if f.copy_priority > 0 and not f.missing()), None)
                if fw is None:
                    self.say(f"warning: no installed framework measures the copy bandwidth on {device}")
                    continue
                cpu = device_kind(device) == "cpu"
                self.copy_bytes[device] = (
                    min(2 << 30, max(1 << 30, 16 * frameworks.cpu_cache_bytes())) if cpu else 4 << 30
                )
                spec = WorkerSpec(
                    task="copy",
                    framework=fw.name,
                    backend=None,
                    device=device,
                    threads=self.cfg.threads,
                    probe_cache=True,
                    reuse_sweep=not self.cfg.reprobe,
                    rotation_bytes=max_rotation_bytes(device, self.cfg.max_memory_bytes),
                    effective_cache_bytes=self.cfg.effective_cache_bytes,
                )
                self.copiers[device] = CopyService(spec, self)
            self.display.update(self.written, self.eta_s(), f"measuring the copy bandwidth on {device}")
            self.copiers[device].measure(self.copy_bytes[device])
        self.last_copy_at = self.clock()
        self.write_env()


def resume_config(out: Path) -> tuple[str, RunConfig]:
    """The last run in a results file and its config, for `--resume`."""
    envs = read_envs(out)
    rows = read_rows(out)
    run_id = rows[-1].run_id if rows else (list(envs)[-1] if envs else "")
    env = envs.get(run_id)
    if not env or "config" not in env:
        raise BenchError(
            f"--resume {str(out)!r}: its sidecar {out.name.removesuffix('.jsonl')}.env.json has no run "
            "configuration (written by an older normbench?); run again without --resume"
        )
    from bench.stored import run_config

    sidecar = f"{out.name.removesuffix('.jsonl')}.env.json"
    return run_id, run_config(env["config"], f"--resume {str(out)!r}: the run configuration in {sidecar}")


def config_differences(stored: RunConfig, given: dict[str, Any]) -> list[str]:
    """Options given again with --resume that differ from the stored run's, as `--opt value`."""
    out = []
    for name, value in given.items():
        # --max-time and --warm-cache live in the timing settings
        holder = stored.settings if name in ("max_time_s", "warm_cache") else stored
        have = getattr(holder, name)
        if isinstance(have, float) and isinstance(value, (int, float)):
            same = math.isclose(have, value)
        else:
            same = have == value
        if not same:
            out.append(
                f"{name}={json.dumps(value, default=str)} (the run has {json.dumps(have, default=str)})"
            )
    return out
