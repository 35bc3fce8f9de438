"""One normbench at a time on a run: `bench run --resume FILE` (or a cluster job resuming its shard)
while another process still measures that run, or a second `--resume FOLDER` of a submission whose
controller is alive, would measure the same cases twice side by side. A `RunLock` is an flock held
for the process's life (the kernel drops it when the process dies, even by SIGKILL); the file
records who holds it, for the error."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from bench import environment
from bench.errors import BenchError


class RunLock:
    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self.fd = -1

    @classmethod
    def for_results(cls, out: Path, run_id: str) -> RunLock:
        """A lock for one run of a results file, kept in normbench's cache (results folders stay
        clean; a file written by runs on several hosts is guarded per host)."""
        key = hashlib.sha256(f"{out.resolve()}\0{run_id}".encode()).hexdigest()[:24]
        return cls(environment.cache_dir() / "locks" / f"{key}.lock", f"run {run_id} of {out}")

    def holder(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path.read_text() or "{}"))
        except (OSError, ValueError):
            return {}

    def acquire(self, wait_s: float = 0.0) -> RunLock:
        """Take the lock, waiting up to `wait_s` for its holder to end; BenchError naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    h = self.holder()
                    who = f"pid {h.get('pid', '?')} on {h.get('host', '?')}, since {h.get('since', '?')}"
                    raise BenchError(
                        f"{self.what} is being measured by another normbench ({who}): wait for it to "
                        "end, or stop it, before resuming"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": environment.now()}
        os.write(fd, json.dumps(record).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1
