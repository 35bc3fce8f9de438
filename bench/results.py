"""Row, schema version, and reading/writing results as JSONL (one object per line, appended); also
reads pytest-benchmark JSON written by the benchmarks/ front end."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from bench.errors import BenchError

SCHEMA_VERSION = 1  # bump on any change to Row; say why in CHANGELOG.md
STATUSES = ("ok", "error", "oom", "timeout", "crashed", "unavailable")


@dataclass(frozen=True)
class Row:
    impl: str
    framework: str
    backend: str  # keras: "tensorflow" | "jax" | "torch"; torch: "eager" | "compile"; ...
    device: str  # "cpu" | "cuda:0"
    dtype: str
    layout: str
    mode: str
    shape: tuple[int, int, int, int]  # logical N, C, H, W whatever the layout
    status: str  # one of STATUSES
    message: str = ""
    schema_version: int = SCHEMA_VERSION
    run_id: str = ""
    device_name: str = ""
    threads: int = 0
    eps: float = 0.0
    input_kind: str = "random"  # or an edge case (bench.reference.EDGE_CASES): checked, not timed
    settings: str = ""  # measurement settings (budgets, cache policy): part of the resume key
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
    cache_policy: str = ""  # "cold" (rotating buffers larger than the last-level cache) | "warm"
    buffers: int = 0
    # memory
    peak_mem_bytes: int | None = None  # input + output + temporaries at the call's peak
    extra_mem_bytes: int | None = None  # beyond input and output
    # correctness, against the float64 reference of the declared semantics
    max_abs_err: float | None = None
    max_rel_err: float | None = None  # max |out - ref| / max |ref|
    nonfinite_outputs: int | None = None
    tolerance: float | None = None
    correct: bool | None = None
    semantics: str = ""  # detected from the output
    semantics_declared: str = ""
    semantics_mismatch: bool | None = None
    layout_copy: bool | None = None  # converts layout internally (the copy is timed)
    # speed of light
    ideal_bytes: int | None = None
    achieved_gbps: float | None = None
    sol_fraction: float | None = None  # achieved over the copy bandwidth measured in this run
    source: str = ""

    def key(self) -> tuple[Any, ...]:
        """The configuration a resume matches on."""
        return (
            self.impl, self.backend, self.device, self.dtype, self.layout, self.mode,
            tuple(self.shape), self.threads, self.settings, self.input_kind,
        )  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


ROW_FIELDS = {f.name for f in fields(Row)}


def row_from_dict(d: dict[str, Any]) -> Row:
    kwargs = {k: v for k, v in d.items() if k in ROW_FIELDS}
    kwargs["shape"] = tuple(kwargs.get("shape", ()))
    kwargs["samples_s"] = tuple(kwargs.get("samples_s", ()))
    return Row(**kwargs)


class ResultsWriter:
    """Appends rows: each line goes to the file in one write() call and is flushed to disk, so an
    interrupt can never leave half a line behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if path.stat().st_size and not _ends_with_newline(path):
            os.write(self.fd, b"\n")  # a line cut by a crash stays alone; the reader skips it

    def write(self, row: Row) -> None:
        os.write(self.fd, (row.to_json() + "\n").encode())
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def read_rows(path: Path | str, warn: Any = None) -> list[Row]:
    """Rows of a results file (normbench JSONL, or pytest-benchmark JSON). Blank, truncated or
    foreign lines are skipped with a warning naming the line; a newer schema is an error."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"results file {str(path)!r} does not exist")
    say = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    doc = pytest_benchmark_doc(path)
    if doc is not None:
        return rows_from_pytest_benchmark(doc, path, say)
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                say(f"{path}:{lineno}: not valid JSON (a truncated line?); skipped")
                continue
            if not isinstance(d, dict) or "impl" not in d or "schema_version" not in d:
                say(f"{path}:{lineno}: not a normbench row; skipped")
                continue
            version = d["schema_version"]
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise BenchError(
                    f"{path}:{lineno}: schema_version {version!r} is newer than this normbench reads "
                    f"({SCHEMA_VERSION}); upgrade normbench"
                )
            try:
                rows.append(row_from_dict(d))
            except TypeError as exc:
                say(f"{path}:{lineno}: missing fields ({exc}); skipped")
    return rows


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
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list) and "machine_info" in doc:
        return doc
    return None


def _pytest_run_id(doc: dict[str, Any], path: Path) -> str:
    stamp = str(doc.get("datetime", ""))[:19].replace("-", "").replace(":", "")  # 20250101T120000
    return f"pytest-{stamp}" if stamp else f"pytest-{path.stem}"


def rows_from_pytest_benchmark(doc: dict[str, Any], path: Path, say: Any) -> list[Row]:
    """One ok row per benchmark the front end recorded: its fields from extra_info, its samples
    from stats.data (kept with --benchmark-json, or --benchmark-save-data for saved runs)."""
    from bench.timing import summarize

    run_id = _pytest_run_id(doc, path)
    rows = []
    for b in doc["benchmarks"]:
        info = b.get("extra_info") or {}
        name = b.get("fullname") or b.get("name")
        if "impl" not in info or "schema_version" not in info:
            say(f"{path}: benchmark {name!r} has no normbench extra_info; skipped")
            continue
        if not isinstance(info["schema_version"], int) or info["schema_version"] > SCHEMA_VERSION:
            raise BenchError(
                f"{path}: benchmark {name!r} has schema_version {info['schema_version']!r}, newer than "
                f"this normbench reads ({SCHEMA_VERSION}); upgrade normbench"
            )
        stats = b.get("stats") or {}
        samples = [float(x) for x in stats.get("data") or []]
        if samples:
            st = summarize(samples)
            timing = {
                "time_median_s": st["median"],
                "time_iqr_s": st["iqr"],
                "time_min_s": st["min"],
                "time_rel_iqr": st["rel_iqr"],
                "time_rel_ci": st["rel_ci"],
                "n_samples": st["n"],
            }
        else:  # saved without --benchmark-save-data: pytest-benchmark's own statistics only
            med, iqr = stats.get("median"), stats.get("iqr")
            timing = {
                "time_median_s": med,
                "time_iqr_s": iqr,
                "time_min_s": stats.get("min"),
                "time_rel_iqr": iqr / med if med and iqr is not None else None,
                "n_samples": int(stats.get("rounds") or 0),
            }
        med = timing["time_median_s"]
        ideal = info.get("ideal_bytes")
        extra = {"achieved_gbps": ideal / med / 1e9} if ideal and med else {}
        d = {**info, **timing, **extra, "status": "ok", "run_id": run_id, "samples_s": samples}
        try:
            rows.append(row_from_dict(d))
        except TypeError as exc:
            say(f"{path}: benchmark {name!r}: missing fields ({exc}); skipped")
    return rows


def _env_from_pytest_benchmark(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """What the report's environment table shows, from pytest-benchmark's machine and commit info."""
    machine, commit = doc.get("machine_info") or {}, doc.get("commit_info") or {}
    infos = [b.get("extra_info") or {} for b in doc["benchmarks"]]
    versions: dict[str, Any] = {}
    for info in infos:
        versions.update(info.get("versions") or {})
    first = next((i for i in infos if "impl" in i), {})
    return {
        "run_id": _pytest_run_id(doc, path),
        "cpu_model": (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor", ""),
        "cpu_cores": (machine.get("cpu") or {}).get("count"),
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


def env_path(results: Path | str) -> Path:
    p = Path(results)
    return p.with_name(
        p.name[: -len(".jsonl")] + ".env.json" if p.name.endswith(".jsonl") else p.name + ".env.json"
    )


def read_env(results: Path | str) -> dict[str, Any]:
    if Path(results).is_file():
        doc = pytest_benchmark_doc(Path(results))
        if doc is not None:
            return _env_from_pytest_benchmark(doc, Path(results))
    p = env_path(results)
    if not p.is_file():
        return {}
    try:
        return dict(json.loads(p.read_text()))
    except (json.JSONDecodeError, ValueError):
        return {}


def write_env(results: Path | str, env: dict[str, Any]) -> None:
    """Atomic replace, so the sidecar is complete whenever the run is interrupted."""
    p = env_path(results)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(env, indent=2, sort_keys=True, default=str))
    os.replace(tmp, p)
