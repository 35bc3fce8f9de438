"""Row, schema version and migration, validation on read, and results files: JSONL (one object per
line, appended), their env sidecar, and pytest-benchmark JSON written by the benchmarks/ front end.

Results files are user data: a newer normbench reads every older schema (migrating each row on
read), validates every field's type, and skips what it cannot use with one warning per bad line
(a count past the first few), so a damaged or foreign file never ends in a traceback.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bench import operators
from bench.cases import CaseKey, MeasurementKey
from bench.errors import BenchError

SCHEMA_VERSION = 4  # bump on any change to Row; say why in CHANGELOG.md
ENV_SCHEMA_VERSION = 2
# "stopped": a signal to the whole run (Ctrl-C, scancel, a time limit) ended it while this was
# measured; not a result: --resume measures it again, and a later row of the same key replaces it.
STATUSES = ("ok", "error", "oom", "timeout", "crashed", "unavailable", "stopped")
MAX_WARNINGS = 5  # per file; the rest are counted, not printed
# No timed call lasts 11 days (--case-timeout bounds a case): a larger time is a file's error, and
# plotting or comparing it would overflow.
MAX_TIME_S = 1e6
TIME_FIELDS = ("time_median_s", "time_iqr_s", "time_min_s", "latency_median_s", "first_call_s",
               "default_alloc_time_median_s")  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One implementation on one backend for one case: what was measured, how, and how correct."""

    impl: str
    framework: str
    backend: str  # what it ran on: "eager", "compile", "jit", or the backend of a multi-backend framework
    device: str  # "cpu" | "cuda:0"
    dtype: str
    layout: str
    mode: str
    shape: tuple[int, int, int, int]  # logical N, C, H, W whatever the layout
    status: str  # one of STATUSES
    message: str = ""
    schema_version: int = SCHEMA_VERSION
    run_id: str = ""
    machine: str = ""  # host name of the machine that measured it (merged files hold several)
    device_name: str = ""
    threads: int = 0
    eps: float = 0.0
    input_kind: str = "random"  # or one of its operator's edge cases: checked, not timed
    op: str = operators.DEFAULT  # the operator computed (bench/operators/)
    op_params: str = ""  # its parameters besides eps, "name=value" joined by "," (bench.cases.Case)
    settings: str = ""  # measurement settings (budgets, cache policy)
    # what the implementation declared at registration, carried so the report reads facts, not names
    roles: tuple[str, ...] = ()  # e.g. "article" (a snippet of the article), "baseline"
    compiled_from: str = ""  # the eager implementation this one compiles, for break-even
    concurrent: bool = False  # measured while another job ran on the same machine
    # timing: time_* is the device's own time (on CPU, the call latency); seconds per call
    timer: str = ""  # "host" | "cuda_event"
    time_median_s: float | None = None
    time_iqr_s: float | None = None
    time_min_s: float | None = None
    time_rel_iqr: float | None = None
    time_rel_ci: float | None = None  # half-width of the median's 95 % CI over the median
    n_samples: int = 0
    samples_s: tuple[float, ...] = ()  # raw; every statistic can be recomputed from them
    calls_per_sample: int = 0
    stop_reason: str = ""  # "converged" | "max_time" | "max_samples"
    latency_median_s: float | None = None  # what a user waits for one call, dispatch and sync included
    first_call_s: float | None = None  # compile/trace included
    cache_policy: str = ""  # what was asked: "cold" (rotate inputs through 2x the effective cache) | "warm"
    buffers: int = 0
    rotated_bytes: int = 0  # distinct input bytes one pass over the buffers reads
    cache_state: str = ""  # what it got: "cold" | "partly cached" | "warm" (bench.memory.cache_state)
    faults_per_call: float | None = None  # minor page faults per timed call (whole worker process)
    major_faults_per_call: float | None = None
    # CPU outputs over glibc's mmap ceiling: the same call in a default process's allocator state
    default_alloc_time_median_s: float | None = None
    default_alloc_faults_per_call: float | None = None
    # memory
    peak_mem_bytes: int | None = None  # input + output + temporaries at the call's peak
    extra_mem_bytes: int | None = None  # beyond input and output
    # correctness, against the float64 reference of the declared semantics
    max_abs_err: float | None = None
    max_rel_err: float | None = None  # max |out - ref| / max |ref|
    nonfinite_outputs: int | None = None
    tolerance: float | None = None
    correct: bool | None = None
    output_dtype: str = ""  # what the implementation returned (a float64 output in a float32 case is wrong)
    canonical_rel_err: float | None = None  # distance from canonical InstanceNorm on the same input
    semantics: str = ""  # detected from the output
    semantics_declared: str = ""
    semantics_mismatch: bool | None = None
    layout_copy: bool | None = None  # converts layout internally (the copy is timed)
    # speed of light
    ideal_bytes: int | None = None
    achieved_gbps: float | None = None
    sol_fraction: float | None = None  # achieved over the row's speed of light (bench.stats.row_limit)
    # The speed of light of its case: the framework's copy into a fresh output, timed beside it on
    # the same buffers (bench.worker.prepare_limit): bandwidth, its median's CI and page faults.
    limit_how: str = ""  # what copied ("" in rows from before per-case limits: the DRAM copy's)
    limit_gbps: float | None = None
    limit_rel_ci: float | None = None
    limit_faults_per_call: float | None = None
    source: str = ""

    @property
    def variant(self) -> str:
        """The implementation, with its backend where one implementation runs on several."""
        from bench.frameworks import variant

        return variant(self.impl, self.framework, self.backend)

    def case_key(self) -> CaseKey:
        return CaseKey(
            self.device,
            self.dtype,
            self.layout,
            self.mode,
            self.shape,
            self.input_kind,
            self.op,
            self.op_params,
        )

    def key(self) -> MeasurementKey:
        """The measurement's identity: what resume, blame, compare and merge match on."""
        return MeasurementKey(self.impl, self.backend, self.case_key())

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


