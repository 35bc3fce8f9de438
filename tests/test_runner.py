"""The runner's orchestration, in-process: planning, resume, configuration and ETA, no framework."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench import memory
from bench.cases import Case, MeasurementKey
from bench.errors import BenchError
from bench.progress import Progress
from bench.registry import Impl
from bench.results import Row
from bench.runner import Run, RunConfig, case_buffers, cases, config_differences, make_plan, select_impls
from bench.timing import TimingSettings


def impl(name, framework="torch", backends=("eager",), **kw):
    return Impl(
        name, framework, ("NCHW",), "population/eps@sqrt", backends, source=f"file /x/{name}.py", **kw
    )


IMPLS = {
    "t": impl("t"),
    "k": impl("k", "keras", ("tensorflow", "jax", "torch")),
    "n": impl("n", "numpy", ("numpy",)),
    "gone": impl("gone", unavailable="ModuleNotFoundError: No module named 'x'"),
}


def cfg(**kw):
    base = dict(shapes=((2, 3, 4, 4),), modes=("forward", "train"), threads=1, settings=TimingSettings())
    return RunConfig(**{**base, **kw})


def test_the_plan_has_a_group_per_framework_and_backend_and_a_row_for_everything_else():
    plan = make_plan(cfg(), IMPLS, ["t", "k", "n", "gone"], rotation={})
    labels = sorted(g.label for g in plan.groups)
    installed_keras = [lab for lab in labels if lab.startswith("keras-")]
    assert "torch/cpu" in labels and "numpy/cpu" in labels and installed_keras
    direct = {(r.impl, r.mode): r.message for r in plan.direct}
    assert direct[("n", "train")] == "NumPy has no autograd: forward only"
    assert direct[("gone", "forward")].startswith("ModuleNotFoundError")
    numpy = next(g for g in plan.groups if g.framework == "numpy")
    assert [j.case.mode for j in numpy.jobs] == ["forward"]
    keras_rows = [(r.backend, r.mode) for r in plan.direct if r.impl == "k"]
    assert all(b in ("tensorflow", "jax", "torch") for b, _ in keras_rows)
    assert plan.measurements + len(plan.direct) == 2 * (1 + 3 + 1 + 1)  # two modes


def test_a_case_too_large_for_memory_is_an_oom_row_not_a_crash():
    huge = (100000, 1000, 1000, 1000)
    config = cfg(shapes=((2, 3, 8, 8), huge, (2, 3, 4, 4)), modes=("forward",), max_memory_bytes=8 << 30)
    plan = make_plan(config, IMPLS, ["t"], rotation={})
    (oom,) = plan.direct
    assert oom.status == "oom" and oom.shape == huge and "over --max-memory 8.0 GiB; not run" in oom.message
    (group,) = plan.groups
    assert [j.case.shape for j in group.jobs] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert case_buffers(config, Case(shape=huge), 0) is None
    assert "its float64 reference" in oom.message and "one input buffer" in oom.message


# Hosts simulated: what the planner budgets must not depend on the machine that runs the suite.
SMALL_CACHE, BIG_CACHE = 32 << 20, 1 << 30


@pytest.mark.parametrize("effective", [SMALL_CACHE, BIG_CACHE], ids=["32MiB-cache", "1GiB-cache"])
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_small_case_runs_under_a_small_memory_limit_on_any_host(effective, warm):
    """The Xeon failure: a 480 MiB cache made the planner budget a cold rotation for a --warm-cache
    run, and the 256-buffer cap was ignored: 2x3x8x8 was refused as needing 1.9 GiB under 1 GiB."""
    settings = TimingSettings(warm_cache=warm)
    c = cfg(
        shapes=((2, 3, 8, 8),),
        modes=("forward", "train"),
        max_memory_bytes=int(1.5 * 2**30),
        settings=settings,
    )
    plan = make_plan(c, IMPLS, ["t"], rotation={"cpu": 2 * effective}, caches={"cpu": effective})
    assert not [r for r in plan.direct if r.status == "oom"]
    for case in cases(c, "cpu"):
        b = case_buffers(c, case, 2 * effective)
        assert b is not None
        assert b.count == (1 if warm else memory.MAX_BUFFERS)  # 1.5 KiB buffers: the cap, not the cache
        assert (
            b.held_bytes == b.count * memory.HELD_TENSORS[case.mode] * case.numel * 4 < 1 << 20
        )  # KiB, not GiB


def test_buffers_fit_the_memory_limit_and_the_state_says_what_was_rotated():
    case = Case(shape=(4, 64, 128, 128))  # 16 MiB per float32 tensor
    one = 16 << 20
    # A 1 GiB cache wants 2 GiB of rotating inputs: 128 buffers, held twice.
    b = memory.plan_buffers(case.numel, 4, "forward", True, 2 << 30, False, 0)
    assert (b.count, b.rotated_bytes, b.held_bytes) == (128, 128 * one, 256 * one)
    # Under 4 GiB the buffers get what is left beside the worker and the float64 reference.
    room = (4 << 30) - memory.WORKER_BASE_BYTES - memory.reference_bytes(case.numel, "forward")
    small = memory.plan_buffers(case.numel, 4, "forward", True, 2 << 30, False, 4 << 30)
    assert small.count == room // (2 * one) < 128
    assert memory.cache_state(small.rotated_bytes, 1 << 30) == "partly cached"
    assert memory.cache_state(b.rotated_bytes, 1 << 30) == "cold"
    assert memory.cache_state(memory.MAX_BUFFERS * 96 << 10, 128 << 20) == "warm"  # 8x3x32x32: 24 MiB
    assert memory.cache_state(one, 0) == ""
    # Backward rotates the input and the forward's saved output of each buffer.
    bw = memory.plan_buffers(case.numel, 4, "backward", True, 2 << 30, False, 0)
    assert bw.rotated_bytes == bw.count * 2 * one and bw.count == 64
    # On a GPU the buffers are on the device: the host holds only the reference.
    assert memory.plan_buffers(case.numel, 4, "forward", False, 2 << 30, False, 3 << 30).count == 128
    assert memory.plan_buffers(case.numel, 4, "forward", True, 0, False, 1 << 30) is None


def test_globs_select_in_order_and_a_bad_one_names_the_known():
    assert select_impls({"a_x", "a_y", "b"}, ("a_*", "b")) == ["a_x", "a_y", "b"]
    with pytest.raises(BenchError, match=r"--impl 'c\*' matches no implementation; known: a_x, a_y, b"):
        select_impls({"a_x", "a_y", "b"}, ("c*",))


def test_a_bad_glob_fails_before_any_framework_is_probed(monkeypatch, tmp_path):
    import bench.runner

    def no_probe(*a, **k):
        raise AssertionError("probed before checking --impl")

    monkeypatch.setattr(bench.runner, "discover", no_probe)
    run = Run(cfg(impl_globs=("nosuch_*",)), tmp_path / "r.jsonl", progress=Progress())
    with pytest.raises(BenchError, match="--impl 'nosuch_\\*' matches no implementation"):
        run.discover()


def test_resume_leaves_out_what_the_file_already_holds(tmp_path):
    plan = make_plan(cfg(), IMPLS, ["t"], rotation={})
    run = Run(cfg(), tmp_path / "r.jsonl", resume_run="r1", progress=Progress())
    run._impls = IMPLS
    (group,) = plan.groups
    run.done_keys = {MeasurementKey("t", "eager", group.jobs[0].case.key())}
    left = run._left(group)
    assert [j.case.mode for j in left.jobs] == ["train"]


def test_a_finished_run_is_not_resumed_and_starts_no_copy_worker(tmp_path, monkeypatch):
    import bench.runner as runner
    from bench.results import ResultsWriter, write_env
    from bench.workers import Discovery, unrun_row

    c = cfg(impl_globs=("t", "gone"))
    plan = make_plan(c, IMPLS, ["t", "gone"], rotation={})
    rows = list(plan.direct) + [
        unrun_row(IMPLS[n], "eager", j.case, "error", "x")
        for g in plan.groups
        for j in g.jobs
        for n in j.impls
    ]
    out = tmp_path / "r.jsonl"

    def write(rows):
        out.unlink(missing_ok=True)
        writer = ResultsWriter(out)
        for r in rows:
            writer.write(replace(r, run_id="r1"))
        writer.close()

    write(rows)
    write_env(out, "r1", {"config": c.to_json()})
    monkeypatch.setattr(runner.Run, "discover", lambda self: (Discovery(dict(IMPLS)), ["t", "gone"], []))
    monkeypatch.setattr(runner.Run, "measure_copy", lambda self: pytest.fail("the copy worker started"))
    said = []
    run = Run(c, out, resume_run="r1", progress=Progress())
    run.say = said.append
    assert run.execute() == out and said == [f"nothing to resume: every case of run r1 in {out} is measured"]
    write(rows[:-1])  # one measurement missing: resumed (the copy worker starts first)
    with pytest.raises(pytest.fail.Exception, match="the copy worker started"):
        Run(c, out, resume_run="r1", progress=Progress()).execute()


def test_the_eta_counts_measured_rows_only(tmp_path):
    clock = type("C", (), {"now": 100.0, "__call__": lambda self: self.now})()
    run = Run(cfg(), tmp_path / "r.jsonl", progress=Progress(), clock=clock)
    run.measure_started, run.measured_total = 100.0, 10
    assert run.eta_s() is None
    clock.now, run.measured = 104.0, 2
    assert run.eta_s() == pytest.approx(16.0)


def test_the_config_round_trips_and_resume_names_what_differs():
    c = cfg(impl_globs=("t",), devices=("cpu",), eps=1e-3, impl_paths=("/x",))
    assert RunConfig.from_json(c.to_json()) == c
    assert config_differences(c, {"shapes": ((2, 3, 4, 4),), "eps": 1e-3}) == []
    (diff,) = config_differences(c, {"shapes": ((2, 3, 8, 8),)})
    assert diff == "shapes=[[2, 3, 8, 8]] (the run has [[2, 3, 4, 4]])"


def test_rows_are_completed_with_the_runs_facts(tmp_path):
    run = Run(cfg(threads=2), tmp_path / "r.jsonl", run_id="rid", progress=Progress())
    run.env = {"host": "box", "copy_gbps_samples": {"cpu": [10.0, 30.0, 20.0]}}
    row = Row("t", "torch", "eager", "cpu", "float32", "NCHW", "forward", (2, 3, 4, 4), "ok",
              time_median_s=1e-3, ideal_bytes=4_000_000)  # fmt: skip
    done = run.complete(row)
    assert (done.run_id, done.machine, done.threads) == ("rid", "box", 2)
    assert done.achieved_gbps == pytest.approx(4.0) and done.sol_fraction == pytest.approx(0.2)


@pytest.mark.parametrize("reprobe", [False, True])
def test_the_copy_worker_reuses_the_machines_sweep_unless_told_to_reprobe(tmp_path, monkeypatch, reprobe):
    import bench.runner as runner

    specs = []

    class FakeCopyService:
        def __init__(self, spec, listener):
            specs.append(spec)

        def measure(self, copy_bytes):
            return True

    monkeypatch.setattr(runner, "CopyService", FakeCopyService)
    monkeypatch.setattr(runner.Run, "write_env", lambda self: None)
    run = Run(cfg(reprobe=reprobe), tmp_path / "r.jsonl", progress=Progress())
    run.measure_copy()
    (spec,) = specs
    assert spec.task == "copy" and spec.probe_cache and spec.reuse_sweep is not reprobe


@pytest.mark.parametrize("reprobe", [False, True])
def test_discovery_uses_the_probe_memo_unless_told_to_reprobe(tmp_path, monkeypatch, reprobe):
    import bench.runner as runner
    from bench.workers import Discovery

    calls = []
    monkeypatch.setattr(
        runner, "discover", lambda *args, **kwargs: calls.append(kwargs) or Discovery(dict(IMPLS))
    )
    Run(cfg(reprobe=reprobe), tmp_path / "r.jsonl", progress=Progress()).discover()
    assert [c["reuse"] for c in calls] == [not reprobe]


def test_reprobe_is_a_supervision_option_that_a_resume_may_change():
    from bench.cli import build_parser, run_options
    from bench.shards import SUPERVISION

    args = build_parser().parse_args(["run", "--reprobe"])
    assert run_options(args) == {"reprobe": True} and "reprobe" in SUPERVISION
    assert run_options(build_parser().parse_args(["run"])) == {}
