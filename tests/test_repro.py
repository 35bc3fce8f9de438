"""`bench repro`: the spread of K processes' medians, the states they were measured in, and the
machine's own noise floor beside them."""

import json
import shutil

import pytest

from bench.repro import TARGET_SPREAD, noise_floor, spreads
from bench.results import env_path, read_rows, row_from_dict
from tests.conftest import ROOT, cli

DATA = ROOT / "tests" / "data"


def rerun(tmp_path, name, change_row=None, copies=None):
    """run_a again, as a second process would have written it: rows changed by change_row(d), the
    copy bandwidth samples replaced by `copies`."""
    out = tmp_path / f"{name}.jsonl"
    lines = []
    for line in (DATA / "run_a.jsonl").read_text().splitlines():
        d = json.loads(line)
        if change_row:
            change_row(d)
        lines.append(json.dumps(d))
    out.write_text("\n".join(lines) + "\n")
    shutil.copy(env_path(DATA / "run_a.jsonl"), env_path(out))
    if copies is not None:
        doc = json.loads(env_path(out).read_text())
        for env in doc["runs"].values():
            env["copy_gbps_samples"] = {"cpu": copies}
        env_path(out).write_text(json.dumps(doc))
    return out


def test_a_slower_process_and_a_change_of_fault_state_are_told_apart(tmp_path):
    ok = [r for r in read_rows(DATA / "run_a.jsonl") if r.status == "ok" and r.input_kind == "random"]
    slow, faulty = ok[0], ok[1]

    def change(d):
        key = row_from_dict(d).key()
        if key == slow.key():
            d["time_median_s"] *= 1.25
        if key == faulty.key():
            d["faults_per_call"] = 4000.0

    found = {(s.variant, s.case): s for s in spreads([DATA / "run_a.jsonl", rerun(tmp_path, "b", change)])}
    assert len(found) == len({r.key() for r in ok})  # every case measured ok in both runs
    s = found[(slow.variant, slow.key().case.text())]
    assert s.spread == pytest.approx(0.25) and not s.within_target and s.same_fault_state
    f = found[(faulty.variant, faulty.key().case.text())]
    assert f.spread == 0 and f.within_target and not f.same_fault_state
    rest = [x for k, x in found.items() if k not in {(s.variant, s.case), (f.variant, f.case)}]
    assert rest and all(x.spread == 0 and x.same_fault_state and x.same_cache_state for x in rest)
    assert TARGET_SPREAD == 0.10


def test_the_noise_floor_is_the_machines_own_copy_bandwidth_over_the_runs(tmp_path):
    a = rerun(tmp_path, "a", copies=[20.0, 22.0, 21.0])
    b = rerun(tmp_path, "b", copies=[25.0, 30.0])
    (floor,) = noise_floor([a, b])
    assert floor.device == "cpu" and floor.gbps == (20.0, 22.0, 21.0, 25.0, 30.0)
    assert floor.spread == pytest.approx(0.5) and floor.worst_in_run == pytest.approx(0.2)
    # Runs under COPY_EVERY_S copy once: no spread within a run to speak of
    (floor,) = noise_floor([rerun(tmp_path, "c", copies=[20.0]), rerun(tmp_path, "d", copies=[22.0])])
    assert floor.spread == pytest.approx(0.1) and floor.worst_in_run is None
    # A file whose sidecar has no usable samples adds nothing rather than failing.
    junk = rerun(tmp_path, "junk", copies=["fast", -1])
    assert noise_floor([junk]) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--runs", "1"], "bad --runs 1; expected 2..100"),
        (["--runs", "2", "--out", "x.jsonl"], "repro writes its own results files"),
        (["--runs", "2", "--max-time", "nan"], "bad --max-time 'nan'"),
        (["--runs", "2", "--executor", "local"], "no --executor or cluster options"),
    ],
)
def test_bad_repro_options_are_one_line_errors_before_any_run(tmp_path, args, message):
    proc = cli("repro", "--out-dir", str(tmp_path / "r"), *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_a_used_out_dir_is_refused_before_any_run(tmp_path, capsys):
    from bench.cli import main

    used = tmp_path / "r"
    used.mkdir()
    (used / "run-1.jsonl").write_text("earlier repro\n")
    assert main(["repro", "--runs", "2", "--out-dir", str(used), "--impl", "numpy_two_pass"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: --out-dir '{used}' is not empty (run-1.jsonl); choose a new folder for this repro"
    assert sorted(p.name for p in used.iterdir()) == ["run-1.jsonl"]


@pytest.mark.slow
def test_repro_runs_k_fresh_processes_and_summarises_them(tmp_path):
    out = tmp_path / "r"
    proc = cli("repro", "--runs", "2", "--out-dir", str(out), "--impl", "torch_group_norm",
               "--preset", "smoke", "--device", "cpu", "--threads", "1", "--max-time", "0.05")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [read_rows(out / f"run-{k}.jsonl") for k in (1, 2)]
    assert {r.run_id for r in runs[0]}.isdisjoint({r.run_id for r in runs[1]})  # two processes
    summary = json.loads((out / "summary.json").read_text())
    ok = [r for r in runs[0] if r.status == "ok" and r.input_kind == "random"]
    assert len(summary["spreads"]) == len(ok) > 0
    assert [f["device"] for f in summary["noise_floor"]] == ["cpu"]
    assert "the machine itself, cpu: copy bandwidth" in proc.stdout
    assert f"of {len(ok)} within 10%" in proc.stdout