ROW_FIELDS = {f.name: f for f in fields(Row)}
_HINTS = typing.get_type_hints(Row)
REQUIRED = [f.name for f in fields(Row) if f.default is MISSING and f.default_factory is MISSING]


# ---- migration: every older schema reads as the current Row ---------------------------------


def _v1_to_v2(d: dict[str, Any]) -> dict[str, Any]:
    """v1 rows carried no declared roles: v1's report knew them by name, so those names get them."""
    v1_roles = {
        "keras_lambda": ("article",),
        "torch_view": ("article",),
        "torch_module": ("article",),
        "torch_instance_norm": ("baseline",),
    }
    v1_compiled = {"torch_compile": "torch_module", "tf_function": "keras_lambda", "tf_xla": "keras_lambda"}
    impl = d.get("impl")
    d.setdefault("roles", list(v1_roles.get(impl, ())) if isinstance(impl, str) else [])
    d.setdefault("compiled_from", v1_compiled.get(impl, "") if isinstance(impl, str) else "")
    return {**d, "schema_version": 2}


def _v2_to_v3(d: dict[str, Any]) -> dict[str, Any]:
    """v2 rows kept their buffer count, not the bytes it rotated: those follow from the case (their
    cache state is judged in the report, against their run's effective cache)."""
    from bench.cases import ITEMSIZE
    from bench.memory import ROTATING_TENSORS

    buffers, shape = d.get("buffers"), d.get("shape")
    tensors, itemsize = ROTATING_TENSORS.get(d.get("mode", "")), ITEMSIZE.get(d.get("dtype", ""))
    dims = [x for x in shape if isinstance(x, int)] if isinstance(shape, list) else []
    if isinstance(buffers, int) and buffers > 0 and len(dims) == 4 and tensors and itemsize:
        d.setdefault("rotated_bytes", buffers * tensors * itemsize * math.prod(dims))
    return {**d, "schema_version": 3}


def _v3_to_v4(d: dict[str, Any]) -> dict[str, Any]:
    """v3 rows came from normbench's only operator then, InstanceNorm (no parameters besides eps)."""
    return {**d, "op": operators.DEFAULT, "op_params": "", "schema_version": 4}


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


# The built-in kernels written for normbench declared the "own" role only after their first rows
# were written (schema 2 unchanged): those rows read as declaring it.
OWN_SINCE_SCHEMA_2 = ("numba_fused", "triton_fused")


