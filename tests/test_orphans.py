"""When normbench ends, every process it started ends too: forked children of a builder, and the
workers of a parent killed with SIGKILL."""

import os
import signal
import subprocess
import sys
import time

import psutil

from tests.conftest import ROOT, SIMULATED_CACHE, run_rows

FAULTY = str(ROOT / "tests" / "faulty")


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_builder_that_forks_neither_stalls_the_run_nor_outlives_it(tmp_path, monkeypatch):
    pidfile = tmp_path / "pids"
    monkeypatch.setenv("NORMBENCH_TEST_PIDFILE", str(pidfile))
    started = time.monotonic()
    proc, rows = run_rows(
        tmp_path, "--impl-path", FAULTY, "--impl", "torch_forks", "--impl", "torch_group_norm",
        "--shape", "2,3,8,8", "--device", "cpu", "--max-time", "0.05", "--preset", "smoke",
        "--case-timeout", "100",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert time.monotonic() - started < 90  # the child holds the event pipe: EOF never comes
    assert {r.impl: r.status for r in rows} == {"torch_forks": "ok", "torch_group_norm": "ok"}
    children = [int(p) for p in pidfile.read_text().split()]
    assert children and not any(alive(pid) for pid in children)


def test_sigkill_of_the_parent_takes_its_busy_worker_and_the_workers_children_down(tmp_path):
    pidfile = tmp_path / "in_the_call"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--impl-path", FAULTY, "--impl", "torch_hang",
         "--shape", "2,3,8,8", "--device", "cpu", "--preset", "smoke", "--out", str(tmp_path / "r.jsonl"),
         *SIMULATED_CACHE],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "NORMBENCH_TEST_PIDFILE": str(pidfile)},
    )  # fmt: skip
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (pidfile.exists() and pidfile.read_text().endswith("\n")):
        time.sleep(0.2)
    assert pidfile.exists(), "the run worker never reached torch_hang's call"
    (busy,) = map(int, pidfile.read_text().split())  # the run worker, inside torch_hang's first call
    assert busy in [p.pid for p in parent.children(recursive=True)]
    assert any("bench.worker" in " ".join(p.cmdline()) for p in parent.children(recursive=True))
    family = [w.pid for w in parent.children(recursive=True)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(pid) for pid in family):
        time.sleep(0.2)
    assert not [pid for pid in family if alive(pid)]
