"""The parent side of a worker process: its spec, typed events, the process, and one supervision loop.

`run`, `check` and the pytest-benchmark front end all measure through `WorkerClient`, so the same
fault gives the same row whichever front end met it. The child side is bench/worker.py.

Protocol. The parent starts `python -m bench.worker` in a new session (its own process group),
writes one `WorkerSpec` as JSON on its stdin and reads events, one JSON object per line, from a
socket named by NORMBENCH_EVENT_FD (a Unix SOCK_SEQPACKET pair: the kernel stamps each message
with the time it was sent, a clock no implementation can reach and one that a parent which reads
late does not move). Before every phase that could crash or hang, the child sends
`Begin` (importing a source, creating a case's inputs, an implementation's build, first call,
check, warm-up, memory, sampling), so the parent knows whom to blame.

Supervision (`WorkerClient.run`): no event for the phase's timeout is `timeout`; resident memory
over the limit is `oom`; the worker's death is `crashed`. The blamed unit gets its rows (an
implementation on a case; every implementation of a case whose inputs could not be made; every
implementation of a source that could not be imported) and a new worker takes what is left. A
worker that dies before its first `Begin` cannot be blamed on anything: its jobs get rows and
nothing is retried. When a worker ends, for whatever reason, its whole process group is killed:
nothing it started outlives it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from bench import frameworks, operators
from bench.cases import Case, CaseKey, MeasurementKey
from bench.memory import CpuReading, cpu_reading, steady_env
from bench.registry import Impl, ProbeMemo, Source, unavailable_impl
from bench.results import Row, row_from_dict
from bench.timing import TimingSettings
from bench.verify import Verifier

ROOT = Path(__file__).resolve().parent.parent
LOG_CAP_BYTES = 64 << 20  # a worker log past this keeps only its last LOG_KEEP_BYTES
LOG_KEEP_BYTES = 1 << 20
STOP_GRACE_S = 2.0  # a worker dead of a stop's signal: how long to wait for the run's own handler
# What a stop sends every process: Ctrl-C, scancel or a time limit (SIGTERM, SIGKILL after the grace
# time), a scheduler's warning (SIGUSR2). A worker dead of one may be part of a stop, not a crash.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGUSR2)


# ---- the spec: what one worker group does --------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One case and the implementations measured on it, in order."""

    case: Case
    impls: tuple[str, ...]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs; frozen, and one JSON encoding each way.

    task: "probe" (import sources, report their implementations), "run" (measure), "check"
    (correctness only) or "copy" (the speed-of-light copy bandwidth, optionally the cache sweep).
    """

    task: str
    framework: str
    backend: str | None  # the group's backend, for frameworks with one worker group per backend
    device: str = "cpu"
    threads: int = 1
    sources: tuple[Source, ...] = ()
    jobs: tuple[Job, ...] = ()
    settings: TimingSettings = field(default_factory=TimingSettings)
    require_correct: bool = False  # a wrong output is not timed (pytest front end)
    rotation_bytes: int = 0  # cold policy: inputs rotate through at least this many bytes (0: 2x cache)
    effective_cache_bytes: int = 0  # what the run's probe found: a row's cache state is judged against it
    max_memory_bytes: int = 0  # --max-memory: a case's buffers fit beside its reference (0: no limit)
    copy_bytes: int = 0  # task "copy": footprint of the copy
    probe_cache: bool = False  # task "copy": also sweep bandwidth against footprint
    reuse_sweep: bool = False  # task "copy": take this machine's sweep of the last day when there is one

    @property
    def label(self) -> str:
        return f"{self.framework}{'-' + self.backend if self.backend else ''}/{self.device}"

    def to_json(self) -> str:
        d = asdict(self)
        d["sources"] = [s.to_json() for s in self.sources]
        d["jobs"] = [{"case": asdict(j.case), "impls": list(j.impls)} for j in self.jobs]
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        d = json.loads(text)
        d["sources"] = tuple(Source.from_json(s) for s in d["sources"])
        d["jobs"] = tuple(
            Job(Case(**{**j["case"], "shape": tuple(j["case"]["shape"])}), tuple(j["impls"]))
            for j in d["jobs"]
        )
        d["settings"] = TimingSettings(**d["settings"])
        return cls(**d)


def group_jobs(pairs: Iterable[tuple[Case, str]]) -> tuple[Job, ...]:
    """(case, impl) pairs in order -> Jobs, consecutive pairs of one case sharing a Job."""
    jobs: list[Job] = []
    for case, name in pairs:
        if jobs and jobs[-1].case == case:
            jobs[-1] = Job(case, (*jobs[-1].impls, name))
        else:
            jobs.append(Job(case, (name,)))
    return tuple(jobs)


# ---- events: child -> parent ---------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    pid: int
    versions: dict[str, str]
    device_name: str


@dataclass(frozen=True)
class Begin:
    """A phase starts. import: `source` (a label); inputs: `case`; the others: `impl` and `case`."""

    phase: str
    impl: str = ""
    case: CaseKey | None = None
    source: str = ""


@dataclass(frozen=True)
class RowEvent:
    row: dict[str, Any]


@dataclass(frozen=True)
class Probed:
    """One source imported: the implementations it registered (Impl.info() dicts)."""

    source: str
    impls: list[dict[str, Any]]


@dataclass(frozen=True)
class CopyResult:
    framework: str
    device_name: str
    gbps: float
    cache: dict[str, Any] | None = None  # CacheProbe.as_env() when the sweep was asked for
    faults_per_mib: float = 0.0  # page faults its timed passes paid (bench.memory.FAULTS_PER_MIB_OK)


@dataclass(frozen=True)
class Sample:
    """Values of an output at `bench.verify.sample_index(shape, round_no)`, for the parent to check:
    after the first call, after each sampling round (the round's last timed call, with the time the
    round claimed), and again after one more call ("held": an output still unchanged)."""

    impl: str
    case: CaseKey
    when: str  # "first" | "timed" | "held"; or "claim": a round's claimed time, no values
    buffer: int
    round_no: int
    y: list[float] | None = None
    dx: list[float] | None = None
    claimed_s: float = 0.0


@dataclass(frozen=True)
class Unloaded:
    """A source the probe imported failed to import in this worker: its implementations get rows."""

    source: str
    reason: str


@dataclass(frozen=True)
class Fatal:
    """The group cannot run at all here (framework missing, no such device): every job unavailable."""

    message: str


@dataclass(frozen=True)
class Done:
    cpu_s: float
    wall_s: float


Event = Hello | Begin | RowEvent | Probed | CopyResult | Unloaded | Fatal | Done | Sample
EVENTS: dict[str, type] = {
    "hello": Hello,
    "begin": Begin,
    "row": RowEvent,
    "probed": Probed,
    "copy": CopyResult,
    "unloaded": Unloaded,
    "fatal": Fatal,
    "done": Done,
    "sample": Sample,
}
EVENT_NAMES = {cls: name for name, cls in EVENTS.items()}


def encode(event: Event) -> bytes:
    d = asdict(event)
    if isinstance(event, (Begin, Sample)) and event.case is not None:
        d["case"] = event.case.to_json()
    return (json.dumps({"event": EVENT_NAMES[type(event)], **d}, default=_json_default) + "\n").encode()


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def decode(line: bytes) -> Event:
    d = json.loads(line)
    cls = EVENTS[d.pop("event")]
    if cls in (Begin, Sample) and d.get("case") is not None:
        d["case"] = CaseKey.from_json(d["case"])
    event: Event = cls(**d)
    return event


# ---- the process ------------------------------------------------------------------------------


def worker_env(spec: WorkerSpec) -> dict[str, str]:
    """The environment of a worker: one thread count for every library, the framework's own
    settings (backend, thread pools), the allocator's steady state, and this checkout importable."""
    env = dict(os.environ)
    env.update(frameworks.thread_env(spec.threads))
    env.update(frameworks.get(spec.framework).env(spec.threads, spec.backend))
    if spec.task in ("run", "check"):
        env.update(steady_env())
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# The event socket: each message at most this long (the worker cuts a longer event's line into
# several; a Unix SOCK_SEQPACKET message must fit the socket's send buffer, ~208 KiB by default),
# and the kernel's send time of each, as SO_TIMESTAMPNS ancillary data (struct timespec).
EVENT_MESSAGE_BYTES = 64 << 10
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; Python 3.11 lacks the name
TIMESTAMP_CMSG = (socket.SOL_SOCKET, SO_TIMESTAMPNS)
TIMESTAMP_SPACE = socket.CMSG_SPACE(16)


