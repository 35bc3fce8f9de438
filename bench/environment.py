"""The env sidecar: versions, CPU and GPU, git commit, command line, settings of one run."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
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
