"""`bench run --executor local|slurm`: the sweep as submitit jobs, one per worker group (framework x
backend x device), each measuring its group exactly as `bench run` does on the node it lands on.

Lifecycle (`ClusterRun.execute`): discover and plan here as `bench run` does (nothing is measured
here), write FOLDER/submission.json, submit a job per worker group, follow them (a line per job as
its state or row count changes), write rows for what a job that died, was pre-empted or timed out
left unmeasured (`crashed`, `timeout` or `oom`, with the job's log tail), and merge the shards into
one results file (`bench.shards.merge`: each row keeps its machine). `--resume FOLDER` submits again
only the jobs whose groups miss measurements; each resumed job appends to its own shard.

A job (`run_job`) is a `Run` narrowed to its groups (`RunConfig.groups`): its own discovery of
just those implementations, its own copy bandwidth on its node, the same WorkerClient, rows
completed with the same run id (the submission's) and its node's host name, written to
FOLDER/shard-<group>.jsonl with a sidecar that records the submission's plan id.

GPUs. submitit's local executor sets CUDA_VISIBLE_DEVICES for every job to the first
`gpus_per_node` indices ("0" for each one-GPU job, so concurrent jobs would share GPU 0; "" with no
GPUs, hiding them all), replacing the parent's value instead of indexing into it, and its
`visible_gpus` takes integers only. So on a local multi-GPU box the parent keeps a pool of the
GPUs it sees (its CUDA_VISIBLE_DEVICES entries, or every GPU nvidia-smi lists), gives each GPU job
one of them and the job pins itself (`JobSpec.gpu`) before any worker starts: GPU groups run
concurrently, one per GPU. CPU groups run one at a time with nothing else running (`--cpu-jobs`
to allow more), since CPU timings disturb each other. On SLURM, the scheduler places jobs:
GPU jobs ask for `--gpus-per-job` GPUs (SLURM sets CUDA_VISIBLE_DEVICES), CPU jobs for a whole node.
Rows measured while another job of the submission ran on the same host are `concurrent=True`
(each running job keeps a marker in FOLDER/running; the report flags such rows).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from bench import environment, shards
from bench.cases import Case, MeasurementKey, device_kind
from bench.errors import BenchError
from bench.locks import RunLock
from bench.progress import Progress, for_stream
from bench.registry import Impl
from bench.results import ResultsWriter, Row, read_envs, read_rows, write_env
from bench.runner import ROOT, Plan, Run, RunConfig, make_plan
from bench.workers import unrun_row

MANIFEST = "submission.json"
MANIFEST_FORMAT = "normbench-submission/1"
EXECUTORS = ("local", "slurm")
LOG_TAIL_LINES = 3
# A job's end that is no implementation's doing: the scheduler or a person stopped it (scancel,
# pre-emption, its time limit, a node lost). Its unmeasured cases are `stopped`: --resume runs them.
STOP_STATES = ("CANCELLED", "PREEMPTED", "TIMEOUT", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "REQUEUED")
STOPPED_BY_SIGNAL = "stopped by a signal"
SLURM_LIVE = ("UNKNOWN", "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "SUSPENDED")
LOG_TAIL_CHARS = 400
JOB_LOCK_WAIT_S = 30.0  # a job waits this long for an earlier run of its shard (stopping) to end


@dataclass(frozen=True)
class ClusterOptions:
    """How jobs are submitted: the executor and the SLURM request. Stored in the manifest; given
    again with --resume, they replace the stored ones (a longer --time for the resubmitted jobs)."""

    executor: str = "local"
    partition: str | None = None
    constraint: str | None = None
    gpus_per_job: int = 1
    time_min: int = 120
    array_parallelism: int | None = None
    cpu_jobs: int = 1  # local: CPU jobs at once; 1: alone, one after another

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClusterOptions:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class JobSpec:
    """What one job needs (pickled by submitit): its config, narrowed to its groups, and where its
    shard goes."""

    cfg: RunConfig
    run_id: str
    plan_id: str
    label: str  # the job's worker group (it may also hold groups with nothing to measure)
    out: str
    gpu: str | None = None  # local executor: the GPU this job pins itself to
    running: str = ""  # folder of the running jobs' markers
    command: str = ""
    controller: str = ""  # local executor: "pid:start" of the submitting bench run, which the job dies with


# ---- the job side ----------------------------------------------------------------------------


class Marker:
    """A running job's file in FOLDER/running: host, pid, start, last row and end, so other jobs on
    the same host can tell whether they overlapped it."""

    def __init__(self, folder: Path, label: str, clock: Callable[[], float] = time.time) -> None:
        self.host, self.pid, self.clock = socket.gethostname(), os.getpid(), clock
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / f"{self.host}-{self.pid}.json"
        self.started = clock()
        self.record: dict[str, Any] = {
            "host": self.host,
            "pid": self.pid,
            "group": label,
            "started": self.started,
        }
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record))
        os.replace(tmp, self.path)

    def touch(self) -> None:
        os.utime(self.path)

    def end(self) -> None:
        self.record["ended"] = self.clock()
        self._write()

    def others_during(self, start: float, end: float) -> bool:
        """Whether another job on this host ran at some time in [start, end]."""
        for p in self.folder.glob("*.json"):
            if p == self.path:
                continue
            try:
                other = json.loads(p.read_text())
                mtime = p.stat().st_mtime
            except (OSError, ValueError):
                continue
            if other.get("host") != self.host:
                continue
            ended = other.get("ended")
            if ended is None:
                ended = self.clock() if _alive(int(other.get("pid", 0))) else mtime  # killed: its last row
            if float(other.get("started", 0)) <= end and float(ended) >= start:
                return True
        return False


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobRun(Run):
    """`Run` inside a job: the submission's plan id in the sidecar, the job's facts, and rows
    measured while another job ran on this host marked `concurrent`."""

    def __init__(self, job: JobSpec, marker: Marker, resume: bool) -> None:
        super().__init__(
            job.cfg,
            Path(job.out),
            resume_run=job.run_id if resume else None,
            run_id=job.run_id,
            command=job.command,
        )
        self.job = job
        self.marker = marker
        self.last_row_at = marker.started
        self.lock_wait_s = JOB_LOCK_WAIT_S
        # SLURM warns a job with SIGUSR2 (submitit's --signal) before its time limit or a pre-emption:
        # a stop like SIGTERM (the case in flight `stopped`), not submitit's requeue of the whole job
        self.stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def part_of(self, plan: Plan) -> Plan:
        part = super().part_of(plan)
        self.env["plan_id"] = self.job.plan_id
        self.env["job"] = {
            "group": self.job.label,
            "job_id": _job_id(),
            "executor": os.environ.get("SUBMITIT_EXECUTOR", ""),
            "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
        return part

    def complete(self, row: Row) -> Row:
        row = super().complete(row)
        now = self.marker.clock()
        overlapped = self.marker.others_during(self.last_row_at, now)
        self.last_row_at = now
        self.marker.touch()
        return replace(row, concurrent=True) if overlapped and row.status == "ok" else row


def process_start(pid: int) -> str:
    """A process's start time in clock ticks since boot ("" when it is gone, or dead and not yet
    reaped by its parent): a pid and its start name one process, even after the pid is reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    return "" if fields[0] in ("Z", "X") else fields[19]


