"""Plans the sweep, starts one worker per framework group, appends rows, survives their failures."""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import environment
from bench.cases import Case, CaseKey, MeasurementKey, preset_shapes
from bench.errors import BenchError
from bench.frameworks import cpu_cache_bytes
from bench.memory import rss_bytes
from bench.progress import Progress, for_stream, group_summary
from bench.reference import EDGE_CASES
from bench.registry import KERAS_BACKENDS, Impl, Source, sources
from bench.results import ResultsWriter, Row, read_env, read_rows, row_from_dict, write_env
from bench.timing import TimingSettings

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RunConfig:
    impl_globs: list[str] = field(default_factory=lambda: ["*"])
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    preset: str = "quick"
    shapes: list[tuple[int, int, int, int]] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=lambda: ["float32"])
    layouts: list[str] = field(default_factory=lambda: ["NCHW"])
    modes: list[str] = field(default_factory=lambda: ["forward"])
    threads: int = 0
    eps: float = 1e-5
    settings: TimingSettings = field(default_factory=TimingSettings)
    out: Path | None = None
    resume: Path | None = None
    impl_paths: list[str] = field(default_factory=list)
    impl_modules: list[str] = field(default_factory=list)
    case_timeout_s: float = 300.0
    max_memory_bytes: int = 0
    fail_fast: bool = False
    edge: bool = False
    command: str = ""


@dataclass
class Group:
    framework: str
    keras_backend: str | None
    device: str
    jobs: list[tuple[Case, list[str]]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.framework}{'-' + self.keras_backend if self.keras_backend else ''}/{self.device}"


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def keras_backends_present() -> list[str]:
    return [b for b in KERAS_BACKENDS if installed(b)]


def worker_env(threads: int, keras_backend: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    n = str(threads)
    # One thread count for every framework: OpenMP/MKL pools, TF's pools, XLA's Eigen pool.
    env.update(
        {
            "OMP_NUM_THREADS": n,
            "MKL_NUM_THREADS": n,
            "OPENBLAS_NUM_THREADS": n,
            "TF_NUM_INTRAOP_THREADS": n,
            "TF_NUM_INTEROP_THREADS": n,
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
    )
    if threads == 1:
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    if keras_backend:
        env["KERAS_BACKEND"] = keras_backend
    return env


class Worker:
    """A child process and its event pipe."""

    def __init__(self, spec: dict[str, Any], env: dict[str, str], log: Path | None) -> None:
        read_fd, write_fd = os.pipe()
        env = {**env, "NORMBENCH_EVENT_FD": str(write_fd)}
        self.log = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        # A new session: the terminal's Ctrl-C reaches the runner, which stops workers itself.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker"],
            stdin=subprocess.PIPE,
            stdout=self.log,
            stderr=self.log,
            pass_fds=(write_fd,),
            env=env,
            start_new_session=True,
            cwd=ROOT,
        )
        os.close(write_fd)
        self.fd = read_fd
        self.buffer = b""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(spec).encode())
        self.proc.stdin.close()

    def events(self, timeout_s: float) -> tuple[list[dict[str, Any]], bool]:
        """Events that arrived within timeout_s, and whether the pipe closed (the worker ended)."""
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return [], False
        chunk = os.read(self.fd, 1 << 20)
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()], not chunk

    def drain(self, timeout_s: float) -> list[dict[str, Any]]:
        """Every event until the worker ends or timeout_s passes (short one-shot tasks)."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        closed = False
        while not closed and time.monotonic() < deadline:
            events, closed = self.events(1.0)
            got += events
        return got

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own children (compile workers) too
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.close()

    def close(self) -> None:
        os.close(self.fd)
        if self.log is not subprocess.DEVNULL:
            self.log.close()  # type: ignore[union-attr]

    def exit_description(self) -> str:
        code = self.proc.wait()
        if code < 0:
            return f"worker killed by {signal.Signals(-code).name} (signal {-code})"
        return f"worker exited with code {code}"


def probe(found: list[Source], threads: int) -> dict[str, Any]:
    """Implementation metadata from one subprocess per framework: the parent imports none."""
    by_fw: dict[str, list[Source]] = {}
    for s in found:
        by_fw.setdefault(s.framework, []).append(s)

    def one(fw: str) -> tuple[str, list[dict[str, Any]]]:
        backend = None
        if fw == "keras":
            present = keras_backends_present()
            if not present:
                reason = "keras needs a backend; none of tensorflow, jax, torch is installed"
                return fw, [{"_unavailable_all": reason}]
            backend = present[0]
        spec = {
            "task": "probe",
            "framework": fw,
            "keras_backend": backend,
            "threads": threads,
            "sources": [list(asdict(s).values()) for s in by_fw[fw]],
        }
        w = Worker(spec, worker_env(threads, backend), None)
        got = [i for e in w.drain(300) if e["event"] == "probe" for i in e["impls"]]
        if not got:
            w.kill()
            return fw, [{"_unavailable_all": f"probe of {fw} implementations failed: {w.exit_description()}"}]
        w.proc.wait()
        w.close()
        return fw, got

    result: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for fw, infos in pool.map(one, by_fw):
            result[fw] = infos
    impls: list[Impl] = []
    for fw, infos in result.items():
        if infos and "_unavailable_all" in infos[0]:
            for s in by_fw[fw]:
                impls.append(
                    Impl(
                        name=s.stem,
                        framework=fw,
                        layouts=(),
                        std="?",
                        eps_at="?",
                        backends=(),
                        source=s.label(),
                        unavailable=infos[0]["_unavailable_all"],
                    )
                )
        else:
            impls += [Impl.from_info(i) for i in infos]
    return {i.name: i for i in impls}


def select_impls(all_impls: dict[str, Impl], globs: list[str]) -> list[Impl]:
    chosen: dict[str, Impl] = {}
    for g in globs:
        matched = [n for n in sorted(all_impls) if fnmatch.fnmatchcase(n, g)]
        if not matched:
            raise BenchError(f"--impl {g!r} matches no implementation; known: {', '.join(sorted(all_impls))}")
        chosen.update({n: all_impls[n] for n in matched})
    return list(chosen.values())


def unrun_row(impl: Impl, backend: str, case: Case, status: str, message: str) -> Row:
    """A row for a case no worker measured: unavailable, or a worker's failure."""
    return Row(
        impl=impl.name,
        framework=impl.framework,
        backend=backend,
        device=case.device,
        dtype=case.dtype,
        layout=case.layout,
        mode=case.mode,
        shape=case.shape,
        status=status,
        message=message,
        eps=case.eps,
        input_kind=case.input_kind,
        semantics_declared=impl.semantics if impl.layouts else "",
        ideal_bytes=case.ideal_bytes,
        source=impl.source,
    )