def migrate(d: dict[str, Any]) -> dict[str, Any]:
    version = d.get("schema_version")
    while isinstance(version, int) and version in MIGRATIONS:
        d = MIGRATIONS[version](d)
        version = d["schema_version"]
    roles = d.get("roles")
    if d.get("impl") in OWN_SINCE_SCHEMA_2 and isinstance(roles, list) and "own" not in roles:
        d = {**d, "roles": [*roles, "own"]}
    return d


# ---- validation: a field of the wrong type is a bad row, never a crash later ----------------


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _kind(hint: Any) -> tuple[str, bool]:
    """A field's base type name and whether it may be None: (`float`, True) for `float | None`."""
    args = typing.get_args(hint) or (hint,)
    names = [getattr(a, "__name__", str(a)) for a in args if a is not type(None)]
    return (names[0] if len(names) == 1 else "any"), type(None) in args


KINDS = {name: _kind(hint) for name, hint in _HINTS.items()}


def _check_field(name: str, v: Any) -> str | None:
    base, optional = KINDS[name]
    if v is None:
        return None if optional else f"{name} is null"
    if name == "shape":
        if not (isinstance(v, list | tuple) and len(v) == 4 and all(isinstance(x, int) and x > 0 for x in v)):
            return f"shape {v!r} is not four positive integers"
        return None
    if name == "samples_s":
        if not isinstance(v, list | tuple) or not all(_is_num(x) and 0 < x <= MAX_TIME_S for x in v):
            return f"samples_s is not a list of positive numbers up to {MAX_TIME_S:g} s"
        return None
    if name in TIME_FIELDS and not (_is_num(v) and 0 <= v <= MAX_TIME_S):
        return f"{name} is {v!r}, expected a time of 0 to {MAX_TIME_S:g} s"
    if name == "op_params":  # parsed wherever an operator is labelled or run: it must parse here
        try:
            values = operators.parse_params(v) if isinstance(v, str) else None
        except ValueError:
            values = None
        if values is None or not all(n > 0 for n in values.values()):
            return f"op_params {v!r} is not name=positive-integer pairs joined by ','"
        return None
    if name == "roles":
        if not isinstance(v, list | tuple) or not all(isinstance(x, str) for x in v):
            return "roles is not a list of strings"
        return None
    if name == "status":
        return None if v in STATUSES else f"status {v!r} is not one of {', '.join(STATUSES)}"
    if base == "str" and not isinstance(v, str):
        return f"{name} is a {type(v).__name__}, expected a string"
    if base == "int" and not (isinstance(v, int) and not isinstance(v, bool)):
        return f"{name} is a {type(v).__name__}, expected an integer"
    if base == "float" and not _is_num(v):
        return f"{name} is {v!r}, expected a finite number"
    if base == "bool" and not isinstance(v, bool):
        return f"{name} is a {type(v).__name__}, expected true or false"
    return None


def row_from_dict(d: dict[str, Any]) -> Row:
    """A Row from a (migrated) dict; unknown keys are ignored; a bad field raises ValueError."""
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    for k, v in d.items():
        if k in ROW_FIELDS:
            problem = _check_field(k, v)
            if problem:
                raise ValueError(problem)
    kwargs = {k: v for k, v in d.items() if k in ROW_FIELDS}
    kwargs["shape"] = tuple(kwargs["shape"])
    kwargs["samples_s"] = tuple(float(x) for x in kwargs.get("samples_s") or ())
    kwargs["roles"] = tuple(kwargs.get("roles") or ())
    return Row(**kwargs)


class Warnings:
    """At most MAX_WARNINGS lines per file, then one count: a junk file must not flood the terminal."""

    def __init__(self, path: Path, say: Callable[[str], None]) -> None:
        self.path, self.say, self.count = path, say, 0

    def __call__(self, where: str, what: str) -> None:
        self.count += 1
        if self.count <= MAX_WARNINGS:
            self.say(f"{self.path}{where}: {what}; skipped")

    def close(self) -> None:
        if self.count > MAX_WARNINGS:
            self.say(f"{self.path}: {self.count - MAX_WARNINGS} more unusable lines skipped")


