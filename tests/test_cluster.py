"""`bench run --executor`: the parent's orchestration in-process (a fake executor and clock: jobs
scheduled per device, jobs that die become rows, --resume submits only what is missing), the SLURM
request through a fake `sbatch` on PATH, and the real local executor on a tiny sweep."""

from __future__ import annotations

import io
import itertools
import json
import os
import stat
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from bench import shards
from bench.cluster import ClusterOptions, ClusterRun, JobSpec, Marker, SubmititBackend, read_manifest
from bench.errors import BenchError
from bench.progress import Progress
from bench.results import ResultsWriter, read_envs, read_rows, write_env
from bench.runner import ROOT, make_plan
from bench.workers import unrun_row
from tests.conftest import cli
from tests.test_shards import IMPLS, NAMES, cfg, order

# ---- the parent, in-process --------------------------------------------------------------------


@dataclass
class World:
    """The fake cluster: a clock that ticks when the parent sleeps, and every job submitted."""

    tick: int = 0
    jobs: list[FakeJob] = field(default_factory=list)

    def clock(self) -> float:
        return float(self.tick)

    def sleep(self, seconds: float) -> None:
        self.tick += 1
        for job in self.jobs:
            job.step()


class FakeJob:
    """A job that runs for `ticks` polls, then writes its rows (the first `rows` of them, or all)
    as run_job would, and ends as `end` says: ok, or a crash/stop with a log tail."""

    ids = itertools.count(100)

    def __init__(self, spec: JobSpec, world: World, ticks=2, rows=None, end="ok", why="", host="node1"):
        self.spec, self.world = spec, world
        self.job_id = str(next(self.ids))
        self.ticks, self.rows, self.end, self.why, self.host = ticks, rows, end, why, host
        self.started, self.ended = world.tick, None
        self.cancelled = False
        world.jobs.append(self)

    def step(self) -> None:
        if self.ended is None:
            self.ticks -= 1
            if self.ticks <= 0:
                self.write()
                self.ended = self.world.tick

    def write(self) -> None:
        c = self.spec.cfg
        plan = shards.restrict(make_plan(c, IMPLS, list(c.impl_globs), {}), order(c), groups=c.groups)
        out = Path(self.spec.out)
        have = {r.key() for r in read_rows(out)} if out.exists() else set()
        todo = [(spec, job, n) for spec in plan.groups for job in spec.jobs for n in job.impls]
        rows = []
        for spec, job, name in todo:
            backend = IMPLS[name].backends[0] if spec.backend is None else spec.backend
            rows.append(replace(unrun_row(IMPLS[name], backend, job.case, "ok", ""), time_median_s=1e-3))
        rows = [r for r in rows + plan.direct if r.key() not in have][: self.rows]
        w = ResultsWriter(out)
        for r in rows:
            w.write(replace(r, run_id=self.spec.run_id, machine=self.host))
        w.close()
        write_env(
            out,
            self.spec.run_id,
            {"run_id": self.spec.run_id, "host": self.host, "plan_id": self.spec.plan_id},
        )

    def state(self) -> str:
        if self.ended is None:
            return "RUNNING"
        return {"ok": "COMPLETED", "crashed": "FAILED", "stopped": "TIMEOUT"}[self.end]

    def done(self) -> bool:
        return self.ended is not None

    def outcome(self):
        return ("ok", "") if self.end == "ok" else (self.end, self.why)

    def node(self) -> str:
        return self.host

    def cancel(self) -> None:
        self.cancelled = True
        if self.ended is None:
            self.ended = self.world.tick


class FakeBackend:
    def __init__(self, world: World, local=True, scripts=None, default=None):
        self.world, self.local, self.scripts, self.default = world, local, scripts or {}, default or {}
        self.submissions: list[list[JobSpec]] = []

    def submit(self, specs, gpu):
        self.submissions.append(list(specs))
        return [FakeJob(s, self.world, **self.scripts.get(s.label, self.default)) for s in specs]


class PlannedHere(ClusterRun):
    """No discovery: the test's implementations, planned as `bench run` plans them."""

    def plan(self):
        return make_plan(self.cfg, IMPLS, NAMES, rotation={}), NAMES


