"""Stopped, pre-empted, resumed: against a real single-node SLURM (tests/slurm.py) and the real local
executor. A stop is never an implementation's result: the case in flight is `stopped`, --resume
measures it again, no process outlives the stop, nothing runs twice; an implementation that signals
its own run is blamed after three stops, and one that kills itself at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from bench.results import read_rows
from tests import slurm as real_slurm
from tests.conftest import ROOT, SIMULATED_CACHE, cli

pytestmark = pytest.mark.slow

IMPLS = ROOT / "tests" / "data" / "cluster_impls"
SWEEP = ["--impl-path", str(IMPLS), "--impl", "torch_slow_build", "--impl", "numpy_two_pass",
         "--shape", "2,3,8,8", "--shape", "2,3,16,16", "--preset", "smoke", "--max-time", "0.05",
         "--threads", "1", "--device", "cpu", *SIMULATED_CACHE]  # fmt: skip
BLAMES = {"crashed", "error", "timeout", "oom"}  # statuses that say an implementation failed


def tagged(tag: str) -> list[int]:
    """Live processes started under this test's tag (their environment carries it): the controller,
    the jobs, their `bench run` and its workers. Zombies are gone already."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if f"NORMBENCH_TEST_TAG={tag}".encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def left_after(tag: str, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    return tagged(tag)


def wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, f"the run ended before the slow case: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "the slow case never started"
        time.sleep(0.2)


def statuses(path: Path) -> Counter[str]:
    return Counter(r.status for r in read_rows(path))


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = real_slurm.install()
    if why:
        pytest.skip(f"no SLURM to test against: {why}")
    s = real_slurm.Slurm(tmp_path_factory.mktemp("slurm"))
    s.start()
    yield s
    s.stop()


