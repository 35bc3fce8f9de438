"""What a resume reads from files someone may have written by hand or sent: a results sidecar's run
configuration, a submission's manifest (submission.json). Each value is checked as the command line
checks the option it came from, and a bad one is a one-line error naming the file, the value and
what was expected, before anything is measured or written. A resume also says which code it will
import (implementation folders and modules named in the file)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from bench import operators
from bench.cases import DTYPES, LAYOUTS, MODES, check_choice, parse_shape, presets
from bench.errors import BenchError
from bench.registry import check_impl_paths
from bench.timing import TimingSettings

MIN_SIZE_BYTES = 1 << 20  # as --max-memory and --effective-cache


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise BenchError(f"bad {what} {value!r}; expected a list of non-empty strings")
    return tuple(value)


def _number(value: Any, what: str, positive: bool = True) -> float:
    """A finite number (positive, or at least 0): NaN or Infinity would switch a limit off."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        raise BenchError(f"bad {what} {value!r}; expected a {'positive' if positive else 'non-negative'}, "
                         "finite number")  # fmt: skip
    return float(value)


def _count(value: Any, what: str, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
        span = f"{low}..{high}" if high else f">= {low}"
        raise BenchError(f"bad {what} {value!r}; expected an integer {span}")
    return value


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise BenchError(f"bad {what} {value!r}; expected true or false")
    return value


def _shape(value: Any) -> tuple[int, int, int, int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise BenchError(f"bad --shape {value!r}; expected four positive integers N,C,H,W")
    return parse_shape(",".join(map(str, value)))


def _device(value: str, gpus: int | None) -> str:
    from bench.cli import resolve_devices

    if value != "cpu" and not value.startswith("cuda:"):
        raise BenchError(f"bad --device {value!r}; expected cpu or cuda:N")
    return resolve_devices(value, gpus)[0]


def _settings(value: Any) -> TimingSettings:
    if not isinstance(value, dict):
        raise BenchError(f"bad timing settings {value!r}; expected a JSON object")
    d = {k: v for k, v in value.items() if k in TimingSettings.__dataclass_fields__}
    for name in ("min_time_s", "max_time_s", "target_rel_ci", "round_s"):
        if name in d:
            _number(d[name], f"timing {name}")
    if "warmup_s" in d:
        _number(d["warmup_s"], "timing warmup_s", positive=False)
    for name in ("min_samples", "max_samples"):
        if name in d:
            _count(d[name], f"timing {name}", 1)
    if "warm_cache" in d:
        _flag(d["warm_cache"], "timing warm_cache")
    settings = TimingSettings(**d)
    if settings.min_time_s > settings.max_time_s or settings.min_samples > settings.max_samples:
        raise BenchError(f"bad timing settings {value!r}; expected min_time_s <= max_time_s and "
                         "min_samples <= max_samples")  # fmt: skip
    return settings


def _params(value: Any) -> dict[str, tuple[int, ...]]:
    """Operator parameter values: {name: [positive integers]}, each name some operator's."""
    known = {name for op in operators.operators().values() for name in op.params}
    if not isinstance(value, dict):
        raise BenchError(f"bad params {value!r}; expected {{name: [positive integers]}}")
    out = {}
    for name, values in value.items():
        if name not in known:
            raise BenchError(
                f"unknown operator parameter {name!r}; expected one of: {', '.join(sorted(known))}"
            )
        if not isinstance(values, list) or not values:
            raise BenchError(f"bad {name} {values!r}; expected a list of positive integers")
        out[name] = tuple(_count(v, name, 1, 2**31) for v in values)
    return out


def run_config(d: Any, where: str, gpus: int | None = None) -> Any:
    """The RunConfig stored in `where` (a sidecar, a manifest), checked field by field as the command
    line checks the same options; `gpus`: how many GPUs the measuring machine has (None: this one's)."""
    from bench.runner import RunConfig
    from bench.shards import parse_shard

    try:
        if not isinstance(d, dict):
            raise BenchError(f"expected a JSON object, not {type(d).__name__}")
        kw: dict[str, Any] = {}
        if "op_paths" in d:  # first: the operators they hold are names the fields below may use
            kw["op_paths"] = operators.use_paths(_strings(d["op_paths"], "op_paths"))
        for name in ("impl_globs", "impl_modules", "groups"):
            if name in d:
                kw[name] = _strings(d[name], name)
        if "ops" in d:
            kw["ops"] = tuple(
                check_choice("operator", v, tuple(operators.operators())) for v in _strings(d["ops"], "ops")
            )
        if "params" in d:
            kw["params"] = _params(d["params"])
        if "devices" in d:
            kw["devices"] = tuple(_device(v, gpus) for v in _strings(d["devices"], "devices"))
        if "preset" in d:
            kw["preset"] = check_choice("preset", str(d["preset"]), presets())
        if "shapes" in d:
            if not isinstance(d["shapes"], list):
                raise BenchError(f"bad shapes {d['shapes']!r}; expected a list of N,C,H,W lists")
            kw["shapes"] = tuple(_shape(s) for s in d["shapes"])
        for name, allowed in (("dtypes", DTYPES), ("layouts", LAYOUTS), ("modes", MODES)):
            if name in d:
                kw[name] = tuple(check_choice(name[:-1], v, allowed) for v in _strings(d[name], name))
        if "threads" in d:
            kw["threads"] = _count(d["threads"], "--threads", 1, os.cpu_count() or 1)
        if "eps" in d:
            kw["eps"] = _number(d["eps"], "--eps")
        if "settings" in d:
            kw["settings"] = _settings(d["settings"])
        if "impl_paths" in d:
            paths = _strings(d["impl_paths"], "impl_paths")
            check_impl_paths(list(paths))
            kw["impl_paths"] = paths
        for name in ("edge", "fail_fast", "reprobe"):
            if name in d:
                kw[name] = _flag(d[name], name)
        for name, option in (("case_timeout_s", "--case-timeout"), ("import_timeout_s", "--import-timeout")):
            if name in d:
                kw[name] = _number(d[name], option)
        if "max_memory_bytes" in d:
            kw["max_memory_bytes"] = _count(d["max_memory_bytes"], "--max-memory", MIN_SIZE_BYTES, 2**60)
        if "effective_cache_bytes" in d and d["effective_cache_bytes"] != 0:  # 0: swept on the host
            cache = d["effective_cache_bytes"]
            kw["effective_cache_bytes"] = _count(cache, "--effective-cache", MIN_SIZE_BYTES, 2**60)
        if "shard" in d:
            if not isinstance(d["shard"], str):
                raise BenchError(f"bad --shard {d['shard']!r}; expected K/N")
            kw["shard"] = parse_shard(d["shard"]).text() if d["shard"] else ""
        return RunConfig(**kw)
    except BenchError as exc:
        raise BenchError(f"{where}: {exc}") from None


def imports(cfg: Any) -> str:
    """What a resume imports beyond implementations/ and bench/operators/ (folders and modules its
    file names), or ""."""
    parts = [f"--impl-path {p}" for p in cfg.impl_paths] + [f"--impl-module {m}" for m in cfg.impl_modules]
    parts += [f"--op-path {p}" for p in cfg.op_paths]
    return ", ".join(parts)


def submission(doc: dict[str, Any], folder: Path) -> tuple[str, Path]:
    """A manifest's run id and merged results file, checked: a resume overwrites that file, so it
    must be this submission's results (or not exist yet)."""
    where = f"--resume {str(folder)!r}: submission.json"
    run_id, out = doc.get("run_id"), doc.get("out")
    if not isinstance(run_id, str) or not run_id.strip() or "/" in run_id:
        raise BenchError(f"{where}: bad run_id {run_id!r}; expected the submission's run id")
    if not isinstance(out, str) or not out.strip():
        raise BenchError(f"{where}: bad out {out!r}; expected the path of the merged results file")
    for name in ("jobs", "options"):
        if name in doc and not isinstance(doc[name], dict):
            raise BenchError(f"{where}: bad {name} {doc[name]!r}; expected a JSON object")
    options = doc.get("options", {})
    if "executor" in options and options["executor"] not in ("local", "slurm"):
        raise BenchError(f"{where}: bad executor {options['executor']!r}; expected local or slurm")
    for name in ("partition", "constraint"):
        if options.get(name) is not None and not isinstance(options[name], str):
            raise BenchError(f"{where}: bad {name} {options[name]!r}; expected a string")
    for name in ("gpus_per_job", "time_min", "cpu_jobs", "array_parallelism"):
        if options.get(name) is not None:
            try:
                _count(options[name], name, 1)
            except BenchError as exc:
                raise BenchError(f"{where}: {exc}") from None
    for label, info in doc.get("jobs", {}).items():
        if not isinstance(info, dict) or not isinstance(info.get("submitted", []), list):
            raise BenchError(f"{where}: bad job {label!r} {info!r}; expected an object, submitted a list")
    path = Path(out)
    if path.exists() and not holds_run(path, run_id):
        raise BenchError(
            f"{where}: its out {out!r} is not this submission's results (run {run_id}); a resume would "
            "overwrite it: move it away, or resume from the submission's own folder"
        )
    return run_id, path


_EMPTY: dict[str, Any] = {}


def _first_row(path: Path) -> dict[str, Any] | None:
    """The first line of `path` as a normbench row (`_EMPTY` for an empty file), or None: not a
    readable file, or its first line is no row."""
    if path.is_dir():
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            line = next((text for text in f if text.strip()), "")
    except OSError:
        return None
    if not line:
        return _EMPTY
    try:
        d = json.loads(line)
    except ValueError:
        return None
    return d if isinstance(d, dict) and "schema_version" in d and "impl" in d else None


def holds_run(path: Path, run_id: str) -> bool:
    """Whether `path` is empty or a normbench results file whose first row belongs to run `run_id`
    (or to its per-machine parts, `run_id@host`)."""
    row = _first_row(path)
    if row is None or row is _EMPTY:
        return row is _EMPTY
    rid = str(row.get("run_id", ""))
    return rid == run_id or rid.startswith(run_id + "@")


def is_results_file(path: Path) -> bool:
    """Whether appending normbench rows to `path` is safe: it is empty, or its first line is one."""
    return _first_row(path) is not None