def cluster(tmp_path, world, backend, resume=False, opts=None, gpus=None, **kw):
    c = kw.pop("config", None) or cfg(dtypes=("float32",), modes=("forward",))
    return PlannedHere(
        c, opts or ClusterOptions(), tmp_path / "jobs", tmp_path / "out.jsonl", "rid", resume=resume,
        backend=backend, progress=Progress(stream=io.StringIO()), clock=world.clock,
        sleep=world.sleep, poll_s=0, gpus=gpus,
    )  # fmt: skip


def all_keys(c):
    return {k for _, k in shards.labelled_keys(make_plan(c, IMPLS, NAMES, rotation={}))}


def test_local_jobs_run_one_per_gpu_together_and_cpu_jobs_alone(tmp_path):
    world = World()
    c = cfg(dtypes=("float32",), modes=("forward",), devices=("cpu", "cuda:0"))
    backend = FakeBackend(world)
    run = cluster(tmp_path, world, backend, gpus=["0", "GPU-5d1e"], config=c)
    run.execute()
    jobs = world.jobs
    gpu_jobs = [j for j in jobs if j.spec.label.endswith("/cuda:0")]
    cpu_jobs = [j for j in jobs if j.spec.label.endswith("/cpu")]
    assert len(gpu_jobs) >= 3 and len(cpu_jobs) >= 3

    def overlap(a, b):
        return a.started < b.ended and b.started < a.ended

    for a in cpu_jobs:  # a CPU job runs with nothing else
        assert not any(overlap(a, b) for b in jobs if b is not a), a.spec.label
        assert a.spec.gpu is None
    for a in gpu_jobs:  # GPU jobs run together, each on a GPU of its own
        together = [b for b in gpu_jobs if b is not a and overlap(a, b)]
        assert len(together) <= 1 and all(b.spec.gpu != a.spec.gpu for b in together)
    assert {j.spec.gpu for j in gpu_jobs} == {"0", "GPU-5d1e"}
    assert any(overlap(a, b) for a in gpu_jobs for b in gpu_jobs if a is not b)
    rows = read_rows(tmp_path / "out.jsonl")
    assert {r.key() for r in rows} == all_keys(c) and {r.machine for r in rows} == {"node1"}


def test_every_measurement_has_exactly_one_job_and_riders_go_with_their_device(tmp_path, monkeypatch):
    from bench import frameworks

    keras = frameworks.get("keras")
    monkeypatch.setattr(type(keras), "missing", lambda self, backend=None: "not here")
    world = World()
    run = cluster(tmp_path, world, FakeBackend(world))
    c = run.cfg
    jobs = run.jobs_of(*run.plan(), "pid")
    assert [j.label for j in jobs] == ["numpy/cpu", "torch/cpu"]  # keras: nothing to measure here
    assert jobs[0].labels == ("numpy/cpu", "keras-jax/cpu", "keras-tensorflow/cpu", "keras-torch/cpu")
    expected = [k for j in jobs for k in j.expected]
    assert len(expected) == len(set(expected)) and set(expected) == all_keys(c)
    spec = jobs[0].spec
    assert spec.cfg.groups == jobs[0].labels and spec.cfg.impl_globs == ("k", "n")
    assert (spec.run_id, spec.plan_id, spec.out) == (
        "rid",
        "pid",
        str(tmp_path / "jobs" / "shard-numpy-cpu.jsonl"),
    )


