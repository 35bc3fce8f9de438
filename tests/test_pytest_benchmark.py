"""The pytest-benchmark front end (benchmarks/): its JSON reads as normbench rows, and a wrong
implementation fails before it is timed."""

import json

import pytest

from bench.results import read_env, read_rows
from tests.conftest import ROOT, bench_pytest, cli


def pytest_benchmark_doc(benchmarks):
    return {
        "machine_info": {"python_version": "3.11.7", "cpu": {"brand_raw": "Test CPU", "count": 2}},
        "commit_info": {"id": "abc123", "dirty": True},
        "benchmarks": benchmarks,
        "datetime": "2025-01-02T03:04:05.678+00:00",
        "version": "5.2.3",
    }


def bench_entry(impl, data, **extra):
    info = {
        "impl": impl,
        "framework": "torch",
        "backend": "eager",
        "device": "cpu",
        "dtype": "float32",
        "layout": "NCHW",
        "mode": "forward",
        "shape": [8, 3, 32, 32],
        "status": "ok",
        "schema_version": 1,
        "correct": True,
        "ideal_bytes": 8 * 3 * 32 * 32 * 4 * 2,
        "threads": 2,
        "versions": {"torch": "2.13.0"},
        **extra,
    }
    stats = {"min": min(data), "median": sorted(data)[len(data) // 2], "iqr": 0.0, "rounds": len(data)}
    return {"name": f"test_normbench[{impl}]", "fullname": f"x::test_normbench[{impl}]", "extra_info": info,
            "stats": {**stats, "data": data}}  # fmt: skip


def test_pytest_benchmark_json_reads_as_rows(tmp_path):
    path = tmp_path / "pb.json"
    foreign = {"name": "test_other", "fullname": "x::test_other", "extra_info": {}, "stats": {"data": [1.0]}}
    doc = pytest_benchmark_doc([bench_entry("torch_view", [3e-4, 1e-4, 2e-4]), foreign])
    path.write_text(json.dumps(doc, indent=4))
    warnings = []
    (row,) = read_rows(path, warn=warnings.append)
    assert warnings == [f"{path}: benchmark 'x::test_other': has no normbench extra_info; skipped"]
    assert row.impl == "torch_view" and row.status == "ok" and row.shape == (8, 3, 32, 32)
    assert row.samples_s == (3e-4, 1e-4, 2e-4) and row.n_samples == 3
    assert row.time_median_s == pytest.approx(2e-4) and row.time_min_s == pytest.approx(1e-4)
    assert row.achieved_gbps == pytest.approx(8 * 3 * 32 * 32 * 4 * 2 / 2e-4 / 1e9)
    assert row.run_id == "pytest-20250102T030405"
    env = read_env(path)
    assert env["run_id"] == row.run_id and env["cpu_model"] == "Test CPU"
    assert env["packages"]["torch"] == "2.13.0" and env["git_commit"] == "abc123 (uncommitted changes)"


def test_saved_run_without_raw_samples_keeps_pytest_benchmarks_statistics(tmp_path):
    entry = bench_entry("torch_view", [3e-4, 1e-4, 2e-4])
    del entry["stats"]["data"]
    path = tmp_path / "0001_saved.json"
    path.write_text(json.dumps(pytest_benchmark_doc([entry])))  # one line: still recognised
    (row,) = read_rows(path)
    assert row.samples_s == () and row.time_median_s == pytest.approx(2e-4) and row.n_samples == 3


def test_newer_schema_in_extra_info_is_an_error(tmp_path):
    path = tmp_path / "pb.json"
    path.write_text(json.dumps(pytest_benchmark_doc([bench_entry("torch_view", [1e-4], schema_version=99)])))
    proc = cli("report", str(path), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "has schema_version 99, newer than this normbench reads" in proc.stderr


def run_bench_pytest(tmp_path, *args):
    """`make bench-pytest`'s command, with its storage in tmp_path and only a few tests selected."""
    return bench_pytest(
        "--benchmark-autosave", "--benchmark-save-data", f"--benchmark-storage=file://{tmp_path}/store",
        "--normbench-impl-path", str(ROOT / "tests" / "faulty"), "--normbench-max-time", "0.05", *args,
    )  # fmt: skip


def test_bench_pytest_times_correct_impls_fails_wrong_ones_and_reports(tmp_path):
    """InstanceNorm's and GroupNorm's implementations, each on its own operator (GroupNorm at its
    default 32 groups, a shape of 3 channels skipped with the reason), and a wrong one."""
    out = tmp_path / "pb.json"
    groupnorm = "torch_groupnorm-group_norm-num_groups32-cpu-forward"
    select = f"torch_group_norm-cpu-forward or torch_nan-cpu-forward or {groupnorm}"
    proc = run_bench_pytest(tmp_path, "-k", select, "--benchmark-json", str(out), "-rs")
    assert proc.returncode == 1, proc.stdout[-3000:]  # torch_nan fails: a fast wrong answer
    assert "2 failed, 3 passed, 1 skipped" in proc.stdout, proc.stdout[-3000:]
    assert "non-finite values in the forward output" in proc.stdout and "not timed" in proc.stdout
    assert "C=3 is not divisible by num_groups=32" in proc.stdout
    rows = read_rows(out)
    assert sorted((r.impl, r.shape, r.op_params) for r in rows) == [
        ("torch_group_norm", (8, 3, 32, 32), ""),
        ("torch_group_norm", (8, 64, 28, 28), ""),
        ("torch_groupnorm", (8, 64, 28, 28), "num_groups=32"),
    ]
    assert all(r.status == "ok" and r.correct and r.n_samples == len(r.samples_s) >= 3 for r in rows)
    report = cli("report", str(out), "--out", str(tmp_path / "report"), timeout=600)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "torch_group_norm" in (tmp_path / "report" / "index.html").read_text()
    # A second run compares against the autosaved first, as pytest-benchmark users expect.
    again = run_bench_pytest(tmp_path, "-k", "torch_group_norm-cpu-forward", "--benchmark-compare")
    assert again.returncode == 0, again.stdout[-3000:]
    assert "0001_" in again.stdout and "NOW" in again.stdout
    (saved,) = (tmp_path / "store").rglob("0001_*.json")
    assert len(read_rows(saved)) == 3
