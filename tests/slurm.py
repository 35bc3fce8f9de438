"""A real single-node SLURM for the tests: Debian's slurmctld, slurmd, slurm-client and munge,
installed when missing (as root, as `make install` installs Python packages), configured in a
temporary folder (no accounting, as on many small clusters; processes tracked by their parents)
and started for one test module. `Slurm.skip_reason()` says why one cannot be had here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
COMMANDS = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "munged")


def _missing() -> list[str]:
    return [c for c in COMMANDS if not shutil.which(c) and not Path(f"/usr/sbin/{c}").exists()]


def install() -> str:
    """The empty string when SLURM is here (installed now if need be), else why it cannot be."""
    if not _missing():
        return ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"SLURM is not installed ({', '.join(_missing())} missing) and this is not root with apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            return f"{' '.join(command)} failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
    return "" if not _missing() else f"installed, yet {', '.join(_missing())} missing"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class Slurm:
    """The running cluster: `env` is what a client needs (SLURM_CONF)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.host = socket.gethostname().split(".")[0]
        self.conf = folder / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.daemons: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self._munge()
        (self.folder / "state").mkdir(parents=True, exist_ok=True)
        (self.folder / "spool").mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 1
        f = self.folder
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=normbench-test",
                    f"SlurmctldHost={self.host}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    f"StateSaveLocation={f}/state",
                    f"SlurmdSpoolDir={f}/spool",
                    f"SlurmctldPidFile={f}/slurmctld.pid",
                    f"SlurmdPidFile={f}/slurmd.pid",
                    f"SlurmctldLogFile={f}/slurmctld.log",
                    f"SlurmdLogFile={f}/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "KillWait=10",
                    "SchedulerParameters=sched_interval=1",
                    f"NodeName={self.host} CPUs={cpus} RealMemory=1000 State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        for command in ([_sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)],
                        [_sbin("slurmd"), "-D", "-f", str(self.conf)]):  # fmt: skip
            log = open(self.folder / f"{Path(command[0]).name}.out", "wb")  # noqa: SIM115
            self.daemons.append(
                subprocess.Popen(command, stdout=log, stderr=log, env={**os.environ, **self.env})
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = self.run("sinfo", "-h", "-o", "%T").stdout.strip()
            if state.startswith("idle"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"slurmd never became idle (sinfo: {state!r}); logs in {self.folder}")

    def _munge(self) -> None:
        check = subprocess.run("munge -n | unmunge", shell=True, capture_output=True, timeout=30)
        if check.returncode == 0:
            return
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run([_sbin("mungekey"), "--create"], check=True, timeout=60)
            shutil.chown(key, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", _sbin("munged")], check=True, timeout=60)

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.env}
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)

    def jobs(self) -> dict[str, str]:
        """Job id -> state, of the jobs the controller still knows."""
        out = self.run("squeue", "-h", "-t", "all", "-o", "%i %T").stdout
        return dict(line.split(None, 1) for line in out.splitlines() if line.strip())

    def stop(self) -> None:
        self.run("scancel", "--full", "-u", "root")
        for d in self.daemons:
            d.terminate()
        for d in self.daemons:
            try:
                d.wait(timeout=20)
            except subprocess.TimeoutExpired:
                d.kill()