class WorkerHandle(Protocol):
    """What the supervision loop needs from a worker; `WorkerProcess` is the real one."""

    pid: int

    def events(self, timeout_s: float) -> tuple[list[Event], bool]: ...
    def sent_at(self, event: Event) -> float | None: ...
    def rss_bytes(self) -> int: ...
    def cpu(self) -> CpuReading | None: ...
    def kill(self) -> None: ...
    def killed_by_stop_signal(self) -> bool: ...
    def exit_description(self) -> str: ...
    def log_tail(self) -> str: ...


class WorkerProcess:
    """A child process, its event socket and its slice of the log."""

    def __init__(self, spec: WorkerSpec, log: Path | None, keep_stdin: bool = False) -> None:
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        child.shutdown(socket.SHUT_RD)
        self.sock.shutdown(socket.SHUT_WR)
        write_fd = child.fileno()
        env = {**worker_env(spec), "NORMBENCH_EVENT_FD": str(write_fd)}
        self.log_path = log
        self.log_start = log.stat().st_size if log and log.exists() else 0
        self.log = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        # A new session: the terminal's Ctrl-C reaches the parent, which stops workers itself,
        # and killing the group takes down whatever the worker started.
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
        child.close()
        self.pid = self.proc.pid
        self.fd = self.sock.fileno()
        self.buffer = b""
        self.closed = False
        self.sent: dict[int, float] = {}  # id(event) -> when its last message was sent (realtime)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(spec.to_json().encode() + b"\n")  # the spec is the first line
            if keep_stdin:  # more requests follow, one JSON line each (the copy service)
                self.proc.stdin.flush()
            else:
                self.proc.stdin.close()
        except BrokenPipeError:  # died at once; the loop sees the exit
            pass

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()

    def events(self, timeout_s: float) -> tuple[list[Event], bool]:
        """Events that arrived within timeout_s, and whether the worker has ended.

        The end is the process's exit, not the socket's EOF: a child the worker forked may hold the
        socket open for ever."""
        self.sent = {}
        return self._read(timeout_s)

    def _read(self, timeout_s: float) -> tuple[list[Event], bool]:
        got: list[Event] = []
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        while ready:
            chunk, ancillary, _, _ = self.sock.recvmsg(EVENT_MESSAGE_BYTES + 1, TIMESTAMP_SPACE)
            if not chunk:
                self.closed = True
                break
            sent = next(
                (s + ns / 1e9 for level, kind, data in ancillary if (level, kind) == TIMESTAMP_CMSG
                 for s, ns in [struct.unpack("qq", data[:16])]),
                None,
            )  # fmt: skip
            self.buffer += chunk
            *lines, self.buffer = self.buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    got.append(decode(line))
                    if sent is not None:
                        self.sent[id(got[-1])] = sent
            ready, _, _ = select.select([self.fd], [], [], 0)
        ended = self.closed or self.proc.poll() is not None
        if ended and not self.closed:
            ready, _, _ = select.select([self.fd], [], [], 0.05)  # what it wrote just before exiting
            if ready:
                more, _ = self._read(0)
                got += more
        self._cap_log()
        return got, ended

    def sent_at(self, event: Event) -> float | None:
        """When the worker sent an event of the last `events` (the kernel's realtime stamp)."""
        return self.sent.get(id(event))

    def rss_bytes(self) -> int:
        from bench.memory import rss_bytes

        try:
            return rss_bytes(self.pid)
        except OSError:
            return 0

    def cpu(self) -> CpuReading | None:
        return cpu_reading(self.pid)

    def kill(self) -> None:
        """Kill the worker's whole process group (compile workers, forked children), then reap it."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        if self.fd >= 0:
            self.sock.close()
            self.fd = -1
        if self.log is not subprocess.DEVNULL:
            self.log.close()  # type: ignore[union-attr]
            self.log = subprocess.DEVNULL

    def killed_by_stop_signal(self) -> bool:
        """Dead of a signal a stop sends to every process (not SIGSEGV and the like: its own doing)."""
        return -self.proc.wait() in STOP_SIGNALS

    def exit_description(self) -> str:
        code = self.proc.wait()
        if code < 0:
            return f"worker killed by {signal.Signals(-code).name} (signal {-code})"
        return f"worker exited with code {code}"

    def log_tail(self) -> str:
        """The last line this worker wrote to its log (a Python traceback's last line says what)."""
        if not self.log_path or not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(min(self.log_start, f.seek(0, os.SEEK_END)))
            text = f.read()[-8192:].decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""

    def _cap_log(self) -> None:
        if self.log_path and cap_log(self.log_path):
            self.log_start = 0


def cap_log(path: Path, cap_bytes: int = LOG_CAP_BYTES, keep_bytes: int = LOG_KEEP_BYTES) -> bool:
    """Keep a workers log under `cap_bytes`: past it, only its last `keep_bytes` stay (after a line
    saying so). Safe while a worker appends (O_APPEND writes land at the new end). True if cut."""
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if size <= cap_bytes:
        return False
    with open(path, "r+b") as f:
        f.seek(size - keep_bytes)
        tail = f.read()
        f.seek(0)
        f.truncate()
        f.write(f"[normbench: log over {cap_bytes >> 20} MiB, earlier output dropped]\n".encode() + tail)
    return True


# ---- supervision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    case_timeout_s: float = 300.0  # no event for this long during a measurement phase: timeout
    import_timeout_s: float = 120.0  # the same while the worker starts or imports a source
    max_memory_bytes: int = 0  # worker resident memory limit (0: none)


class Listener:
    """What the supervision loop reports; override what you need."""

    def begin(self, spec: WorkerSpec, event: Begin) -> None: ...
    def hello(self, spec: WorkerSpec, event: Hello) -> None: ...
    def done(self, spec: WorkerSpec, event: Done) -> None: ...
    def row(self, spec: WorkerSpec, row: Row) -> None: ...
    def probed(self, spec: WorkerSpec, impls: list[Impl]) -> None: ...
    def copy(self, spec: WorkerSpec, event: CopyResult) -> None: ...
    def note(self, spec: WorkerSpec, message: str) -> None: ...


# What a row claims about time: none of it stands when its clock was caught lying.
TIMING_FIELDS = (
    "time_median_s", "time_iqr_s", "time_min_s", "time_rel_iqr", "time_rel_ci", "latency_median_s",
    "achieved_gbps", "sol_fraction", "default_alloc_time_median_s",
)  # fmt: skip


def caught_row(row: Row, status: str, message: str) -> Row:
    """A row the parent caught: "wrong" keeps its measurement but can never count as correct;
    "error" (its clock lied) keeps no time."""
    if status == "wrong":
        return replace(row, correct=False, message=message)
    if status == "note":
        return replace(row, message=f"{row.message}; {message}" if row.message else message)
    timing: dict[str, Any] = {name: None for name in TIMING_FIELDS}
    return replace(row, status=status, message=message, samples_s=(), n_samples=0, correct=None, **timing)


def unrun_row(impl: Impl, backend: str, case: Case | CaseKey, status: str, message: str) -> Row:
    """A row for a measurement no worker produced: unavailable, or a worker's failure."""
    key = case.key() if isinstance(case, Case) else case
    return Row(
        impl=impl.name,
        framework=impl.framework,
        backend=backend,
        device=key.device,
        dtype=key.dtype,
        layout=key.layout,
        mode=key.mode,
        shape=key.shape,
        status=status,
        message=message,
        eps=case.eps if isinstance(case, Case) else 0.0,
        input_kind=key.input_kind,
        op=key.op,
        op_params=key.op_params,
        roles=impl.roles,
        compiled_from=impl.compiled_from or "",
        semantics_declared=impl.semantics if impl.layouts else "",
        ideal_bytes=case.ideal_bytes if isinstance(case, Case) else None,
        source=impl.source,
    )


Spawn = Callable[[WorkerSpec, Path | None], WorkerHandle]
MEASURING = ("build", "first_call", "check", "warmup", "memory", "sample", "timing", "edge")


class WorkerClient:
    """Runs one spec to the end through as many worker processes as its failures need.

    Lifecycle: `run()` starts a worker on what is left, feeds its events to the listener, and on a
    failure writes the blamed unit's rows and starts the next worker; it returns when every job
    has a row (or the spec's sources are all probed), or when `should_stop()` turns true.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        impls: dict[str, Impl],
        listener: Listener,
        limits: Limits = Limits(),  # noqa: B008  frozen
        log: Path | None = None,
        spawn: Spawn = WorkerProcess,
        clock: Callable[[], float] = time.monotonic,
        should_stop: Callable[[], bool] = lambda: False,
        poll_s: float = 0.2,
    ) -> None:
        self.spec = spec
        self.impls = impls
        self.listener = listener
        self.limits = limits
        self.log = log
        self.spawn = spawn
        self.clock = clock
        self.should_stop = should_stop
        self.poll_s = poll_s
        self.fw = frameworks.get(spec.framework)
        self.cases = {job.case.key(): job.case for job in spec.jobs}
        # What is left: measurements in order, and (task probe) sources not yet reported.
        self.remaining: dict[tuple[CaseKey, str], None] = {
            (job.case.key(), name): None for job in spec.jobs for name in job.impls
        }
        self.unprobed: list[Source] = list(spec.sources) if spec.task == "probe" else []
        self.sources = list(spec.sources)
        self.restarts = 0
        # Outputs of timed calls and claimed times, judged here, where no implementation runs.
        self.verifier = Verifier(clock, {n: i.semantics for n, i in impls.items() if i.semantics})

    def backend_of(self, name: str) -> str:
        impl = self.impls.get(name)
        return self.fw.row_backend(impl.backends if impl else self.fw.backends, self.spec.backend)

    def _fail(self, key: CaseKey, name: str, status: str, message: str) -> None:
        if (key, name) not in self.remaining:
            return
        del self.remaining[(key, name)]
        impl = self.impls[name]
        self.listener.row(self.spec, unrun_row(impl, self.backend_of(name), self.cases[key], status, message))

    def _left(self) -> WorkerSpec:
        if self.spec.task == "probe":
            return replace(self.spec, sources=tuple(self.unprobed))
        pairs = [(self.cases[k], n) for k, n in self.remaining]
        return replace(self.spec, sources=tuple(self.sources), jobs=group_jobs(pairs))

    def _work_left(self) -> bool:
        return bool(self.unprobed) if self.spec.task == "probe" else bool(self.remaining)

    def run(self) -> None:
        first = True
        while (first or self._work_left()) and not self.should_stop():
            first = False
            if not self._one_worker(self._left()):
                break
            self.restarts += 1

    def _one_worker(self, spec: WorkerSpec) -> bool:
        """One worker process over `spec`; True when a failure was blamed and a restart may help."""
        proc = self.spawn(spec, self.log)
        current: Begin | None = None
        started = False
        last_event = self.clock()
        failure: tuple[str, str] | None = None
        fatal: str | None = None
        try:
            while True:
                # A stop still takes what the worker wrote before it: the Begin of the phase a
                # signal caught (its `stopped` row names it, and counts towards MAX_STOPS), a row.
                stopping = self.should_stop()
                events, ended = proc.events(0 if stopping else self.poll_s)
                if events:
                    last_event = self.clock()
                for event in events:
                    if isinstance(event, Begin):
                        current, started = event, True
                        self._verify_begin(event, proc)
                        self.listener.begin(spec, event)
                    elif isinstance(event, Sample):
                        sent = proc.sent_at(event) if event.when == "claim" else None
                        # the worker's threads' time (a /proc read per thread) only where the kernel
                        # did not stamp the claim: with stamps it is not the witness
                        cpu = proc.cpu() if event.when == "claim" and sent is None else None
                        self.verifier.sample(event.case, event.impl, event, cpu, sent)
                    elif isinstance(event, RowEvent):
                        self._row(spec, event)
                    elif isinstance(event, Hello):
                        started = True
                        self.listener.hello(spec, event)
                    elif isinstance(event, Done):
                        self.listener.done(spec, event)
                    elif isinstance(event, Probed):
                        self._probed(spec, event)
                    elif isinstance(event, CopyResult):
                        self.listener.copy(spec, event)
                    elif isinstance(event, Unloaded):
                        self._unloaded(event)
                    elif isinstance(event, Fatal):
                        fatal = event.message
                if stopping:
                    return False
                if ended:
                    break
                measuring = current is not None and current.phase in MEASURING
                timeout = self.limits.case_timeout_s if measuring else self.limits.import_timeout_s
                if self.clock() - last_event > timeout:
                    option = "--case-timeout" if measuring else "--import-timeout"
                    where = self._where(current)
                    failure = ("timeout", f"no progress for {timeout:g} s ({option}){where}; worker killed")
                    break
                if self.limits.max_memory_bytes:
                    rss, limit = proc.rss_bytes(), self.limits.max_memory_bytes
                    if rss > limit:
                        failure = (
                            "oom",
                            f"worker resident memory {rss / 2**30:.2f} GiB exceeded --max-memory "
                            f"{limit / 2**30:.2f} GiB{self._where(current)}; worker killed",
                        )
                        break
        finally:
            proc.kill()
        if fatal is not None:
            for key, name in list(self.remaining):
                self._fail(key, name, "unavailable", fatal)
            self.unprobed.clear()
            self.listener.note(spec, fatal)
            return False
        if failure is None:
            if not self._work_left():
                return False
            if proc.killed_by_stop_signal() and self._stopping():
                return False  # one signal to every process: the run stops; nothing is the worker's doing
            desc = proc.exit_description()
            if desc.endswith("code 0"):  # a clean exit that skipped jobs: nothing to retry
                for key, name in list(self.remaining):
                    self._fail(
                        key, name, "error", "the worker ended without measuring it (see the workers log)"
                    )
                return False
            tail = proc.log_tail()
            failure = ("crashed", desc + self._where(current) + (f": {tail}" if tail else ""))
        return self._blame(spec, current, started, failure)

    def _stopping(self) -> bool:
        """Whether the run is being stopped, waiting a moment for its own signal handler: the worker
        may die of a signal sent to every process before the parent's handler has run."""
        deadline = time.monotonic() + STOP_GRACE_S
        while not self.should_stop():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    @staticmethod
    def _where(current: Begin | None) -> str:
        if current is None:
            return " during start-up"
        if current.phase == "import":
            return f" while importing {current.source}"
        if current.phase == "inputs":
            return f" while creating the inputs of {current.case.text() if current.case else '?'}"
        return f" during {current.phase} of {current.impl}"

    def _blame(
        self, spec: WorkerSpec, current: Begin | None, started: bool, failure: tuple[str, str]
    ) -> bool:
        status, message = failure
        if current is None or not started:
            # Nothing to blame: a restart would fail the same way.
            for key, name in list(self.remaining):
                self._fail(key, name, status, message)
            for source in self.unprobed:
                self.listener.probed(spec, [unavailable_impl(source, self.spec.framework, message)])
            self.unprobed.clear()
            self.listener.note(spec, f"{spec.label}: {message}")
            return False
        if current.phase == "import":
            return self._blame_source(spec, current.source, status, message)
        if current.phase in ("inputs", "limit") and current.case is not None:  # the case's own, no impl's
            for key, name in list(self.remaining):
                if key == current.case:
                    self._fail(key, name, status, message)
            self.listener.note(spec, f"{spec.label}: {current.case.text()}: {status}: {message}")
            return True
        if current.case is not None and (current.case, current.impl) in self.remaining:
            self._fail(current.case, current.impl, status, message)
            self.listener.note(
                spec, f"{spec.label}: {current.impl} {current.case.text()}: {status}: {message}"
            )
            return True
        for key, name in list(self.remaining):  # blamed on something already done: do not loop
            self._fail(key, name, status, message)
        return False

    def _blame_source(self, spec: WorkerSpec, label: str, status: str, message: str) -> bool:
        source = next((s for s in self.sources if s.label() == label), None)
        if source is None:
            return False
        self.sources.remove(source)
        message = message.replace(f" while importing {label}", "")
        reason = f"importing it {'hung' if status == 'timeout' else 'killed the worker'}: {message}"
        self.listener.note(spec, f"{spec.label}: {source.label()}: {reason}")
        if self.spec.task == "probe":
            self.unprobed = [s for s in self.unprobed if s.label() != label]
            names = [d.name for d in source.declared if d.framework == self.spec.framework] or [source.stem]
            self.listener.probed(
                spec, [unavailable_impl(source, self.spec.framework, reason, name) for name in names]
            )
            return True
        for key, name in list(self.remaining):
            impl = self.impls.get(name)
            if impl is not None and impl.source == label:
                self._fail(key, name, "error", reason)
        return True

    def _row(self, spec: WorkerSpec, event: RowEvent) -> None:
        try:
            row = row_from_dict(event.row)
        except (ValueError, TypeError) as exc:
            row = None
            problem = str(exc)
        if row is None:
            d = event.row
            what = (d["device"], d["dtype"], d["layout"], d["mode"], tuple(d["shape"]), d["input_kind"])
            key = CaseKey(*what, d.get("op", operators.DEFAULT), d.get("op_params", ""))  # the row's own case
            self._fail(key, d["impl"], "error", f"the worker sent a row that does not validate: {problem}")
            return
        self.remaining.pop((row.case_key(), row.impl), None)
        caught = self.verifier.judge(row.case_key(), row.impl) if row.status == "ok" else None
        if caught is not None and not (
            caught[0] == "wrong" and row.correct is False
        ):  # its own reason stands
            row = caught_row(row, *caught)
        self.listener.row(spec, row)

    def _verify_begin(self, event: Begin, proc: WorkerHandle) -> None:
        if event.case is None:
            return
        if event.phase == "inputs" and event.case in self.cases and self.spec.task in ("run", "check"):
            self.verifier.inputs(self.cases[event.case])
        elif event.phase == "timing":
            sent = proc.sent_at(event)
            self.verifier.round_begins(event.case, event.impl, proc.cpu() if sent is None else None, sent)

    def _unloaded(self, event: Unloaded) -> None:
        for key, name in list(self.remaining):
            impl = self.impls.get(name)
            if impl is not None and impl.source == event.source:
                self._fail(key, name, "error", f"failed to import in the worker: {event.reason}")

    def _probed(self, spec: WorkerSpec, event: Probed) -> None:
        self.unprobed = [s for s in self.unprobed if s.label() != event.source]
        self.listener.probed(spec, [Impl.from_info(i) for i in event.impls])


class CopyService:
    """The speed-of-light copy worker, kept alive for a whole run: the first request also sweeps
    bandwidth against footprint (the effective cache); later ones are one large copy each, with no
    framework import. A failed or hung request is a note; the next request starts a new worker."""

    def __init__(self, spec: WorkerSpec, listener: Listener, timeout_s: float = 120.0) -> None:
        self.spec = spec
        self.listener = listener
        self.timeout_s = timeout_s
        self.proc: WorkerProcess | None = None

    def measure(self, copy_bytes: int) -> bool:
        """One copy bandwidth (the sweep first, when this is a new worker); True when measured."""
        if self.proc is None:
            self.proc = WorkerProcess(replace(self.spec, copy_bytes=copy_bytes), None, keep_stdin=True)
        else:
            try:
                self.proc.send({"copy_bytes": copy_bytes})
            except (BrokenPipeError, OSError):
                self.close()
                return self.measure(copy_bytes)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            events, ended = self.proc.events(0.2)
            for event in events:
                if isinstance(event, CopyResult):
                    self.listener.copy(self.spec, event)
                    return True
                if isinstance(event, Fatal):
                    self.listener.note(self.spec, f"copy bandwidth not measured: {event.message}")
                    self.close()
                    return False
            if ended:
                break
        why = "timed out" if time.monotonic() >= deadline else self.proc.exit_description()
        self.listener.note(self.spec, f"copy bandwidth not measured on {self.spec.device}: {why}")
        self.close()
        return False

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc = None


# ---- one call for front ends that just want rows ----------------------------------------------


class Collector(Listener):
    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.rows: list[Row] = []
        self.versions: dict[str, str] = {}
        self.impls: list[Impl] = []
        self.copies: list[CopyResult] = []
        self.say = say

    def row(self, spec: WorkerSpec, row: Row) -> None:
        self.rows.append(row)

    def hello(self, spec: WorkerSpec, event: Hello) -> None:
        self.versions.update(event.versions)

    def probed(self, spec: WorkerSpec, impls: list[Impl]) -> None:
        self.impls += impls

    def copy(self, spec: WorkerSpec, event: CopyResult) -> None:
        self.copies.append(event)

    def note(self, spec: WorkerSpec, message: str) -> None:
        if self.say:
            self.say(message)


def groups_of(
    pairs: Iterable[tuple[Impl, str | None, Case]],
) -> dict[tuple[str, str | None, str], list[tuple[Case, str]]]:
    """(impl, group backend, case) -> worker groups keyed (framework, backend, device), in order."""
    groups: dict[tuple[str, str | None, str], list[tuple[Case, str]]] = {}
    for impl, backend, case in pairs:
        groups.setdefault((impl.framework, backend, case.device), []).append((case, impl.name))
    return groups


# ---- discovery: what every source registers, from one probe worker per framework --------------


@dataclass
class Discovery:
    """The implementations found, by name, and those that lost a name clash (reported, not run)."""

    impls: dict[str, Impl] = field(default_factory=dict)
    duplicates: list[Impl] = field(default_factory=list)


def discover(
    found: list[Source],
    threads: int,
    limits: Limits = Limits(),  # noqa: B008  frozen
    only: set[str] | None = None,
    say: Callable[[str], None] | None = None,
    reuse: bool = True,
) -> Discovery:
    """Probe the sources (only those declaring a name in `only`, when given), one probe worker per
    framework, in parallel. A source that kills or hangs its probe is the only casualty: it becomes
    unavailable with the reason, and a new probe takes the remaining sources. With `reuse`, what
    the probe memo knows of an unchanged source is used instead of importing it again."""
    from concurrent.futures import ThreadPoolExecutor

    memo = ProbeMemo() if reuse else None

    chosen = [s for s in found if only is None or {d.name for d in s.declared} & only or s.problem]
    by_fw: dict[str, list[Source]] = {}
    broken: list[Impl] = []
    known = frameworks.frameworks()
    for s in chosen:
        if s.problem:
            broken.append(unavailable_impl(s, "", s.problem))
        for fw_name in s.frameworks:
            by_fw.setdefault(fw_name, []).append(s)

    def one(fw_name: str) -> list[Impl]:
        fw = known[fw_name]
        group = by_fw[fw_name]
        backend = next((b for b in fw.expand(fw.backends) if b and not fw.missing(b)), None)
        reason = fw.missing(backend) or (
            f"{fw_name} needs a backend; none of {', '.join(fw.backends)} is installed"
            if fw.expand(fw.backends) != (None,) and backend is None
            else None
        )
        if reason:
            names = [(s, d.name) for s in group for d in s.declared if d.framework == fw_name]
            return [unavailable_impl(s, fw_name, reason, name) for s, name in names]
        keys = {s.label(): memo.key(s, fw_name, backend) if memo else None for s in group}
        known_impls = {s.label(): memo.load(keys[s.label()], s, fw_name) if memo else None for s in group}
        todo = [s for s in group if known_impls[s.label()] is None]
        impls = [i for s in group for i in known_impls[s.label()] or []]
        if not todo:
            return impls
        collector = Collector(say)
        spec = WorkerSpec(
            task="probe", framework=fw_name, backend=backend, threads=threads, sources=tuple(todo)
        )
        WorkerClient(spec, {}, collector, limits).run()
        for s in todo:
            # by name: a source that imports another reports that one's implementations too
            mine = list({i.name: i for i in collector.impls if i.source == s.label()}.values())
            key = keys[s.label()]
            if key and ProbeMemo.complete(s, fw_name, mine):
                learnt[key] = mine
        return impls + collector.impls

    learnt: dict[str, list[Impl]] = {}  # filled by the probe threads, saved once
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, by_fw))
    if memo:
        memo.save(learnt)
    found_impls = broken + [i for r in results for i in r]
    order = {s.label(): k for k, s in enumerate(found)}
    found_impls.sort(key=lambda i: order.get(i.source, len(order)))
    out = Discovery()
    for impl in found_impls:
        first = out.impls.get(impl.name)
        if first is None:
            out.impls[impl.name] = impl
        elif first.source != impl.source:
            where = first.source.replace("file ", "", 1)
            out.duplicates.append(
                replace(
                    impl,
                    unavailable=f"duplicate name {impl.name!r}: {where} registers it first; rename this one",
                    builder=None,
                )
            )
    return out