def test_scancel_mid_case_is_a_stop_not_a_crash_and_resume_completes_the_sweep(cluster, tmp_path):
    tag, mark = uuid.uuid4().hex, tmp_path / "mark"
    env = {**cluster.env, "NORMBENCH_TEST_MARK": str(mark), "NORMBENCH_TEST_TAG": tag}
    folder, out = tmp_path / "jobs", tmp_path / "out.jsonl"
    proc = start(["run", "--executor", "slurm", "--folder", str(folder), "--out", str(out), *SWEEP], env)
    wait_for(mark, proc)  # the torch job is inside torch_slow_build's build at 16x16
    running = [job for job, state in cluster.jobs().items() if state == "RUNNING"]
    assert len(running) == 1, cluster.jobs()
    assert cluster.run("scancel", running[0]).returncode == 0
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 75, err  # incomplete: the cancelled case is to be measured again
    assert "incomplete: 1 measurements were stopped" in err and f"--resume {folder}" in err
    # accounting is off on this cluster: said once, not sacct's error on every poll
    assert err.count("job accounting is off here") == 1 and "Bypassing sacct error" not in err
    assert "Slurm accounting storage is disabled" not in err.splitlines()
    before = read_rows(out)
    print("before resume:", sorted((r.impl, r.shape, r.status) for r in before))
    assert statuses(out) == Counter({"ok": 3, "stopped": 1}), [(r.impl, r.status, r.message) for r in before]
    (stopped,) = [r for r in before if r.status == "stopped"]
    assert (stopped.impl, stopped.shape) == ("torch_slow_build", (2, 3, 16, 16))
    assert "SIGTERM" in stopped.message and "--resume measures it again" in stopped.message
    assert left_after(tag, 30) == []  # the job's bench run and its workers are gone
    print("processes left after the cancel:", len(tagged(tag)))

    resumed = cli("run", "--resume", str(folder), env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(1 to run)" in resumed.stderr and resumed.stderr.count("submitted job") == 1
    after = read_rows(out)
    print("after resume:", sorted((r.impl, r.shape, r.status) for r in after))
    assert statuses(out) == Counter({"ok": 4})
    assert len({r.key() for r in after}) == 4 and not BLAMES & {r.status for r in after}
    assert left_after(tag, 30) == []
    print("processes left after the resume:", len(tagged(tag)))


def test_sigkill_of_a_local_controller_leaves_no_process_and_an_immediate_resume_runs_once(tmp_path):
    pytest.importorskip("submitit", reason="the cluster path needs submitit (pinned submitit==1.5.*)")
    tag, mark = uuid.uuid4().hex, tmp_path / "mark"
    env = {"NORMBENCH_TEST_MARK": str(mark), "NORMBENCH_TEST_TAG": tag, "NORMBENCH_TEST_SLOW_S": "30"}
    folder, out = tmp_path / "jobs", tmp_path / "out.jsonl"
    proc = start(["run", "--executor", "local", "--folder", str(folder), "--out", str(out), *SWEEP], env)
    wait_for(mark, proc)

    second = cli("run", "--resume", str(folder), env=env, timeout=120)  # while the first still runs
    assert second.returncode == 2, second.stderr
    said, line = second.stderr.strip().splitlines()
    assert said == f"resume of {folder} imports code from: --impl-path {IMPLS}"
    assert f"submission {folder} is being measured by another normbench (pid {proc.pid}" in line

    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)  # its pipes close when the last process holding them (a job) ends
    left = left_after(tag, 10)
    gone_s = time.monotonic() - killed
    print(f"processes left after SIGKILL of the controller: {len(left)} ({gone_s:.1f} s)")
    assert left == []  # the job saw its controller go and stopped: no orphan measures on
    assert gone_s < 20  # not after the 30 s build: the job did not finish the case on its own
    shard = folder / "shard-torch-cpu.jsonl"
    before = read_rows(shard)
    print("torch shard before resume:", sorted((r.impl, r.shape, r.status) for r in before))
    assert [r.status for r in before if r.shape == (2, 3, 16, 16)] == ["stopped"]

    resumed = cli("run", "--resume", str(folder), env=env, timeout=300)  # at once: nothing to wait for
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = read_rows(out)
    print("after resume:", sorted((r.impl, r.shape, r.status, r.concurrent) for r in rows))
    assert statuses(out) == Counter({"ok": 4}) and not any(r.concurrent for r in rows)
    keys = [r.key() for r in read_rows(shard)]
    assert len(keys) == len(set(keys)) == 2  # nothing measured twice
    assert left_after(tag, 10) == []


def test_an_implementation_that_stops_its_own_run_is_given_up_after_three_stops(tmp_path):
    out = tmp_path / "out.jsonl"
    impls = ["--impl-path", str(ROOT / "tests" / "data" / "stop_impls"), "--impl", "torch_stops_its_run",
             "--impl", "torch_sigterms_itself"]  # fmt: skip
    args = ["--shape", "2,3,8,8", "--shape", "2,3,16,16", "--preset", "smoke", "--max-time", "0.05",
            "--threads", "1", "--device", "cpu"]  # fmt: skip
    first = cli("run", "--out", str(out), *impls, *args)
    assert first.returncode == 143, first.stderr[-3000:]
    assert "(1 of them stopped mid-case)" in first.stderr
    for k in (2, 3):
        again = cli("run", "--resume", str(out))
        assert again.returncode == 143, again.stderr[-3000:]
        (row,) = [r for r in read_rows(out) if r.impl == "torch_stops_its_run" and r.shape == (2, 3, 16, 16)]
        assert row.status == ("stopped" if k < 3 else "crashed"), row.message
    assert "in flight at 3 stops of this run" in row.message
    last = cli("run", "--resume", str(out))
    assert last.returncode == 0, last.stderr[-3000:]
    rows = {(r.impl, r.shape): r for r in read_rows(out)}
    assert len(rows) == len(read_rows(out)) == 4
    itself = rows[("torch_sigterms_itself", (2, 3, 16, 16))]
    assert itself.status == "crashed" and "killed by SIGTERM" in itself.message  # its own doing: blamed
    assert all(r.status == "ok" for (impl, shape), r in rows.items() if shape == (2, 3, 8, 8))