def watch_controller(controller: str) -> None:
    """A local job ends with the `bench run` that submitted it, even one killed by SIGKILL: when the
    controller ("pid:start") is gone, the job stops itself as a signal would stop it (its workers
    killed, the case in flight `stopped`), so no process outlives normbench."""
    pid_text, start = controller.split(":", 1)
    pid = int(pid_text)

    def watch() -> None:
        while process_start(pid) == start:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="normbench-controller-watch", daemon=True).start()


def _job_id() -> str:
    """This job's id as the executor names it (`123_4` for an array's task), or "" outside a job."""
    try:
        import submitit

        return str(submitit.JobEnvironment().job_id)
    except Exception:  # not in a submitit job (a test calling run_job directly)
        return ""


def run_job(job: JobSpec) -> dict[str, Any]:
    """The submitit job: its groups' part of the sweep, measured as `bench run` measures it. A job
    started again (requeued after pre-emption, or by --resume) finishes its own shard."""
    if job.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = job.gpu
    if job.controller:
        watch_controller(job.controller)
    out = Path(job.out)
    resume = out.is_file() and any(r.run_id == job.run_id for r in read_rows(out))
    marker = Marker(Path(job.running), job.label)
    run = JobRun(job, marker, resume)
    try:
        run.execute()
    except KeyboardInterrupt:
        # submitit records an Exception as the job's error; a KeyboardInterrupt would leave nothing
        raise RuntimeError(f"{job.label}: {STOPPED_BY_SIGNAL} after {run.written} rows") from None
    finally:
        marker.end()
    return {"group": job.label, "rows": run.written, "host": socket.gethostname()}