def run_jobs(
    jobs: list[tuple[Impl, str | None, Case]],
    found: list[Source],
    *,
    task: str,
    threads: int,
    settings: TimingSettings | None = None,
    require_correct: bool = False,
    limits: Limits = Limits(),  # noqa: B008  frozen
    say: Callable[[str], None] | None = None,
) -> Collector:
    """Rows for (implementation, group backend, case) jobs, in job order: one WorkerClient per
    worker group, the same supervision as `bench run` (no resume, no sweep). For `check` and the
    pytest-benchmark front end."""
    import tempfile

    impls = {impl.name: impl for impl, _, _ in jobs}
    collector = Collector(say)
    for (fw_name, backend, device), pairs in groups_of(jobs).items():
        labels = {impls[name].source for _, name in pairs}
        spec = WorkerSpec(
            task=task,
            framework=fw_name,
            backend=backend,
            device=device,
            threads=threads,
            sources=tuple(s for s in found if s.label() in labels),
            jobs=group_jobs(pairs),
            settings=settings or TimingSettings(),
            require_correct=require_correct,
        )
        if say:
            say(f"{spec.label}: {len(pairs)} cases")
        with tempfile.NamedTemporaryFile(prefix="normbench-worker-", suffix=".log") as log:
            WorkerClient(spec, impls, collector, limits, log=Path(log.name)).run()
    fw = frameworks.frameworks()
    order = {
        MeasurementKey(i.name, fw[i.framework].row_backend(i.backends, b), c.key()): k
        for k, (i, b, c) in enumerate(jobs)
    }
    collector.rows.sort(key=lambda r: order.get(r.key(), len(order)))
    return collector
