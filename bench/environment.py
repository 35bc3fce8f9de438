"""The env sidecar: versions, CPU and GPU, git commit, command line, settings of one run."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("numpy", "torch", "tensorflow", "tensorflow-cpu", "keras", "jax", "jaxlib", "triton", "pandas")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{socket.gethostname().split('.')[0][:20]}"


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
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def collect(cfg: Any, run_id: str, impls: dict[str, Any]) -> dict[str, Any]:
    settings = asdict(cfg.settings)
    return {
        "schema_version": 2,
        "run_id": run_id,
        "started": now(),
        "command": cfg.command,
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


def cuda_device_count() -> int:
    """GPUs visible to this machine, without importing a framework in the parent."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return 0
    return len([g for g in gpu_info() if g.get("name")])
