"""Ctrl-C mid-run leaves valid JSONL and says how to resume; resume fills the gaps exactly once."""

import json
import signal
import subprocess
import sys
import time

from bench.results import read_env, read_envs, read_rows
from tests.conftest import ROOT, SIMULATED_CACHE, cli

ARGS = [
    "--impl",
    "torch_group_norm",
    "--impl",
    "torch_layer_norm",
    "--impl",
    "torch_view",
    "--device",
    "cpu",
    "--shape",
    "2,3,8,8",
    "--shape",
    "2,4,16,16",
    "--shape",
    "4,8,16,16",
    "--mode",
    "forward",
    "--mode",
    "backward",
    "--max-time",
    "0.2",
    "--preset",
    "smoke",
    *SIMULATED_CACHE,
]


def test_interrupt_then_resume(tmp_path):
    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--out", str(out), *ARGS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # impatient: a second Ctrl-C loses nothing either
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"resume with: python -m bench run --resume {out}" in err
    lines = out.read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line whole
    first = read_rows(out)
    assert 2 <= len(first) < 18
    env = read_env(out)
    assert env["interrupted"] is True and env["finished"]

    # The printed command alone restores the run's options: no sweep of everything.
    resumed = cli("run", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    rows = read_rows(out)
    keys = [r.key() for r in rows]
    assert len(keys) == len(set(keys)) == 18  # 3 impls x 3 shapes x 2 modes, none twice
    assert {r.run_id for r in rows} == {first[0].run_id}

    again = cli("run", "--resume", str(out), *ARGS)  # the same options again: fine
    assert again.returncode == 0
    assert "nothing to resume" in again.stderr
    assert len(read_rows(out)) == 18

    other = cli("run", "--resume", str(out), "--shape", "2,3,4,4")
    assert other.returncode == 2
    assert other.stderr.startswith(f"error: --resume '{out}': options differ from that run's: shapes=")
    assert len(other.stderr.strip().splitlines()) == 1 and len(read_rows(out)) == 18


def test_sigterm_exits_143_and_two_runs_into_one_file_keep_their_own_records(tmp_path):
    out = tmp_path / "r.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--out", str(out), *ARGS],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 1):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM" in err
    second = cli("run", "--out", str(out), "--impl", "torch_group_norm", "--shape", "2,3,4,4",
                 "--device", "cpu", "--max-time", "0.05", "--preset", "smoke")  # fmt: skip
    assert second.returncode == 0, second.stderr
    runs = read_envs(out)
    ids = {r.run_id for r in read_rows(out)}
    assert len(runs) == len(ids) == 2 and set(runs) == ids
    first_id, second_id = list(runs)
    assert runs[first_id]["interrupted"] is True and runs[second_id]["interrupted"] is False
    assert runs[first_id]["config"]["shapes"] != runs[second_id]["config"]["shapes"]