def test_a_job_that_dies_leaves_rows_not_a_gap_and_resume_submits_only_what_is_missing(tmp_path):
    world = World()
    scripts = {
        "torch/cpu": dict(rows=1, end="crashed", why="ended without a result (FINISHED): Traceback | Boom"),
        "numpy/cpu": dict(rows=0, end="stopped", why="was stopped (TIMEOUT): Job not requeued: timed-out"),
    }
    backend = FakeBackend(world, scripts=scripts)
    run = cluster(tmp_path, world, backend)
    run.execute()
    rows = read_rows(tmp_path / "out.jsonl")
    assert {r.key() for r in rows} == all_keys(run.cfg)  # every measurement has a row
    by = {(r.impl, r.status) for r in rows}
    assert ("t", "ok") in by or ("t2", "ok") in by  # the torch job measured one before it died
    crashed = [r for r in rows if r.status == "crashed"]
    torch_job = next(j for j in world.jobs if j.spec.label == "torch/cpu")
    assert crashed and all(
        r.message
        == f"cluster job {torch_job.job_id} (torch/cpu) ended without a result (FINISHED): Traceback | Boom"
        for r in crashed
    )
    assert {r.machine for r in crashed} == {"node1"} and {r.run_id for r in rows} == {"rid"}
    stopped = [r for r in rows if r.status == "stopped"]  # its time limit: no implementation's doing
    assert stopped and all("timed-out" in r.message and r.framework == "numpy" for r in stopped)
    assert run.stopped == len(stopped)  # `bench run` exits 75 then: incomplete, --resume completes it
    assert (tmp_path / "jobs" / "failed-torch-cpu.jsonl").is_file()
    # unavailable rows the dead jobs never wrote are the plan's own
    assert {r.message for r in rows if r.impl == "gone"} == {"ModuleNotFoundError: No module named 'x'"}

    world2 = World()
    again = FakeBackend(world2)
    cluster(tmp_path, world2, again, resume=True).execute()
    resubmitted = sorted(s.label for batch in again.submissions for s in batch)
    assert resubmitted == ["numpy/cpu", "torch/cpu"]  # the keras jobs were whole
    rows = read_rows(tmp_path / "out.jsonl")
    assert {r.key() for r in rows} == all_keys(run.cfg)
    assert {r.status for r in rows} == {"ok", "unavailable"}
    assert not (tmp_path / "jobs" / "failed-torch-cpu.jsonl").exists()
    manifest = read_manifest(tmp_path / "jobs")
    assert len(manifest["jobs"]["torch/cpu"]["submitted"]) == 2


def test_resume_refuses_a_plan_that_changed(tmp_path):
    world = World()
    cluster(tmp_path, world, FakeBackend(world)).execute()
    other = cfg(dtypes=("float32",), modes=("forward",), shapes=((2, 3, 4, 4),))
    with pytest.raises(BenchError, match="the plan differs from the submission's"):
        cluster(tmp_path, world, FakeBackend(world), resume=True, config=other).execute()


def test_an_interrupt_cancels_the_jobs_merges_what_is_there_and_says_how_to_resume(tmp_path):
    world = World()
    backend = FakeBackend(world, scripts={"keras-jax/cpu": dict(ticks=1)}, default=dict(ticks=50))
    run = cluster(tmp_path, world, backend, opts=ClusterOptions(cpu_jobs=4))
    messages = []
    run.say = messages.append
    real_sleep = run.sleep

    def sleep_then_stop(s):
        real_sleep(s)
        if world.tick == 3:
            run.stop_signal = 2

    run.sleep = sleep_then_stop
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert any(j.cancelled for j in world.jobs)
    assert "resume with: python -m bench run --resume" in messages[-1]
    assert {r.impl for r in read_rows(tmp_path / "out.jsonl")} == {"k"}  # keras-jax's rows, merged


def test_rows_measured_while_another_job_ran_on_the_host_are_concurrent(tmp_path):
    t = [100.0]
    a = Marker(tmp_path, "torch/cpu", clock=lambda: t[0])
    assert not a.others_during(0, 200)
    other = tmp_path / "otherhost-1.json"
    other.write_text(json.dumps({"host": "otherhost", "pid": 1, "started": 0}))
    assert not a.others_during(0, 200)  # another host's job does not disturb this one
    mine = tmp_path / f"{a.host}-{os.getppid()}.json"  # alive: this test's parent process
    mine.write_text(json.dumps({"host": a.host, "pid": os.getppid(), "started": 150.0}))
    t[0] = 200.0  # it is still running
    assert not a.others_during(100, 140) and a.others_during(140, 160) and a.others_during(190, 200)
    mine.write_text(json.dumps({"host": a.host, "pid": os.getppid(), "started": 150.0, "ended": 155.0}))
    t[0] = 300.0
    assert not a.others_during(160, 300) and a.others_during(154, 300)