# ---- the executor, behind the little the parent needs ----------------------------------------


class JobHandle(Protocol):
    job_id: str

    def state(self) -> str: ...
    def done(self) -> bool: ...
    def outcome(self) -> tuple[str, str]: ...  # ("ok" | "crashed" | "timeout" | "oom", why)
    def node(self) -> str: ...
    def cancel(self) -> None: ...


class Backend(Protocol):
    local: bool

    def submit(self, jobs: Sequence[JobSpec], gpu: bool) -> list[JobHandle]: ...


def log_tail(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return " | ".join(lines[-LOG_TAIL_LINES:])[-LOG_TAIL_CHARS:]


def squeue_state(job_id: str) -> tuple[str, str]:
    """A SLURM job's state and node from the controller itself (`squeue -t all`), for clusters whose
    job accounting is off: ("", "") while squeue cannot tell, ("ENDED", "") once the controller has
    forgotten the job (MinJobAge after its end)."""
    try:
        command = ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T %N"]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "", ""
    if proc.returncode != 0:
        return ("ENDED", "") if "Invalid job id" in proc.stderr else ("", "")
    fields = (proc.stdout.strip().splitlines() or ["ENDED"])[0].split()
    return fields[0], fields[1] if len(fields) > 1 else ""


def accounting_off() -> str:
    """Why SLURM's job accounting cannot be read here ("" when it can): sacct fails where it is off
    (AccountingStorageType=none, common on small clusters), and says so on every call."""
    try:
        proc = subprocess.run(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"], capture_output=True,
                              text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return "" if proc.returncode == 0 else log_tail(proc.stderr or proc.stdout) or f"exit {proc.returncode}"


class SubmititJob:
    """One submitted job. Where SLURM's accounting is off (`squeue_only`), states come from squeue
    and submitit's sacct-based watcher is never asked (it would print sacct's error on every poll)."""

    def __init__(self, job: Any, local: bool, squeue_only: bool = False) -> None:
        self.job = job
        self.job_id = str(job.job_id)
        self.local = local
        self.squeue_only = squeue_only and not local
        self.last_node = ""

    def state(self) -> str:
        if self.squeue_only:
            state, node = squeue_state(self.job_id)
            self.last_node = node or self.last_node
            return state or "UNKNOWN"
        state = str(self.job.state)
        if not self.local and state.upper() == "UNKNOWN":
            state = squeue_state(self.job_id)[0] or state
        return state

    def done(self) -> bool:
        if self.job.paths.result_pickle.exists():
            return True
        if not self.squeue_only and self.job.done():
            return True
        return not self.local and self.state().split()[0].upper() not in SLURM_LIVE

    def outcome(self) -> tuple[str, str]:
        state = self.state()
        first = state.split()[0].upper() if state.strip() else "UNKNOWN"
        if self.job.paths.result_pickle.exists():
            error = self.job.exception()
            if error is None:
                return "ok", ""
            text = str(error)
            if STOPPED_BY_SIGNAL in text or first in STOP_STATES:
                return "stopped", f"was stopped ({state}): {log_tail(text.split(STOPPED_BY_SIGNAL)[0])}"
            trace = text.split("-" * 22)[1] if text.count("-" * 22) >= 2 else text
            return "crashed", f"failed ({state}): {log_tail(trace)}"
        tail = log_tail(self.job.stderr())
        if first in STOP_STATES:
            return "stopped", f"was stopped ({state}) before it measured this{': ' + tail if tail else ''}"
        status = {"OUT_OF_MEMORY": "oom"}.get(first, "crashed")
        return status, f"ended without a result ({state}){': ' + tail if tail else ''}"

    def node(self) -> str:
        if self.local:
            return socket.gethostname()
        if self.squeue_only:
            return self.last_node
        try:
            return str(self.job.get_info(mode="cache").get("NodeList", ""))
        except Exception:  # a cluster tool's hiccup must not lose the rows
            return ""

    def cancel(self) -> None:
        try:
            self.job.cancel(check=False)
        except Exception:  # already gone
            pass


class SubmititBackend:
    """submitit's AutoExecutor, local or slurm; the SLURM request from ClusterOptions. One executor
    per submission: submitit's parameters accumulate, and a CPU job must not inherit a GPU request."""

    def __init__(self, opts: ClusterOptions, folder: Path, threads: int) -> None:
        try:
            import submitit
        except ImportError:
            raise BenchError("--executor needs submitit: pip install 'submitit==1.5.*'") from None
        self.submitit = submitit
        _quiet_submitit()
        self.opts = opts
        self.local = opts.executor == "local"
        self.logs = folder / "logs"
        self.threads = threads
        self.executor(gpu=False)  # no SLURM here is an error before anything is submitted
        self.squeue_only = False
        if not self.local:
            why = accounting_off()
            if why:
                self.squeue_only = True
                print(f"SLURM job accounting is off here (sacct: {why}): job states come from squeue",
                      file=sys.stderr)  # fmt: skip

    def executor(self, gpu: bool) -> Any:
        try:
            executor = self.submitit.AutoExecutor(folder=self.logs, cluster=self.opts.executor)
        except RuntimeError as exc:  # no srun: not a SLURM machine
            raise BenchError(f"--executor {self.opts.executor}: {exc}") from None
        executor.update_parameters(**self.parameters(gpu))
        return executor

    def parameters(self, gpu: bool) -> dict[str, Any]:
        params: dict[str, Any] = {
            "timeout_min": self.opts.time_min,
            "name": f"normbench-{'gpu' if gpu else 'cpu'}",
        }
        if self.local:
            return params  # GPUs: each job pins its own (see the module's docstring)
        params["cpus_per_task"] = self.threads
        if gpu:
            params["gpus_per_node"] = self.opts.gpus_per_job
        else:
            params["slurm_exclusive"] = True  # CPU timings need the node to themselves
        for name in ("partition", "constraint", "array_parallelism"):
            value = getattr(self.opts, name)
            if value is not None:
                params[f"slurm_{name}"] = value
        return params

    def submit(self, jobs: Sequence[JobSpec], gpu: bool) -> list[JobHandle]:
        executor = self.executor(gpu)
        try:
            with _importable():
                if len(jobs) > 1 and not self.local:
                    with executor.batch():  # a job array: --array-parallelism applies
                        submitted = [executor.submit(run_job, j) for j in jobs]
                else:
                    submitted = [executor.submit(run_job, j) for j in jobs]
        except Exception as exc:  # sbatch refused: a bad partition, a time over the limit
            detail = log_tail(str(exc) + "\n" + str(getattr(exc, "stderr", "") or ""))
            raise BenchError(f"--executor {self.opts.executor}: submission failed: {detail}") from None
        return [SubmititJob(s, self.local, self.squeue_only) for s in submitted]


class _OnceFilter(logging.Filter):
    """submitit warns "Bypassing sacct error" on every poll where sacct fails: the first is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in record.getMessage():
            return True
        first, self.seen = not self.seen, True
        if first:
            record.msg = f"{record.getMessage()} (said once; job states come from squeue)"
            record.args = ()
        return first


def _quiet_submitit() -> None:
    """submitit's logger writes each warning to stdout and to stderr; normbench's stdout is the
    results path alone (scripts read it), so its messages go to stderr only, each sacct error once."""
    logger = logging.getLogger("submitit")
    for handler in list(logger.handlers):
        out = getattr(handler, "stream", None) in (sys.stdout, sys.__stdout__)
        if handler.name == "submitit_out" or (isinstance(handler, logging.StreamHandler) and out):
            logger.removeHandler(handler)
    if not any(isinstance(f, _OnceFilter) for f in logger.filters):
        logger.addFilter(_OnceFilter())


@contextmanager
def _importable() -> Iterator[None]:
    """This checkout on PYTHONPATH while jobs are submitted: local jobs and sbatch (which exports
    the environment) start `python -m submitit...` wherever they start, and must import `bench`."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), before) if p)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def local_gpus() -> list[str]:
    """The GPUs a local submission spreads its GPU jobs over: CUDA_VISIBLE_DEVICES's entries
    (indices or UUIDs) when it is set, else every GPU nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()]
    return [str(i) for i in range(environment.cuda_device_count())]


# ---- the parent side -------------------------------------------------------------------------


Expected = tuple[Impl, str, Case] | Row  # how to write a row for a measurement a job left out


@dataclass
class PlannedJob:
    label: str
    labels: tuple[str, ...]
    device: str
    expected: dict[MeasurementKey, Expected]
    spec: JobSpec

    @property
    def gpu(self) -> bool:
        return device_kind(self.device) != "cpu"

    @property
    def shard_path(self) -> Path:
        return Path(self.spec.out)

    @property
    def failed_path(self) -> Path:
        return self.shard_path.with_name(self.shard_path.name.replace("shard-", "failed-", 1))


@dataclass
class Active:
    job: PlannedJob
    handle: JobHandle
    gpu: str | None
    state: str = ""
    rows: int = -1
    started: float = 0.0


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", label).strip("-")


@dataclass
class ClusterRun:
    """One `bench run --executor`. See the module's docstring for the lifecycle."""

    cfg: RunConfig
    opts: ClusterOptions
    folder: Path
    out: Path
    run_id: str
    command: str = ""
    resume: bool = False
    backend: Backend | None = None
    progress: Progress | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_s: float = 1.0
    report_every_s: float = 30.0
    gpus: list[str] | None = None  # local: the GPU pool (default: local_gpus())
    stop_signal: int | None = field(default=None, init=False)
    stopped: int = field(default=0, init=False)  # measurements left `stopped` at the end: resume them

    def __post_init__(self) -> None:
        self.display = self.progress or for_stream(sys.stderr)
        self.say = self.display.say

    # ---- planning ------------------------------------------------------------------------
    def plan(self) -> tuple[Plan, list[str]]:
        planner = Run(self.cfg, self.folder / "plan.jsonl", run_id=self.run_id, progress=self.display)
        disc, chosen, _ = planner.discover()
        # No cache probe here: rotation only decides which huge cases are `oom` rows, and each job
        # plans again on its node with its own.
        return make_plan(self.cfg, disc.impls, chosen, rotation={}), chosen

    def jobs_of(self, plan: Plan, chosen: list[str], plan_id: str) -> list[PlannedJob]:
        """One job per worker group that measures something; a group with nothing to measure (only
        unavailable rows) rides along with a job on its device, so the job's node decides."""
        labelled = shards.labelled_keys(plan)
        expected: dict[str, dict[MeasurementKey, Expected]] = {}
        device: dict[str, str] = {}
        for spec in plan.groups:
            device[spec.label] = spec.device
            mine = expected.setdefault(spec.label, {})
            cases = {job.case.key(): job.case for job in spec.jobs}
            for key, name in shards.spec_keys(spec, plan.impls):
                mine[key] = (plan.impls[name], key.backend, cases[key.case])
        direct = {r.key(): r for r in plan.direct}
        for label, key in labelled:
            if key in direct:
                expected.setdefault(label, {})[key] = direct[key]
                device.setdefault(label, key.case.device)
        measured = sorted(spec.label for spec in plan.groups)
        riders = sorted(label for label in expected if label not in measured)
        owners: dict[str, list[str]] = {label: [label] for label in measured or riders[:1]}
        for label in riders:
            if label in owners:
                continue
            owner = next((m for m in owners if device[m] == device[label]), next(iter(owners)))
            owners[owner].append(label)
        jobs = []
        running = str(self.folder / "running")
        for label, labels in owners.items():
            keys = {k: v for lab in labels for k, v in expected[lab].items()}
            names = {k.impl for k in keys}
            devices = {device[lab] for lab in labels}
            cfg = replace(
                self.cfg,
                impl_globs=tuple(n for n in chosen if n in names),
                devices=tuple(d for d in self.cfg.devices if d in devices),
                groups=tuple(labels),
            )
            out = str(self.folder / f"shard-{slug(label)}.jsonl")
            job = JobSpec(cfg, self.run_id, plan_id, label, out, running=running, command=self.command)
            jobs.append(PlannedJob(label, tuple(labels), device[label], keys, job))
        return jobs

    # ---- the manifest --------------------------------------------------------------------
    def write_manifest(
        self, plan_id: str, jobs: list[PlannedJob], submitted: dict[str, list[dict[str, Any]]]
    ) -> None:
        doc = {
            "format": MANIFEST_FORMAT,
            "run_id": self.run_id,
            "plan_id": plan_id,
            "config": self.cfg.to_json(),
            "options": self.opts.to_json(),
            "out": str(self.out),
            "command": self.command,
            "jobs": {
                j.label: {
                    "groups": list(j.labels),
                    "file": j.shard_path.name,
                    "submitted": submitted.get(j.label, []),
                }
                for j in jobs
            },
        }
        path = self.folder / MANIFEST
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=2, default=str))
            os.replace(tmp, path)
        except OSError as exc:
            raise BenchError(f"cannot write {path}: {exc.strerror or exc}") from None

    # ---- running -------------------------------------------------------------------------
    def execute(self) -> Path:
        """The submission, holding FOLDER's lock: one controller per jobs folder at a time."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = RunLock(self.folder / ".lock", f"submission {self.folder}").acquire()
        try:
            return self._execute()
        finally:
            lock.release()

    def _execute(self) -> Path:
        started = self.clock()
        plan, chosen = self.plan()
        plan_id = shards.plan_id(self.cfg, plan)
        previous = read_manifest(self.folder) if self.resume else None
        if previous is not None and previous.get("plan_id") != plan_id:
            raise BenchError(
                f"--resume {self.folder}: the plan differs from the submission's (implementations or "
                "frameworks changed since?); start a new submission"
            )
        jobs = self.jobs_of(plan, chosen, plan_id)
        submitted: dict[str, list[dict[str, Any]]] = {
            label: list(info.get("submitted", [])) for label, info in (previous or {}).get("jobs", {}).items()
        }
        todo = [j for j in jobs if self.missing(j)]
        for j in todo:
            j.failed_path.unlink(missing_ok=True)
            _sidecar(j.failed_path).unlink(missing_ok=True)
        self.write_manifest(plan_id, jobs, submitted)
        total = sum(len(j.expected) for j in jobs)
        if self.resume and not todo:
            self.say(f"nothing to resume: every measurement of {self.folder} is in its shards")
        else:
            self.say(
                f"normbench run {self.run_id}: {total} measurements in {len(jobs)} {self.opts.executor} jobs "
                f"({len(todo)} to run) -> {self.folder}"
            )
        previous_handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            if todo:
                self.follow(todo, plan_id, submitted, jobs)
        finally:
            for s, h in previous_handlers.items():
                signal.signal(s, h)
        paths = [p for j in jobs for p in (j.shard_path, j.failed_path) if p.is_file()]
        merged = (
            shards.merge(paths, self.out, config=self.cfg.to_json(), overwrite=True, say=self.say)
            if paths
            else []
        )
        rows = sum(m.rows for m in merged)
        machines = ", ".join(sorted({m.machine for m in merged if m.machine}))
        if self.stop_signal:
            name = signal.Signals(self.stop_signal).name
            self.say(
                f"interrupted by {name}: {rows} of {total} rows are in {self.out}; "
                f"resume with: python -m bench run --resume {self.folder}"
            )
            raise KeyboardInterrupt(self.stop_signal)
        elapsed_s = self.clock() - started
        self.say(f"done: {rows} rows from {len(jobs)} jobs ({machines}) in {self.out} ({elapsed_s:.0f} s)")
        self.stopped = sum(1 for r in read_rows(self.out) if r.status == "stopped") if merged else 0
        if self.stopped:
            self.say(
                f"incomplete: {self.stopped} measurements were stopped (a job cancelled, pre-empted or "
                f"out of time); resume with: python -m bench run --resume {self.folder}"
            )
        return self.out

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_signal = signum

    def shard_keys(self, job: PlannedJob) -> tuple[set[MeasurementKey], set[MeasurementKey]]:
        """What the job's shard holds of this run, read once: the measurements, and those its run
        recorded as `stopped` (a signal reached it mid-case) and did not measure later, which
        --resume measures again."""
        if not job.shard_path.is_file():
            return set(), set()
        rows = [r for r in read_rows(job.shard_path, lambda m: None) if r.run_id == self.run_id]
        measured = {r.key() for r in rows if r.status != "stopped"}
        return measured, {r.key() for r in rows if r.status == "stopped"} - measured

    def missing(self, job: PlannedJob, measured: set[MeasurementKey] | None = None) -> list[MeasurementKey]:
        have = self.shard_keys(job)[0] if measured is None else measured
        return [k for k in job.expected if k not in have]

    def follow(
        self,
        todo: list[PlannedJob],
        plan_id: str,
        submitted: dict[str, list[dict[str, Any]]],
        jobs: list[PlannedJob],
    ) -> None:
        """Submit, follow and finish the jobs. Local: GPU jobs first, one per free GPU, together;
        CPU jobs when nothing else runs (or up to --cpu-jobs at once). SLURM: everything at once."""
        backend = self.backend or SubmititBackend(self.opts, self.folder, self.cfg.threads)
        pending = sorted(todo, key=lambda j: not j.gpu)
        if backend.local:
            pool = list(self.gpus if self.gpus is not None else local_gpus())
            if any(j.gpu for j in pending) and not pool:
                raise BenchError("GPU jobs but no GPU on this machine for the local executor")
        active: list[Active] = []
        last_report = self.clock()

        def launch(batch: list[PlannedJob], gpus: list[str | None], gpu: bool) -> None:
            me = f"{os.getpid()}:{process_start(os.getpid())}" if backend.local else ""
            specs = [replace(j.spec, gpu=g, controller=me) for j, g in zip(batch, gpus)]
            try:
                handles = backend.submit(specs, gpu)
            except BenchError:
                self._stop(active)  # nothing half-submitted keeps running
                raise
            for j, g, h in zip(batch, gpus, handles):
                active.append(Active(j, h, g, started=self.clock()))
                submitted.setdefault(j.label, []).append(
                    {"job_id": h.job_id, "at": environment.now(), "gpu": g}
                )
                where = f" on GPU {g}" if g is not None else ""
                self.say(f"submitted job {h.job_id}: {j.label}{where} ({len(j.expected)} measurements)")
            self.write_manifest(plan_id, jobs, submitted)

        if not backend.local:
            for on_gpu in (True, False):
                batch = [j for j in pending if j.gpu == on_gpu]
                if batch:
                    launch(batch, [None] * len(batch), on_gpu)
            pending = []
        while pending or active:
            if self.stop_signal:
                self._stop(active)
                return
            if backend.local:
                for j in list(pending):
                    gpu = self._fits(j, active, pool)
                    if gpu is not False:
                        pending.remove(j)
                        launch([j], [gpu if isinstance(gpu, str) else None], j.gpu)
            for a in list(active):
                self._report(a)
                if a.handle.done():
                    active.remove(a)
                    self.finish(a)
            if self.clock() - last_report >= self.report_every_s:
                last_report = self.clock()
                for a in active:
                    self._report(a, always=True)
            if pending or active:
                self.sleep(self.poll_s)

    def _fits(self, job: PlannedJob, active: list[Active], pool: list[str]) -> str | bool | None:
        """The GPU to give `job` (a string), None for a CPU job that may start now, False: wait."""
        cpu_running = sum(1 for a in active if not a.job.gpu)
        alone = self.opts.cpu_jobs <= 1
        if job.gpu:
            if alone and cpu_running:
                return False
            used = {a.gpu for a in active}
            return next((g for g in pool if g not in used), False)
        if alone:
            return None if not active else False
        return None if cpu_running < self.opts.cpu_jobs else False

    def _report(self, a: Active, always: bool = False) -> None:
        state = a.handle.state()
        rows = _count_rows(a.job.shard_path)
        if state != a.state or (always and rows != a.rows):
            self.say(
                f"job {a.handle.job_id} {a.job.label}: {state}, {max(rows, 0)}/{len(a.job.expected)} rows"
            )
        a.state, a.rows = state, rows

    def _stop(self, active: list[Active]) -> None:
        for a in active:
            a.handle.cancel()
        deadline = self.clock() + 15.0
        while any(not a.handle.done() for a in active) and self.clock() < deadline:
            self.sleep(0.2)

    def finish(self, a: Active) -> None:
        """A job ended: its summary line, and rows for what it left unmeasured."""
        job = a.job
        status, why = a.handle.outcome()
        measured, stopped = self.shard_keys(job)
        missing = self.missing(job, measured)
        elapsed = self.clock() - a.started
        if not missing:
            self.say(f"job {a.handle.job_id} {job.label}: done, {len(job.expected)} rows, {elapsed:.0f} s")
            return
        if status == "ok":
            status, why = "crashed", "finished without measuring it (see its shard's workers log)"
        if stopped and status == "crashed":  # its own run recorded a stop: the job's end is a stop too
            status, why = "stopped", f"was stopped ({a.handle.state()}) before it measured this"
        unwritten = [k for k in missing if k not in stopped]  # the shard says nothing of these
        message = f"cluster job {a.handle.job_id} ({job.label}) {why}"
        rows = [self._row_for(job.expected[k], status, message) for k in unwritten]
        if rows:
            self.write_failed(job, a.handle, rows, status)
        done = len(job.expected) - len(missing)
        self.say(
            f"job {a.handle.job_id} {job.label}: {status}, {done}/{len(job.expected)} rows measured, "
            f"{len(missing)} {status} rows written; resume with: "
            f"python -m bench run --resume {self.folder}"
        )

    def _row_for(self, what: Expected, status: str, message: str) -> Row:
        if isinstance(what, Row):
            return what  # needs no worker: the plan's own row stands
        impl, backend, case = what
        return unrun_row(impl, backend, case, status, message)

    def write_failed(self, job: PlannedJob, handle: JobHandle, rows: list[Row], status: str) -> None:
        """FOLDER/failed-<group>.jsonl: merged like a shard, left out by --resume (which measures
        those cases again)."""
        env = read_envs(job.shard_path).get(self.run_id, {}) if job.shard_path.is_file() else {}
        machine = str(env.get("host") or handle.node() or "")
        path = job.failed_path
        writer = ResultsWriter(path)
        try:
            for r in rows:
                writer.write(
                    replace(
                        r,
                        run_id=self.run_id,
                        machine=machine,
                        threads=self.cfg.threads,
                        settings=self.cfg.settings.key(),
                    )
                )
        finally:
            writer.close()
        failed_env = {
            "run_id": self.run_id,
            "host": machine,
            "plan_id": job.spec.plan_id,
            "failed_job": {
                "job_id": handle.job_id,
                "group": job.label,
                "status": status,
                "state": handle.state(),
            },
        }
        write_env(path, self.run_id, failed_env)


def _sidecar(path: Path) -> Path:
    from bench.results import env_path

    return env_path(path)


_STOPPED_ROW = re.compile(rb'"status"\s*:\s*"stopped"')


def _count_rows(path: Path) -> int:
    """Rows measured so far in a job's shard (for its progress line): `stopped` ones are not."""
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip() and not _STOPPED_ROW.search(line))
    except OSError:
        return -1


def read_manifest(folder: Path) -> dict[str, Any]:
    """A submission folder's manifest; BenchError when the folder is not one."""
    path = folder / MANIFEST
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        raise BenchError(
            f"--resume {str(folder)!r}: no {MANIFEST} in it (not a `bench run --executor` folder)"
        ) from None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BenchError(f"--resume {str(folder)!r}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise BenchError(f"--resume {str(folder)!r}: {MANIFEST} is not a normbench submission")
    return doc
