"""Row, schema version, and reading/writing results as JSONL (one object per line, appended)."""

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
    """Rows of a results file. Blank, truncated or foreign lines are skipped with a warning naming
    the line; a newer schema is an error."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"results file {str(path)!r} does not exist")
    say = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
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


def env_path(results: Path | str) -> Path:
    p = Path(results)
    return p.with_name(
        p.name[: -len(".jsonl")] + ".env.json" if p.name.endswith(".jsonl") else p.name + ".env.json"
    )


def read_env(results: Path | str) -> dict[str, Any]:
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