# ---- the SLURM request, through a fake sbatch ------------------------------------------------------

FAKE_SBATCH = """#!/bin/sh
# records its argv, the submission file and PYTHONPATH; answers as sbatch does
n=$(ls "$RECORD" | grep -c argv)
echo "$@" > "$RECORD/$n.argv"
cp "$1" "$RECORD/$n.sbatch"
echo "$PYTHONPATH" > "$RECORD/$n.pythonpath"
echo "Submitted batch job $((123 + n))"
"""


def fake_slurm(tmp_path, monkeypatch, sacct=""):
    pytest.importorskip("submitit", reason="the cluster path needs submitit (pinned submitit==1.5.*)")
    bin_ = tmp_path / "bin"
    record = tmp_path / "record"
    bin_.mkdir()
    record.mkdir()
    scripts = {"sbatch": FAKE_SBATCH, "srun": "#!/bin/sh\nexit 0\n", "scancel": "#!/bin/sh\nexit 0\n"}
    if sacct:
        scripts["sacct"] = f"#!/bin/sh\ncat <<'EOF'\n{sacct}\nEOF\n"
    for name, text in scripts.items():
        (bin_ / name).write_text(text)
        (bin_ / name).chmod((bin_ / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(record))
    return record


def test_the_slurm_request_has_the_options_given(tmp_path, monkeypatch):
    record = fake_slurm(tmp_path, monkeypatch)
    opts = ClusterOptions("slurm", partition="gpu", constraint="h100", gpus_per_job=2, time_min=30,
                          array_parallelism=1)  # fmt: skip
    backend = SubmititBackend(opts, tmp_path / "jobs", threads=8)
    spec = JobSpec(cfg(), "rid", "pid", "torch/cuda:0", str(tmp_path / "jobs" / "shard-torch-cuda-0.jsonl"))
    gpu_jobs = backend.submit([spec, replace(spec, label="jax/cuda:0")], gpu=True)
    cpu_jobs = backend.submit([replace(spec, label="torch/cpu")], gpu=False)
    assert [j.job_id for j in gpu_jobs + cpu_jobs] == ["123_0", "123_1", "124"]
    gpu, cpu = (record / "0.sbatch").read_text(), (record / "1.sbatch").read_text()
    for line in ("--partition=gpu", "--constraint=h100", "--gpus-per-node=2", "--time=30", "--array=0-1%1",
                 "--cpus-per-task=8", "--job-name=normbench-gpu"):  # fmt: skip
        assert f"#SBATCH {line}\n" in gpu, gpu
    assert "--exclusive" not in gpu
    for line in ("--partition=gpu", "--constraint=h100", "--time=30", "--exclusive", "--cpus-per-task=8"):
        assert f"#SBATCH {line}\n" in cpu, cpu
    assert "gpus-per-node" not in cpu and "--array" not in cpu  # no GPU request carried over
    assert "-m submitit.core._submit" in cpu
    assert str(ROOT) in (record / "0.pythonpath").read_text().split(os.pathsep)[0]


def test_slurm_jobs_stopped_or_failed_become_rows_with_their_node_and_log_tail(tmp_path, monkeypatch):
    sacct = """JobID|State|NodeList
123_0|TIMEOUT|gpu-node-7
123_1|PREEMPTED|gpu-node-8
124_0|OUT_OF_MEMORY|cpu-node-2
124_1|FAILED|cpu-node-3"""
    fake_slurm(tmp_path, monkeypatch, sacct)
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

    monkeypatch.setattr(SlurmJob, "watcher", SlurmInfoWatcher(delay_s=600))  # no state from other tests
    monkeypatch.setattr("bench.cluster.SubmititJob.done", lambda self: True)  # sacct's pace is not tested
    world = World()
    c = cfg(dtypes=("float32",), modes=("forward",), shapes=((2, 3, 4, 4),), devices=("cpu", "cuda:0"))

    class Three(PlannedHere):
        def plan(self):
            return make_plan(self.cfg, IMPLS, ["t", "n", "gone"], rotation={}), ["t", "n", "gone"]

    run = Three(c, ClusterOptions("slurm", time_min=5), tmp_path / "jobs", tmp_path / "out.jsonl", "rid",
                progress=Progress(stream=io.StringIO()), clock=world.clock, sleep=world.sleep,
                poll_s=0)  # fmt: skip
    logs = tmp_path / "jobs" / "logs"
    logs.mkdir(parents=True)
    tail = (
        "srun: error: gpu-node-7: task 0: Killed\nslurmstepd: *** JOB 123 CANCELLED DUE TO TIME LIMIT ***\n"
    )
    (logs / "123_0_0_log.err").write_text("starting\n" * 10 + tail)
    run.execute()
    rows = {(r.impl, r.device): r for r in read_rows(tmp_path / "out.jsonl")}
    timed_out = rows[("n", "cuda:0")]  # the scheduler stopped it: no implementation's result
    assert (timed_out.status, timed_out.machine) == ("stopped", "gpu-node-7")
    assert timed_out.message == (
        "cluster job 123_0 (numpy/cuda:0) was stopped (TIMEOUT) before it measured this: starting | srun: "
        "error: gpu-node-7: task 0: Killed | slurmstepd: *** JOB 123 CANCELLED DUE TO TIME LIMIT ***"
    )
    assert (rows[("t", "cuda:0")].status, rows[("t", "cuda:0")].machine) == ("stopped", "gpu-node-8")
    assert (rows[("n", "cpu")].status, rows[("n", "cpu")].machine) == ("oom", "cpu-node-2")
    assert rows[("t", "cpu")].message == "cluster job 124_1 (torch/cpu) ended without a result (FAILED)"
    assert rows[("gone", "cpu")].status == "unavailable" and len(rows) == 6
    hosts = {e["host"] for e in read_envs(tmp_path / "out.jsonl").values()}
    assert hosts == {"gpu-node-7", "gpu-node-8", "cpu-node-2", "cpu-node-3"}  # four machines, four runs


# ---- the real local executor ----------------------------------------------------------------------

IMPL_PATH = str(ROOT / "tests" / "data" / "cluster_impls")
SWEEP = ["--preset", "smoke", "--device", "cpu", "--impl-path", IMPL_PATH, "--impl", "torch_group_norm",
         "--impl", "torch_kills_job", "--impl", "numpy_two_pass", "--shape", "2,3,8,8",
         "--shape", "2,3,16,16", "--max-time", "0.05", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    out = tmp_path_factory.mktemp("plain") / "plain.jsonl"
    proc = cli("run", *SWEEP, "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def keys_of(path):
    return sorted(r.key() for r in read_rows(path))


@pytest.mark.slow
def test_two_shards_merged_are_the_plain_run(plain, tmp_path):
    for k in (1, 2):
        proc = cli("run", *SWEEP, "--shard", f"{k}/2", "--out", str(tmp_path / f"s{k}.jsonl"), timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert keys_of(tmp_path / "s1.jsonl") and keys_of(tmp_path / "s2.jsonl")
    proc = cli("merge", str(tmp_path / "m.jsonl"), str(tmp_path / "s1.jsonl"), str(tmp_path / "s2.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert keys_of(tmp_path / "m.jsonl") == keys_of(plain)
    (env,) = read_envs(tmp_path / "m.jsonl").values()
    assert env["shard"] == "1/2, 2/2" and env["plan_id"] == read_envs(plain).popitem()[1]["plan_id"]


@pytest.mark.slow
def test_local_jobs_a_killed_one_leaves_rows_resume_fills_them_and_the_merge_is_reported(plain, tmp_path):
    pytest.importorskip("submitit", reason="the cluster path needs submitit (pinned submitit==1.5.*)")
    folder, out = tmp_path / "jobs", tmp_path / "merged.jsonl"
    args = ("run", *SWEEP, "--executor", "local", "--folder", str(folder), "--out", str(out), "--time", "10")
    proc = cli(*args, env={"NORMBENCH_TEST_KILL_JOB": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "submitted job" in proc.stderr and "crashed" in proc.stderr
    rows = read_rows(out)
    assert keys_of(out) == keys_of(plain)  # two jobs, merged: the plain run's cases, no gap
    dead = [r for r in rows if r.status == "crashed"]
    assert dead and all(r.framework == "torch" and "ended without a result" in r.message for r in dead)
    assert any(r.status == "ok" and r.framework == "torch" for r in rows)  # what it measured first stays
    assert all(r.status == "ok" for r in rows if r.framework == "numpy")
    assert (folder / "shard-torch-cpu.jsonl").is_file() and (folder / "shard-numpy-cpu.jsonl").is_file()

    proc = cli("run", "--resume", str(folder), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(1 to run)" in proc.stderr and proc.stderr.count("submitted job") == 1
    assert keys_of(out) == keys_of(plain)
    assert {r.status for r in read_rows(out)} == {"ok"}
    (env,) = read_envs(out).values()
    assert env["host"] and len(env["copy_gbps_samples"]["cpu"]) >= 3  # each job measured its own

    report = tmp_path / "report"
    proc = cli("report", str(out), "--out", str(report))
    assert proc.returncode == 0 and (report / "index.html").is_file(), proc.stderr[-2000:]
    proc = cli("compare", str(plain), str(out))
    assert proc.returncode in (0, 1), proc.stderr[-2000:]


def test_cluster_bad_input_is_one_line(tmp_path):
    for args, message in [
        (["run", "--executor", "pbs"], "unknown executor 'pbs'; expected one of: local, slurm"),
        (["run", "--partition", "gpu"], "--partition needs --executor local|slurm"),
        (["run", "--executor", "local", "--partition", "gpu"], "--partition is a SLURM option"),
        (["run", "--executor", "local", "--shard", "1/2"], "--shard with --executor"),
        (["run", "--executor", "local", "--time", "0"], "bad --time '0'; expected a positive integer"),
        (["run", "--executor", "slurm", "--device", "cuda:1"], "--device 'cuda:1' with --executor"),
        (["run", "--resume", str(tmp_path)], "no submission.json in it"),
    ]:
        proc = cli(*args, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr


def test_a_run_lock_names_its_holder_and_goes_with_it_even_after_sigkill(tmp_path):
    import signal
    import subprocess

    from bench.locks import RunLock

    path = tmp_path / ".lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bench.locks import RunLock; "
         f"RunLock(__import__('pathlib').Path({str(path)!r}), 'x').acquire(); print('held', flush=True); "
         "time.sleep(600)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BenchError) as err:
            RunLock(path, "submission F").acquire(wait_s=0.3)
        assert f"submission F is being measured by another normbench (pid {holder.pid} on " in str(err.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = RunLock(path, "submission F").acquire()  # the kernel dropped the dead holder's lock
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()


def test_submitit_says_a_sacct_error_once_and_writes_nothing_to_stdout():
    pytest.importorskip("submitit", reason="the cluster path needs submitit (pinned submitit==1.5.*)")
    import logging

    import submitit  # noqa: F401  (configures its logger)

    from bench.cluster import _OnceFilter, _quiet_submitit

    logger = logging.getLogger("submitit")
    for f in [f for f in logger.filters if isinstance(f, _OnceFilter)]:
        logger.removeFilter(f)  # a fresh controller's
    _quiet_submitit()
    _quiet_submitit()  # twice: one filter
    assert sum(isinstance(f, _OnceFilter) for f in logger.filters) == 1
    assert not any(getattr(h, "stream", None) in (sys.stdout, sys.__stdout__) for h in logger.handlers)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    keep = Keep()
    logger.addHandler(keep)
    try:
        for call in (1, 2, 3):
            logger.warning(f"Call #{call} - Bypassing sacct error Command 'sacct' returned 1.")
        logger.warning("Bypassing signal SIGTERM")
    finally:
        logger.removeHandler(keep)
    assert len(seen) == 2 and "Call #1" in seen[0] and "said once" in seen[0]
    assert seen[1] == "Bypassing signal SIGTERM"
