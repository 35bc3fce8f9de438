"""The env sidecar: versions, CPU and GPU, git commit, command line, settings of one run; and the
machine facts kept between runs (the cache sweep), in normbench's cache folder."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASE_PACKAGES = ("numpy", "pandas", "numba")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    """`20261201-141327-host-1a2b`: sortable, and unique even for two runs started in one second."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:20]
    return f"{stamp}-{host}-{secrets.token_hex(2)}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_info() -> list[dict[str, str]]:
    """Name, memory, driver and clocks of each GPU, from nvidia-smi (empty without one)."""
    if not shutil.which("nvidia-smi"):
        return []
    fields = "name,memory.total,driver_version,clocks.sm,clocks.mem,clocks.max.sm,temperature.gpu,power.draw"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    keys = fields.split(",")
    return [dict(zip(keys, (v.strip() for v in line.split(",")))) for line in out.strip().splitlines()]


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict[str, str]:
    from bench.frameworks import frameworks

    found = {"python": platform.python_version()}
    packages = [p for fw in frameworks().values() for p in fw.packages]
    for name in dict.fromkeys([*BASE_PACKAGES, *packages]):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def collect(cfg: Any, run_id: str, impls: dict[str, Any], command: str = "") -> dict[str, Any]:
    """One run's record in the env sidecar (bench.results.write_env keeps one per run id)."""
    settings = asdict(cfg.settings)
    return {
        "run_id": run_id,
        "started": now(),
        "command": command,
        "git_commit": git_commit(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads": cfg.threads,
        "packages": versions(),
        "gpu_start": gpu_info(),
        "devices": cfg.devices,
        "preset": cfg.preset,
        "timing_settings": settings,
        "case_timeout_s": cfg.case_timeout_s,
        "max_memory_bytes": cfg.max_memory_bytes,
        "op_paths": list(cfg.op_paths),  # where its operators outside bench/operators/ were (the report's)
        "implementations": {
            n: {"framework": i.framework, "source": i.source, "unavailable": i.unavailable}
            for n, i in sorted(impls.items())
        },
    }


def total_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            return int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 16 << 30


def cuda_device_count() -> int:
    """GPUs visible to this machine, without importing a framework in the parent."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return 0
    return len([g for g in gpu_info() if g.get("name")])


# ---- this machine's cache sweep, kept between runs ----------------------------------------------

SWEEP_MAX_AGE_S = 24 * 3600
SWEEP_WAIT_S = 60.0  # for another run's sweep (about 5 s here) before sweeping anyway
SWEEP_FORMAT = 1  # bump when the sweep's method changes: older sweeps are then measured again


def cache_dir() -> Path:
    """normbench's per-user cache: $NORMBENCH_CACHE_DIR, else $XDG_CACHE_HOME/normbench, else
    ~/.cache/normbench."""
    if os.environ.get("NORMBENCH_CACHE_DIR"):
        return Path(os.environ["NORMBENCH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "normbench"


class CacheFile:
    """A JSON object of entries by key in normbench's cache folder. It is a cache: unreadable,
    foreign or unwritable means "no entry" (measure or import again), never an error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(
        self, updates: dict[str, Any], keep: Callable[[Any], bool] = lambda entry: True
    ) -> dict[str, Any]:
        """Add `updates` to the entries that `keep` accepts (the others are dropped); returns the
        entries as saved (or as they would have been, when the file cannot be written)."""
        entries = {k: v for k, v in self.entries().items() if keep(v)}
        entries.update(updates)
        # Per process and thread: two saving at once never write into the same temporary file.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(entries, indent=1))
            os.replace(tmp, self.path)  # two runs saving at once: one of them wins, the file stays whole
        except OSError:
            with contextlib.suppress(OSError):  # the directory may not exist, or be a file
                tmp.unlink(missing_ok=True)
        return entries


def age_s(stamp: Any) -> float | None:
    """Seconds since an ISO time stamp of now(); None when it is not one."""
    try:
        return (dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(str(stamp))).total_seconds()
    except (TypeError, ValueError, OverflowError):
        return None


class SweepStore:
    """Copy-bandwidth sweeps (`bench.memory.probe_cache`) by machine: host, CPU, device, threads,
    copy method and footprints (`key`). A sweep younger than SWEEP_MAX_AGE_S is reused."""

    def __init__(self, path: Path | None = None, max_age_s: float = SWEEP_MAX_AGE_S) -> None:
        self.file = CacheFile(path or cache_dir() / "cache-sweeps.json")
        self.max_age_s = max_age_s

    @staticmethod
    def key(**facts: Any) -> str:
        facts = {"format": SWEEP_FORMAT, "host": socket.gethostname(), "cpu": cpu_model(), **facts}
        return json.dumps(facts, sort_keys=True)

    def load(self, key: str) -> tuple[list[tuple[int, float]], str] | None:
        """(sweep, swept_at) for `key` when fresh and well formed, else None."""
        entry = self.file.entries().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            at = str(entry["swept_at"])
            sweep = [(int(b), float(g)) for b, g in entry["sweep"]]
        except (TypeError, KeyError, ValueError, OverflowError):
            return None
        age = age_s(at)
        ok = age is not None and 0 <= age < self.max_age_s
        return (sweep, at) if ok and sweep and all(b > 0 and 0 < g < float("inf") for b, g in sweep) else None

    def save(self, key: str, sweep: list[tuple[int, float]], swept_at: str) -> None:
        self.file.save({key: {"sweep": [[b, g] for b, g in sweep], "swept_at": swept_at}})

    @contextlib.contextmanager
    def turn(self, wait_s: float = SWEEP_WAIT_S) -> Iterator[bool]:
        """One sweep or cold check at a time on this machine: two at once share its memory
        bandwidth, so both measure too little, their cold checks fail and both sweep (runs started
        together, or `--cpu-jobs 2`). Waits up to `wait_s` for a run already measuring, whose sweep
        the caller then finds stored; yields whether it got the turn (without one it measures
        anyway: a cache folder it cannot write, or a run stuck holding it)."""
        lock = self.file.path.with_name(self.file.path.name + ".lock")
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield False
            return
        try:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    got = True
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        got = False
                        break
                    time.sleep(0.05)
            yield got
        finally:
            os.close(fd)  # releases the lock, as the process's death would
