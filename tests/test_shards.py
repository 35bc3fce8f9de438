"""Shards and merge, in-process: the split is a partition of the plan, deterministic and machine-
independent; a merge keeps each row's machine, makes one run of one machine's shards and refuses
overlaps; report and compare read a merged file machine by machine. No framework is started."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench import frameworks, shards
from bench.analysis import load, run_info
from bench.compare import compare_files
from bench.errors import BenchError
from bench.progress import Progress
from bench.results import ResultsWriter, Row, read_envs, read_rows, write_env
from bench.runner import Run, RunConfig, cases, make_plan
from bench.shards import SUPERVISION
from bench.timing import TimingSettings
from tests.conftest import cli
from tests.test_runner import impl

IMPLS = {
    "t": impl("t"),
    "t2": impl("t2"),
    "k": impl("k", "keras", ("tensorflow", "jax", "torch")),
    "n": impl("n", "numpy", ("numpy",)),
    "gone": impl("gone", unavailable="ModuleNotFoundError: No module named 'x'"),
}
NAMES = ["t", "t2", "k", "n", "gone"]


def cfg(**kw):
    base = dict(
        shapes=((2, 3, 4, 4), (2, 3, 8, 8), (4, 8, 16, 16)),
        modes=("forward", "train"),
        dtypes=("float32", "float16"),
        threads=1,
        settings=TimingSettings(),
    )
    return RunConfig(**{**base, **kw})


def order(c):
    return [case.key() for d in c.devices for case in cases(c, d)]


def keys(plan):
    return [key for _, key in shards.labelled_keys(plan)]


def parts(c, plan, n):
    return [shards.restrict(plan, order(c), shard=f"{k}/{n}") for k in range(1, n + 1)]


@pytest.mark.parametrize("text", ["1/1", "2/4", " 3/3 "])
def test_a_shard_is_k_of_n(text):
    s = shards.parse_shard(text)
    assert s.text() == text.strip() and 1 <= s.index <= s.count


@pytest.mark.parametrize("text", ["3/2", "0/2", "x", "1/0", "2", "1/2/3", "-1/2", ""])
def test_a_bad_shard_is_one_clear_error(text):
    with pytest.raises(BenchError, match=r"bad --shard .*expected K/N with 1 <= K <= N, such as 2/4"):
        shards.parse_shard(text)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 200])
def test_the_shards_are_disjoint_and_their_union_is_the_whole_plan(n):
    c = cfg(max_memory_bytes=64 << 10)  # the largest case is an oom row: direct rows are sharded too
    plan = make_plan(c, IMPLS, NAMES, rotation={})
    assert any(r.status == "oom" for r in plan.direct) and any(r.status == "unavailable" for r in plan.direct)
    whole = keys(plan)
    assert len(whole) == len(set(whole))
    got = [keys(p) for p in parts(c, plan, n)]
    union = [k for part in got for k in part]
    assert sorted(union) == sorted(whole)  # nothing lost, nothing twice
    sizes = [len(p) for p in got]
    if n <= 3:  # near-equal: a cut moves by at most a quarter of a shard to keep a group whole
        assert max(sizes) - min(sizes) <= len(whole) / n / 2 + 8


def test_groups_stay_whole_when_a_cut_can_move_to_their_edge():
    c = cfg(dtypes=("float32",))
    plan = make_plan(c, {"t": IMPLS["t"], "n": IMPLS["n"]}, ["t", "n"], rotation={})
    first, second = parts(c, plan, 2)
    assert {g.label for g in first.groups} == {"numpy/cpu"}  # labels sorted: numpy before torch
    assert {g.label for g in second.groups} == {"torch/cpu"}
    # the numpy group's train cases need no worker (no autograd): they go with numpy's
    assert {r.impl for r in first.direct} == {"n"} and not second.direct


def test_the_split_does_not_depend_on_the_machine(monkeypatch):
    """Whether a framework is installed decides measured or unavailable, never the shard."""
    c = cfg()
    here = [set(keys(p)) for p in parts(c, make_plan(c, IMPLS, NAMES, rotation={}), 3)]
    keras = frameworks.get("keras")
    monkeypatch.setattr(type(keras), "missing", lambda self, backend=None: "not on this box")
    shuffled = dict(random.Random(1).sample(list(IMPLS.items()), len(IMPLS)))
    plan = make_plan(c, shuffled, NAMES, rotation={})
    assert not any(g.framework == "keras" for g in plan.groups)
    there = [set(keys(p)) for p in parts(c, plan, 3)]
    assert here == there


def test_the_plan_id_ignores_supervision_and_the_part_but_not_what_is_measured():
    c = cfg()
    plan = make_plan(c, IMPLS, NAMES, rotation={})
    pid = shards.plan_id(c, plan)
    assert set(SUPERVISION) <= set(shards.NOT_IDENTITY)
    same = replace(c, case_timeout_s=9.0, max_memory_bytes=1 << 40, shard="2/3", groups=("torch/cpu",))
    assert shards.plan_id(same, plan) == pid
    other = replace(c, shapes=((2, 3, 4, 4),))
    assert shards.plan_id(other, make_plan(other, IMPLS, NAMES, rotation={})) != pid


def test_a_run_keeps_its_shard_and_records_the_whole_plans_identity(tmp_path):
    c = cfg(shard="2/3")
    run = Run(c, tmp_path / "r.jsonl", progress=Progress())
    plan = make_plan(c, IMPLS, NAMES, rotation={})
    part = run.part_of(plan)
    assert run.env["shard"] == "2/3" and run.env["plan_id"] == shards.plan_id(c, plan)
    assert set(keys(part)) == set(keys(parts(c, plan, 3)[1]))
    assert RunConfig.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_a_cluster_jobs_groups_are_kept_with_their_unavailable_rows():
    c = cfg(groups=("torch/cpu",))
    plan = make_plan(c, IMPLS, NAMES, rotation={})
    part = shards.restrict(plan, order(c), groups=c.groups)
    assert [g.label for g in part.groups] == ["torch/cpu"]
    assert {r.impl for r in part.direct} == {"gone"}  # torch, unavailable: it would run in torch/cpu


def test_group_globs_pick_worker_groups_and_their_parts_make_the_whole_plan():
    c = cfg()
    plan = make_plan(c, IMPLS, NAMES, rotation={})
    picks = [("torch/*",), ("keras-*",), ("numpy/cpu", "keras-torch/cpu")]
    got = [set(keys(shards.restrict(plan, order(c), groups=g))) for g in picks]
    labels = {key: label for label, key in shards.labelled_keys(plan)}
    assert {labels[k] for k in got[0]} == {"torch/cpu"}
    assert {labels[k] for k in got[1]} == {"keras-tensorflow/cpu", "keras-jax/cpu", "keras-torch/cpu"}
    assert {labels[k] for k in got[2]} == {"numpy/cpu", "keras-torch/cpu"}
    assert got[0] | got[1] | {k for k in keys(plan) if labels[k] == "numpy/cpu"} == set(keys(plan))
    # Runs in parts share the plan's identity, whatever groups each took: merge makes one run.
    assert shards.plan_id(replace(c, groups=("torch/*",)), plan) == shards.plan_id(c, plan)


def test_a_group_glob_that_matches_nothing_names_the_groups():
    plan = make_plan(cfg(), IMPLS, NAMES, rotation={})
    shards.check_groups(plan, ["torch/*", "keras-jax/cpu"])
    expected = (
        r"--group 'triton/\*' matches no worker group of this run; its groups: "
        r"keras-jax/cpu, keras-tensorflow/cpu, keras-torch/cpu, numpy/cpu, torch/cpu"
    )
    with pytest.raises(BenchError, match=expected):
        shards.check_groups(plan, ["torch/*", "triton/*"])


# ---- merge ------------------------------------------------------------------------------------


def row(impl, shape=(2, 3, 4, 4), machine="box", run_id="r1", median=1e-3, seed=0, **kw):
    samples = tuple(float(s) for s in median * (1 + 0.01 * np.random.default_rng(seed).standard_normal(12)))
    return Row(impl, "torch", "eager", "cpu", "float32", "NCHW", "forward", shape, "ok", run_id=run_id,
               machine=machine, time_median_s=float(np.median(samples)), samples_s=samples, correct=True,
               **kw)  # fmt: skip


def results_file(path: Path, rows, env=None):
    w = ResultsWriter(path)
    for r in rows:
        w.write(r)
    w.close()
    if env is not None:
        write_env(path, rows[0].run_id, env)
    return path


def env(run_id, host="box", shard="", plan="p1", copy=(10.0,), cpu=None, gpus=(), **kw):
    """A sidecar record; hosts differ in hardware unless `cpu` (and `gpus`) say they are alike."""
    return {"run_id": run_id, "host": host, "shard": shard, "plan_id": plan,
            "cpu_model": cpu or f"{host} cpu", "cpu_cores": 8, "gpu_start": [{"name": g} for g in gpus],
            "copy_gbps_samples": {"cpu": list(copy)}, "config": {"shard": shard, "threads": 1},
            **kw}  # fmt: skip


def test_shards_of_one_machine_merge_into_one_run(tmp_path):
    a = results_file(tmp_path / "a.jsonl", [row("x", run_id="ra"), row("y", run_id="ra")],
                     env("ra", shard="1/2", copy=(10.0, 12.0), started="2026-01-01T10:00"))  # fmt: skip
    b = results_file(tmp_path / "b.jsonl", [row("x", (2, 3, 8, 8), run_id="rb")],
                     env("rb", shard="2/2", copy=(20.0,), started="2026-01-01T09:00"))  # fmt: skip
    messages = []
    (merged,) = shards.merge([b, a], tmp_path / "m.jsonl", say=messages.append)
    assert (merged.run_id, merged.machine, merged.rows, merged.shards) == ("ra", "box", 3, "1/2, 2/2")
    assert not messages
    rows = read_rows(tmp_path / "m.jsonl")
    assert {r.run_id for r in rows} == {"ra"} and {r.machine for r in rows} == {"box"}
    e = read_envs(tmp_path / "m.jsonl")["ra"]
    assert e["copy_gbps_samples"] == {"cpu": [10.0, 12.0, 20.0]} and e["copy_gbps"] == {"cpu": 12.0}
    assert [m["shard"] for m in e["merged_from"]] == ["1/2", "2/2"] and e["started"] == "2026-01-01T09:00"
    assert e["config"]["shard"] == ""
    assert run_info(load([tmp_path / "m.jsonl"]), "ra").shard == "1/2, 2/2"


def test_the_same_case_from_one_machine_twice_is_an_error_naming_both_files(tmp_path):
    a = results_file(tmp_path / "a.jsonl", [row("x", run_id="ra")], env("ra", shard="1/2"))
    b = results_file(tmp_path / "b.jsonl", [row("x", run_id="rb")], env("rb", shard="2/2"))
    with pytest.raises(BenchError) as err:
        shards.merge([a, b], tmp_path / "m.jsonl")
    assert f"in both {a} and {b}" in str(err.value) and "from machine box" in str(err.value)
    assert "x[eager] 2x3x4x4 float32 NCHW forward" in str(err.value)
    assert not (tmp_path / "m.jsonl").exists()
    # even when the two runs planned different sweeps: one machine cannot have two answers
    c = results_file(tmp_path / "c.jsonl", [row("x", run_id="rc")], env("rc", plan="p2"))
    with pytest.raises(BenchError, match="in both"):
        shards.merge([a, c], tmp_path / "m.jsonl")


def test_a_stopped_row_gives_way_to_the_measurement_wherever_it_is(tmp_path):
    stopped = replace(row("x", run_id="ra"), status="stopped", message="stopped by SIGTERM during build")
    # one file: the stop, then the resume that measured it; a reader sees the measurement alone
    one = results_file(tmp_path / "one.jsonl", [stopped, row("y", run_id="ra"), row("x", run_id="ra")])
    assert [(r.impl, r.status) for r in read_rows(one)] == [("y", "ok"), ("x", "ok")]
    assert [r.status for r in read_rows(one, history=True)] == ["stopped", "ok", "ok"]  # for the stop count
    again = results_file(tmp_path / "again.jsonl", [stopped, replace(stopped, message="again")])
    assert [r.message for r in read_rows(again)] == ["again"]  # stopped twice: the last one says it
    # two parts of one sweep (a job stopped, its case measured by the job run again): no clash
    a = results_file(tmp_path / "a.jsonl", [stopped, row("y", run_id="ra")], env("ra", shard="1/2"))
    b = results_file(tmp_path / "b.jsonl", [row("x", run_id="rb", median=2e-3)], env("rb", shard="2/2"))
    (merged,) = shards.merge([a, b], tmp_path / "m.jsonl")
    rows = read_rows(tmp_path / "m.jsonl")
    assert merged.rows == 2 and sorted((r.impl, r.status, r.time_median_s) for r in rows) == [
        ("x", "ok", pytest.approx(2e-3, rel=0.05)), ("y", "ok", pytest.approx(1e-3, rel=0.05))
    ]  # fmt: skip
    # stopped in both parts and measured in neither: one stopped row, which --resume measures
    c = results_file(tmp_path / "c.jsonl", [replace(stopped, run_id="rc")], env("rc", shard="2/2"))
    shards.merge([a, c], tmp_path / "m2.jsonl", overwrite=True)
    merged_rows = read_rows(tmp_path / "m2.jsonl")
    assert sorted((r.impl, r.status) for r in merged_rows) == [("x", "stopped"), ("y", "ok")]


def test_the_same_case_from_two_machines_stays_twice_told_apart_by_machine(tmp_path):
    # one cluster submission: one run id, two nodes
    a = results_file(tmp_path / "a.jsonl", [row("x", machine="h100", run_id="r")], env("r", "h100"))
    b = results_file(tmp_path / "b.jsonl", [row("x", machine="a100", run_id="r", median=2e-3)],
                     env("r", "a100", copy=(30.0,)))  # fmt: skip
    merged = shards.merge([a, b], tmp_path / "m.jsonl")
    assert [(m.run_id, m.machine) for m in merged] == [("r@h100", "h100"), ("r@a100", "a100")]
    results = load([tmp_path / "m.jsonl"])
    assert results.runs == ("r@h100", "r@a100")
    assert run_info(results, "r@a100").cpu == "a100 cpu"
    assert results.envs["r@a100"]["copy_gbps_samples"] == {"cpu": [30.0]}


def test_jobs_on_nodes_alike_are_one_run_so_their_frameworks_meet_in_one_verdict(tmp_path):
    h100 = dict(cpu="EPYC 9654", gpus=("NVIDIA H100",) * 8)
    a = results_file(tmp_path / "a.jsonl", [row("x", machine="node7", run_id="r")], env("r", "node7", **h100))
    b = results_file(tmp_path / "b.jsonl", [row("y", machine="node8", run_id="r")],
                     env("r", "node8", copy=(30.0,), **h100))  # fmt: skip
    c = results_file(tmp_path / "c.jsonl", [row("x", machine="cpu3", run_id="r")], env("r", "cpu3"))
    merged = shards.merge([a, b, c], tmp_path / "m.jsonl")
    assert [(m.run_id, m.machine, m.rows) for m in merged] == [
        ("r@8x-NVIDIA-H100", "node7, node8", 2),
        ("r@cpu3", "cpu3", 1),
    ]
    results = load([tmp_path / "m.jsonl"])
    assert results.runs == ("r@8x-NVIDIA-H100", "r@cpu3")
    e = results.envs["r@8x-NVIDIA-H100"]
    assert e["hosts"] == ["node7", "node8"] and e["machine"] == "8x NVIDIA H100; EPYC 9654 (8 cores)"
    assert e["copy_gbps_samples"] == {"cpu": [10.0, 30.0]}
    assert {r.machine for r in read_rows(tmp_path / "m.jsonl") if r.run_id == "r@8x-NVIDIA-H100"} == {
        "node7",
        "node8",
    }


def test_hosts_alike_that_measured_the_same_case_stay_apart(tmp_path):
    alike = dict(cpu="Xeon 8480")
    a = results_file(tmp_path / "a.jsonl", [row("x", machine="n1", run_id="ra")], env("ra", "n1", **alike))
    b = results_file(tmp_path / "b.jsonl", [row("x", machine="n2", run_id="rb")], env("rb", "n2", **alike))
    merged = shards.merge([a, b], tmp_path / "m.jsonl")
    assert [(m.run_id, m.machine) for m in merged] == [("ra", "n1"), ("rb", "n2")]


def test_rows_of_one_run_id_from_two_machines_are_two_runs_even_unmerged(tmp_path):
    path = tmp_path / "joined.jsonl"
    results_file(path, [row("x", machine="box", run_id="r"), row("x", machine="other", run_id="r")], env("r"))
    results = load([path])
    assert results.runs == ("r", "r@other") and len(results.rows) == 2


def test_merge_refuses_what_it_cannot_use(tmp_path):
    a = results_file(tmp_path / "a.jsonl", [row("x", run_id="ra")], env("ra"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("not json\n")
    with pytest.raises(BenchError, match="no usable rows in"):
        shards.merge([empty], tmp_path / "m.jsonl", say=lambda m: None)
    with pytest.raises(BenchError, match="is given twice"):
        shards.merge([a, tmp_path / "." / "a.jsonl"], tmp_path / "m.jsonl")
    with pytest.raises(BenchError, match="is also an input"):
        shards.merge([a], a)
    (tmp_path / "m.jsonl").write_text("")
    with pytest.raises(BenchError, match="exists; merge writes a new file"):
        shards.merge([a], tmp_path / "m.jsonl")


def test_a_missing_shard_is_named(tmp_path):
    a = results_file(tmp_path / "a.jsonl", [row("x", run_id="ra")], env("ra", shard="1/3"))
    c = results_file(tmp_path / "c.jsonl", [row("y", run_id="rc")], env("rc", shard="3/3"))
    messages = []
    shards.merge([a, c], tmp_path / "m.jsonl", say=messages.append)
    assert messages == [
        "warning: plan p1: shard 2/3 is not among the inputs: the merged file is not the whole sweep"
    ]


def test_compare_matches_machines_of_merged_files(tmp_path, capsys):
    def merged(name, slow_on):
        parts = []
        for host in ("h100", "a100", *(["laptop"] if name == "new" else [])):
            factor = 1.5 if host == slow_on else 1.0
            rows = [row(f"i{k}", machine=host, run_id="r", median=1e-3 * (k + 1) * factor, seed=k)
                    for k in range(3)]  # fmt: skip
            parts.append(results_file(tmp_path / f"{name}-{host}.jsonl", rows, env("r", host)))
        return shards.merge(parts, tmp_path / f"{name}.jsonl") and tmp_path / f"{name}.jsonl"

    base, new = merged("base", None), merged("new", "a100")
    assert compare_files(base, new, 0.10, str(tmp_path / "c.json"), run_noise=0.0) == 1
    out = capsys.readouterr().out
    assert "machines compared: h100 cpu (8 cores), a100 cpu (8 cores)" in out
    assert "not compared, only in new: laptop cpu (8 cores)" in out
    doc = json.loads((tmp_path / "c.json").read_text())
    slower = {(c["base_machine"], c["impl"]) for c in doc["comparisons"] if c["verdict"] == "slower"}
    assert slower == {("a100 cpu (8 cores)", f"i{k}") for k in range(3)}
    lone = results_file(tmp_path / "lone.jsonl", [row("i0", machine="tpu", run_id="z")], env("z", "tpu"))
    with pytest.raises(BenchError, match="no machine is in both files"):
        compare_files(base, lone, 0.10)


# ---- the command line ---------------------------------------------------------------------------


def test_shard_and_merge_bad_input_is_one_line(tmp_path):
    a = results_file(tmp_path / "a.jsonl", [row("x", run_id="ra")], env("ra", shard="1/2"))
    b = results_file(tmp_path / "b.jsonl", [row("x", run_id="rb")], env("rb", shard="2/2"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for args, message in [
        (["run", "--shard", "3/2"], "bad --shard '3/2'; expected K/N with 1 <= K <= N"),
        (["run", "--shard", "x"], "bad --shard 'x'"),
        (
            ["run", "--impl", "numpy_two_pass", "--group", "nope/*", "--out", str(tmp_path / "g.jsonl")],
            "--group 'nope/*' matches no worker group of this run; its groups: numpy/cpu",
        ),  # fmt: skip
        (["run", "--executor", "local", "--group", "torch/*"], "--group with --executor"),
        (["merge", str(tmp_path / "m.jsonl"), str(empty)], f"no usable rows in {empty}"),
        (["merge", str(tmp_path / "m.jsonl"), str(a), str(b)], f"in both {a} and {b}"),
        (["merge", str(tmp_path / "m.jsonl"), str(tmp_path / "nope.jsonl")], "does not exist"),
    ]:
        proc = cli(*args, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "m.jsonl").exists() and not (tmp_path / "g.jsonl").exists()
    assert not (tmp_path / "g.env.json").exists()