class Runner:
    def __init__(self, cfg: RunConfig, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self.display = progress or for_stream(sys.stderr)
        self.say = self.display.say
        self.stop_signal: int | None = None
        self.done = 0
        self.total = 0
        self.started = time.monotonic()
        # Rows from workers only: unavailable rows are written at once and would flatter the ETA.
        self.measured = 0
        self.measured_total = 0
        self.measure_started: float | None = None
        self.group_statuses: Counter[str] | None = None

    # ---- planning -------------------------------------------------------------------------
    def cases(self, device: str) -> list[Case]:
        cfg = self.cfg
        shapes = cfg.shapes or preset_shapes(cfg.preset, device)
        cases = [
            Case(shape=s, dtype=d, layout=lay, mode=m, device=device, eps=cfg.eps)
            for s, m, d, lay in itertools.product(shapes, cfg.modes, cfg.dtypes, cfg.layouts)
        ]
        if cfg.edge:
            cases += [
                Case(
                    shape=shape,
                    dtype=dtype,
                    layout=lay,
                    mode="forward",
                    device=device,
                    eps=cfg.eps,
                    input_kind=kind,
                )
                for kind, (shape, dtype) in EDGE_CASES.items()
                for lay in cfg.layouts
            ]
        return cases

    def plan(self, impls: list[Impl], present: list[str]) -> tuple[list[Group], list[Row]]:
        groups: dict[tuple[str, str | None, str], Group] = {}
        direct: list[Row] = []
        for device in self.cfg.devices:
            for case in self.cases(device):
                for impl in impls:
                    backends = impl.backends if impl.framework == "keras" else (None,)
                    for backend in backends:
                        row_backend = backend or (impl.backends or ("",))[0]
                        reason = impl.unavailable or impl.unsupported_reason(case)
                        if not reason and backend and backend not in present:
                            reason = f"keras backend {backend} is not installed"
                        if reason:
                            direct.append(unrun_row(impl, row_backend, case, "unavailable", reason))
                            continue
                        key = (impl.framework, backend, device)
                        group = groups.setdefault(key, Group(impl.framework, backend, device))
                        if group.jobs and group.jobs[-1][0] == case:
                            group.jobs[-1][1].append(impl.name)
                        else:
                            group.jobs.append((case, [impl.name]))
        return list(groups.values()), direct

    # ---- running --------------------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        found = sources(cfg.impl_paths, cfg.impl_modules)
        all_impls = probe(found, cfg.threads)
        impls = select_impls(all_impls, cfg.impl_globs)
        groups, direct = self.plan(impls, keras_backends_present())
        if cfg.resume:
            existing = read_rows(cfg.resume)
            run_id = existing[0].run_id if existing else environment.new_run_id()
            out = cfg.resume
        else:
            existing = []
            run_id = environment.new_run_id()
            out = cfg.out if cfg.out else ROOT / "results" / f"{run_id}.jsonl"
        self.run_id, self.out = run_id, out
        done_keys = {r.key() for r in existing}
        self.done_keys = done_keys
        direct = [r for r in (self.complete(r, {}) for r in direct) if r.key() not in done_keys]
        for g in groups:
            g.jobs = [
                (c, [n for n in names if self.key_of(all_impls[n], g, c) not in done_keys])
                for c, names in g.jobs
            ]
            g.jobs = [(c, names) for c, names in g.jobs if names]
        groups = [g for g in groups if g.jobs]
        self.measured_total = sum(len(n) for g in groups for _, n in g.jobs)
        self.total = len(direct) + self.measured_total
        if cfg.resume and self.total == 0:
            self.say(f"nothing to resume: every case in {out} is already measured")
            return out
        env = environment.collect(cfg, run_id, all_impls)
        if cfg.resume:
            env = {**read_env(out, run_id), "resumed": env}
        self.env = env
        self.writer = ResultsWriter(out)
        write_env(out, self.run_id, env)
        self.say(f"normbench run {run_id}: {self.total} measurements in {len(groups)} worker groups -> {out}")
        previous = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.display.start(self.total)
        try:
            self.display.update(self.done, None, "measuring copy bandwidth")
            self.measure_copy_bandwidth(all_impls)
            for row in direct:
                self.write(row)
            if direct:
                self.say(
                    f"not run: {len(direct)} rows unavailable (implementation not installed, or it does not "
                    "support the layout, mode or dtype; reasons in the report's Errors)"
                )
            self.measure_started = time.monotonic()
            for g in groups:
                if self.stop_signal:
                    break
                self.run_group(g, all_impls)
        finally:
            self.display.stop()
            for s, h in previous.items():
                signal.signal(s, h)
            env["finished"] = environment.now()
            env["interrupted"] = bool(self.stop_signal)
            env["gpu_end"] = environment.gpu_info()
            write_env(out, self.run_id, env)
            self.writer.close()
        if self.stop_signal:
            name = signal.Signals(self.stop_signal).name
            self.say(
                f"interrupted by {name}: {self.done} of {self.total} rows are in {out}; "
                f"resume with: python -m bench run --resume {out}"
            )
            raise KeyboardInterrupt
        self.say(f"done: {self.done} rows in {out} ({time.monotonic() - self.started:.0f} s)")
        return out

    def on_signal(self, signum: int, frame: Any) -> None:
        self.stop_signal = signum

    def key_of(self, impl: Impl, g: Group, case: Case) -> MeasurementKey:
        return MeasurementKey(impl.name, self.backend(impl, g), case.key())

    def complete(self, row: Row, extra: dict[str, Any]) -> Row:
        row = replace(
            row, run_id=self.run_id, threads=self.cfg.threads, settings=self.cfg.settings.key(), **extra
        )
        if row.status == "ok" and row.time_median_s and row.ideal_bytes:
            gbps = row.ideal_bytes / row.time_median_s / 1e9
            copy = self.env.get("copy_gbps", {}).get(row.device) if hasattr(self, "env") else None
            row = replace(row, achieved_gbps=gbps, sol_fraction=gbps / copy if copy else None)
        return row

    def write(self, row: Row) -> None:
        row = self.complete(row, {})
        self.writer.write(row)
        self.done_keys.add(row.key())
        self.done += 1
        if self.group_statuses is not None:
            self.group_statuses[row.status] += 1
            self.measured += 1
        self.display.update(self.done, self.eta_s())
        if self.cfg.fail_fast and row.status not in ("ok", "unavailable"):
            raise BenchError(
                f"--fail-fast: {row.impl} on {row.device} {row.shape}: {row.status}: {row.message}"
            )

    def measure_copy_bandwidth(self, impls: dict[str, Impl]) -> None:
        """The speed-of-light reference: a large copy on each device, in this run, same threads."""
        self.env.setdefault("copy_gbps", {})
        for device in self.cfg.devices:
            size = (1 << 30) if device.startswith("cuda") else max(4 * cpu_cache_bytes(), 256 << 20)
            for fw in ("torch", "jax", "tensorflow"):
                if not installed(fw):
                    continue
                spec: dict[str, Any] = {
                    "task": "copy",
                    "framework": fw,
                    "device": device,
                    "threads": self.cfg.threads,
                    "sources": [],
                    "copy_bytes": size,
                }
                w = Worker(spec, worker_env(self.cfg.threads), None)
                events = w.drain(120)
                w.kill()
                copy = [e for e in events if e["event"] == "copy"]
                if copy:
                    self.env["copy_gbps"][device] = round(copy[0]["gbps"], 3)
                    self.env.setdefault("copy_method", {})[device] = (
                        f"{copy[0]['framework']} copy of {size >> 20} MiB"
                    )
                    self.say(f"copy bandwidth on {device}: {copy[0]['gbps']:.1f} GB/s (read + write)")
                    break
        write_env(self.out, self.run_id, self.env)

    def eta_s(self) -> float | None:
        """Seconds left at the pace of the rows the workers have measured so far."""
        if not self.measured or self.measure_started is None:
            return None
        pace_s = (time.monotonic() - self.measure_started) / self.measured
        return pace_s * max(self.measured_total - self.measured, 0)

    def run_group(self, g: Group, impls: dict[str, Impl]) -> None:
        pending = [(c, list(n)) for c, n in g.jobs]
        log = self.out.with_name(self.out.name.replace(".jsonl", "") + ".workers.log")
        started = time.monotonic()
        self.group_statuses = Counter()
        try:
            while pending and not self.stop_signal:
                self.display.update(self.done, self.eta_s(), f"{g.label}: starting a worker")
                pending = self.run_worker(g, pending, impls, log)
        finally:
            statuses, self.group_statuses = self.group_statuses, None
            elapsed_s = time.monotonic() - started
            self.say(group_summary(g.label, statuses, elapsed_s, interrupted=bool(self.stop_signal)))

    def run_worker(
        self, g: Group, pending: list[tuple[Case, list[str]]], impls: dict[str, Impl], log: Path
    ) -> list[tuple[Case, list[str]]]:
        """One worker over `pending`; returns what is left if it died (minus the case that killed it)."""
        cfg = self.cfg
        spec = {
            "task": "run",
            "framework": g.framework,
            "keras_backend": g.keras_backend,
            "device": g.device,
            "threads": cfg.threads,
            "settings": asdict(cfg.settings),
            "sources": [list(asdict(s).values()) for s in sources(cfg.impl_paths, cfg.impl_modules)],
            "jobs": [{"case": asdict(c), "impls": n} for c, n in pending],
        }
        worker = Worker(spec, worker_env(cfg.threads, g.keras_backend), log)
        remaining = {(c.key(), n): (c, n) for c, names in pending for n in names}
        current: tuple[CaseKey, str, str] | None = None  # (case key, impl, phase)
        phase_started = time.monotonic()
        case_rows: dict[CaseKey, list[Row]] = {}
        failure: tuple[str, str] | None = None  # (status, message) for `current`
        while True:
            if self.stop_signal:
                worker.kill()
                return []
            events, closed = worker.events(0.2)
            for e in events:
                kind = e["event"]
                if kind == "hello":
                    self.env.setdefault("versions", {}).update(e["versions"])
                    self.env.setdefault("device_names", {})[g.device] = e["device_name"]
                elif kind == "done":
                    # CPU time over wall time: shows each framework kept to --threads.
                    self.env.setdefault("workers", []).append(
                        {
                            "group": g.label,
                            "cpu_s": round(e["cpu_s"], 2),
                            "wall_s": round(e["wall_s"], 2),
                            "cpu_per_wall": round(e["cpu_s"] / max(e["wall_s"], 1e-9), 3),
                        }
                    )
                elif kind == "begin":
                    current = (CaseKey.from_json(e["case"]), e["impl"], e["phase"])
                    phase_started = time.monotonic()
                    self.display.update(
                        self.done,
                        self.eta_s(),
                        f"{g.label} {e['impl']} {CaseKey.from_json(e['case']).text()} ({e['phase']})",
                    )
                elif kind == "row":
                    row = row_from_dict(e["row"])
                    remaining.pop((row.case_key(), row.impl), None)
                    self.write(row)
                    case_rows.setdefault(row.case_key(), []).append(row)
                    if not any(k[0] == row.case_key() for k in remaining):
                        self.case_done(g, case_rows.pop(row.case_key()))
                elif kind == "missing":
                    case, _ = remaining.pop((CaseKey.from_json(e["case"]), e["impl"]))
                    self.write(
                        unrun_row(
                            impls[e["impl"]],
                            self.backend(impls[e["impl"]], g),
                            case,
                            "error",
                            "implementation failed to import in the worker (see the workers log)",
                        )
                    )
                elif kind == "fatal":
                    for case, name in list(remaining.values()):
                        self.write(
                            unrun_row(
                                impls[name], self.backend(impls[name], g), case, "unavailable", e["message"]
                            )
                        )
                    remaining.clear()
                    self.say(f"{g.label}: {e['message']}")
            if closed:
                break
            if current and time.monotonic() - phase_started > cfg.case_timeout_s:
                failure = (
                    "timeout",
                    f"no progress for {cfg.case_timeout_s:g} s (--case-timeout) during "
                    f"{current[2]}; worker killed",
                )
                worker.kill()
                break
            if cfg.max_memory_bytes:
                try:
                    rss = rss_bytes(worker.proc.pid)
                except OSError:
                    rss = 0
                if rss > cfg.max_memory_bytes:
                    phase = current[2] if current else "start-up"
                    failure = (
                        "oom",
                        f"worker resident memory {rss / 2**30:.2f} GiB exceeded --max-memory "
                        f"{cfg.max_memory_bytes / 2**30:.2f} GiB during {phase}; worker killed",
                    )
                    worker.kill()
                    break
        if failure is None:
            worker.proc.wait()
            worker.close()
            if not remaining:
                return []
            failure = ("crashed", worker.exit_description() + (f" during {current[2]}" if current else ""))
        if current is None or (current[0], current[1]) not in remaining:
            # Died outside any implementation's phase: nothing to blame, so nothing can be retried safely.
            for case, name in remaining.values():
                self.write(
                    unrun_row(
                        impls[name],
                        self.backend(impls[name], g),
                        case,
                        "crashed",
                        failure[1] + " (before any implementation started)",
                    )
                )
            return []
        case, name = remaining.pop((current[0], current[1]))
        self.write(unrun_row(impls[name], self.backend(impls[name], g), case, failure[0], failure[1]))
        self.say(f"{g.label}: {name} {case.label()}: {failure[0]}: {failure[1]}")
        left: list[tuple[Case, list[str]]] = []
        for c, names in pending:
            keep = [n for n in names if (c.key(), n) in remaining]
            if keep:
                left.append((c, keep))
        return left

    @staticmethod
    def backend(impl: Impl, g: Group) -> str:
        return g.keras_backend if impl.framework == "keras" and g.keras_backend else impl.backends[0]

    def case_done(self, g: Group, rows: list[Row]) -> None:
        """One line per finished case, every implementation's time: on a terminal only."""
        r0 = rows[0]
        parts = []
        for r in rows:
            if r.input_kind != "random":
                parts.append(
                    f"{r.impl} {'safe' if r.correct else 'UNSAFE'}"
                    if r.status == "ok"
                    else f"{r.impl} {r.status}"
                )
            elif r.status == "ok" and r.time_median_s:
                flag = "" if r.correct else " WRONG"
                parts.append(f"{r.impl} {r.time_median_s * 1e3:.3g} ms{flag}")
            else:
                parts.append(f"{r.impl} {r.status}")
        kind = "" if r0.input_kind == "random" else f" edge:{r0.input_kind}"
        self.display.case(
            f"{g.label} {'x'.join(map(str, r0.shape))} {r0.dtype} {r0.layout} {r0.mode}{kind}: "
            + ", ".join(parts)
        )