def _stderr_warning(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def _version_problem(version: Any, where: str) -> str | None:
    """Why a row's schema_version is unusable (a warning), or None; a newer one is a BenchError."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"schema_version {version!r} is not a version number"
    if version > SCHEMA_VERSION:
        raise BenchError(
            f"{where} {version}, newer than this normbench reads ({SCHEMA_VERSION}); upgrade normbench"
        )
    return None


def check_results_path(path: Path) -> None:
    """A BenchError unless `path` is a file: a folder is called a folder (a submission's names its
    merged results), a missing path missing."""
    if path.is_file():
        return
    if not path.is_dir():
        raise BenchError(f"results file {str(path)!r} does not exist")
    hint = "expected a .jsonl results file"
    try:
        out = json.loads((path / "submission.json").read_text()).get("out")
        if isinstance(out, str) and out:
            hint = f"it is a submission's folder: its merged results are {out}"
    except (OSError, ValueError, AttributeError):
        pass
    raise BenchError(f"results file {str(path)!r} is a directory; {hint}")


def read_rows(
    path: Path | str, warn: Callable[[str], None] | None = None, history: bool = False
) -> list[Row]:
    """Rows of a results file (normbench JSONL of any schema, or pytest-benchmark JSON). Blank,
    truncated, foreign or ill-typed lines are skipped with a warning naming the line; a newer
    schema is an error (upgrade normbench). `stopped` rows a later row of their run and measurement
    supersedes are left out, unless `history` (a resume counts the stops of each measurement)."""
    path = Path(path)
    check_results_path(path)
    warnings = Warnings(path, warn or _stderr_warning)
    doc = pytest_benchmark_doc(path)
    try:
        if doc is not None:
            return rows_from_pytest_benchmark(doc, path, warnings)
        rows = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    d = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    warnings(f":{lineno}", "not valid JSON (a truncated line?)")
                    continue
                if not isinstance(d, dict) or "impl" not in d or "schema_version" not in d:
                    warnings(f":{lineno}", "not a normbench row")
                    continue
                problem = _version_problem(d["schema_version"], f"{path}:{lineno}: schema_version")
                if problem:
                    warnings(f":{lineno}", problem)
                    continue
                try:
                    rows.append(row_from_dict(migrate(d)))
                except (ValueError, TypeError) as exc:
                    warnings(f":{lineno}", f"bad row ({exc})")
        return rows if history else without_superseded_stops(rows)
    finally:
        warnings.close()


def without_superseded_stops(rows: list[Row]) -> list[Row]:
    """A `stopped` row followed in its file by a row of the same run and measurement (the resume
    that measured it, or stopped it again) is history, not data: readers see the last row alone."""
    later: set[tuple[str, MeasurementKey]] = set()
    kept: list[Row] = []
    for row in reversed(rows):
        key = (row.run_id, row.key())
        if row.status == "stopped" and key in later:
            continue
        later.add(key)
        kept.append(row)
    return kept[::-1]


def read_results(paths: list[Path], warn: Callable[[str], None] | None = None) -> list[Row]:
    """Rows of several files; a BenchError (exit 2) when none of them holds a usable row."""
    rows = [r for p in paths for r in read_rows(p, warn)]
    if not rows:
        raise BenchError(f"no usable rows in {', '.join(map(str, paths))}")
    return rows


# ---- pytest-benchmark JSON ------------------------------------------------------------------


def pytest_benchmark_doc(path: Path) -> dict[str, Any] | None:
    """The parsed file if it is one pytest-benchmark JSON document (--benchmark-json, or a run saved
    in .benchmarks/), else None. Only the first line of a JSONL file is parsed."""
    try:
        with open(path, encoding="utf-8") as f:
            try:
                doc = json.loads(f.readline())  # a JSONL row, or a document written on one line
            except json.JSONDecodeError:
                f.seek(0)
                doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list) and "machine_info" in doc:
        return doc
    return None


def _pytest_run_id(doc: dict[str, Any], path: Path) -> str:
    stamp = str(doc.get("datetime", ""))[:19].replace("-", "").replace(":", "")  # 20250101T120000
    return f"pytest-{stamp}" if stamp else f"pytest-{path.stem}"


def rows_from_pytest_benchmark(doc: dict[str, Any], path: Path, warnings: Warnings) -> list[Row]:
    """One ok row per benchmark the front end recorded: its fields from extra_info, its samples
    from stats.data (kept with --benchmark-json, or --benchmark-save-data for saved runs)."""
    from bench.timing import summarize

    run_id = _pytest_run_id(doc, path)
    rows = []
    for i, b in enumerate(doc["benchmarks"]):
        if not isinstance(b, dict):
            warnings(f": benchmark #{i}", "not an object")
            continue
        info = b.get("extra_info")
        name = b.get("fullname") or b.get("name") or f"#{i}"
        if not isinstance(info, dict) or "impl" not in info or "schema_version" not in info:
            warnings(f": benchmark {name!r}", "has no normbench extra_info")
            continue
        problem = _version_problem(info["schema_version"], f"{path}: benchmark {name!r} has schema_version")
        if problem:
            warnings(f": benchmark {name!r}", problem)
            continue
        stats = b.get("stats")
        if not isinstance(stats, dict):
            warnings(f": benchmark {name!r}", f"stats is a {type(stats).__name__}, expected an object")
            continue
        data = stats.get("data") or []
        if not isinstance(data, list) or not all(_is_num(x) and x > 0 for x in data):
            warnings(f": benchmark {name!r}", "stats.data is not a list of positive numbers")
            continue
        samples = [float(x) for x in data]
        if samples:
            timing: dict[str, Any] = summarize(samples).row_fields()
        else:  # saved without --benchmark-save-data: pytest-benchmark's own statistics only
            med, iqr, rounds = stats.get("median"), stats.get("iqr"), stats.get("rounds")
            if not _is_num(med) or (iqr is not None and not _is_num(iqr)) or not isinstance(rounds, int):
                warnings(f": benchmark {name!r}", "stats has no numeric median, iqr and rounds")
                continue
            timing = {
                "time_median_s": med,
                "time_iqr_s": iqr,
                "time_min_s": stats.get("min") if _is_num(stats.get("min")) else None,
                "time_rel_iqr": iqr / med if med and iqr is not None else None,
                "n_samples": rounds,
            }
        med = timing["time_median_s"]
        ideal = info.get("ideal_bytes")
        extra = {"achieved_gbps": ideal / med / 1e9} if _is_num(ideal) and med else {}
        d = {**info, **timing, **extra, "status": "ok", "run_id": run_id, "samples_s": samples}
        try:
            rows.append(row_from_dict(migrate(d)))
        except (ValueError, TypeError) as exc:
            warnings(f": benchmark {name!r}", f"bad extra_info ({exc})")
    return rows


def _env_from_pytest_benchmark(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """What the report's environment table shows, from pytest-benchmark's machine and commit info."""

    def obj(v: Any) -> dict[str, Any]:
        return v if isinstance(v, dict) else {}

    machine, commit = obj(doc.get("machine_info")), obj(doc.get("commit_info"))
    cpu = obj(machine.get("cpu"))
    infos = [obj(b.get("extra_info")) for b in doc["benchmarks"] if isinstance(b, dict)]
    versions: dict[str, Any] = {}
    for info in infos:
        if isinstance(info.get("versions"), dict):
            versions.update(info["versions"])
    first = next((i for i in infos if "impl" in i), {})
    return {
        "run_id": _pytest_run_id(doc, path),
        "host": str(machine.get("node", "")),
        "cpu_model": str(cpu.get("brand_raw") or machine.get("processor", "")),
        "cpu_cores": cpu.get("count"),
        "threads": first.get("threads"),
        "packages": {
            "python": machine.get("python_version"),
            "pytest-benchmark": doc.get("version"),
            **versions,
        },
        "git_commit": str(commit.get("id", "")) + (" (uncommitted changes)" if commit.get("dirty") else ""),
        "command": f"pytest-benchmark ({path.name})",
        "started": doc.get("datetime"),
        "timing_settings": first.get("settings"),
        "format": "pytest-benchmark",
    }


# ---- writing rows: whole lines or nothing --------------------------------------------------


class ResultsWriter:
    """Appends rows. Each line goes to the file whole and is flushed to disk: an interrupt or a full
    disk never leaves half a line behind (a failed write is cut back off the file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if path.stat().st_size and not _ends_with_newline(path):
            self._write_all(b"\n")  # a line cut by a crash stays alone; the reader skips it
        self.rows_before = _count_lines(path)
        self.written = 0

    def _write_all(self, data: bytes) -> None:
        size = os.fstat(self.fd).st_size
        try:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
            os.fsync(self.fd)
        except OSError as exc:
            try:
                os.ftruncate(self.fd, size)
            except OSError:
                pass
            safe = self.rows_before + self.written if hasattr(self, "written") else _count_lines(self.path)
            raise BenchError(
                f"cannot write {self.path}: {exc.strerror or exc}; {safe} rows are safe in it"
                + (" (the disk is full)" if exc.errno == errno.ENOSPC else "")
            ) from None

    def write(self, row: Row) -> None:
        self._write_all((row.to_json() + "\n").encode())
        self.written += 1

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock on the results file: runs appending to one file update its sidecar in turn."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


# ---- the env sidecar: one record per run, keyed by run id ----------------------------------


def env_path(results: Path | str) -> Path:
    p = Path(results)
    stem = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.name
    return p.with_name(stem + ".env.json")


def read_envs(results: Path | str) -> dict[str, dict[str, Any]]:
    """Run id -> that run's environment. Sidecars of schema 1 held one run's record: migrated."""
    path = Path(results)
    if path.is_file():
        doc = pytest_benchmark_doc(path)
        if doc is not None:
            env = _env_from_pytest_benchmark(doc, path)
            return {env["run_id"]: env}
    p = env_path(results)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, ValueError, UnicodeDecodeError, RecursionError, OSError):
        return {}
    if not isinstance(data, dict):
        return {}
    runs = data.get("runs")
    if isinstance(runs, dict):
        return {str(k): v for k, v in runs.items() if isinstance(v, dict)}
    if "run_id" in data:  # schema 1: the sidecar was the one run's record
        return {str(data["run_id"]): data}
    return {}


def read_env(results: Path | str, run_id: str | None = None) -> dict[str, Any]:
    """One run's environment: `run_id`'s, or the file's last run's."""
    envs = read_envs(results)
    if run_id is not None:
        return envs.get(run_id, {})
    return list(envs.values())[-1] if envs else {}


def row_machine(row: Row, envs: Mapping[str, Mapping[str, Any]]) -> str:
    """The host that measured a row: its own `machine`, else its run's host (older files)."""
    return row.machine or str(envs.get(row.run_id, {}).get("host") or "")


def machine_class(env: Mapping[str, Any]) -> str:
    """What a run's hardware is, from its sidecar: the GPUs, the CPU model and its cores. Hosts
    alike (a cluster's H100 nodes) share it; "" when the sidecar does not say."""
    if not env.get("cpu_model"):
        return ""
    gpus: dict[str, int] = {}
    for g in env.get("gpu_start") or []:
        if isinstance(g, Mapping) and g.get("name"):
            gpus[str(g["name"])] = gpus.get(str(g["name"]), 0) + 1
    cpu = f"{env['cpu_model']} ({env.get('cpu_cores') or '?'} cores)"
    return "; ".join([*(f"{n}x {name}" for name, n in sorted(gpus.items())), cpu])


def write_env(results: Path | str, run_id: str, env: dict[str, Any]) -> None:
    """Set one run's record in the sidecar, keeping the other runs'."""
    p = env_path(results)
    runs = read_envs(results) if p.is_file() else {}
    runs[run_id] = env
    write_envs(results, runs)


def write_envs(results: Path | str, runs: dict[str, dict[str, Any]]) -> None:
    """Write the sidecar with these runs' records only. Atomic replace, so the sidecar is whole
    whenever the run is interrupted; a failure leaves no temporary file behind."""
    p = env_path(results)
    doc = {"schema_version": ENV_SCHEMA_VERSION, "runs": runs}
    tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
        os.replace(tmp, p)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BenchError(f"cannot write {p}: {exc.strerror or exc}") from None
