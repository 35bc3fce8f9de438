"""The CPU memory method, calibrated with an implementation that touches a known 64 MiB."""

from tests.conftest import ROOT, cli, run_rows


def test_extra_memory_measures_a_known_allocation(tmp_path):
    proc, rows = run_rows(
        tmp_path,
        "--impl-path",
        str(ROOT / "tests" / "calibration"),
        "--impl",
        "torch_alloc_known",
        "--impl",
        "torch_group_norm",
        "--shape",
        "4,8,32,32",
        "--device",
        "cpu",
        "--preset",
        "smoke",
        "--warm-cache",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    by = {r.impl: r for r in rows}
    known, plain = by["torch_alloc_known"], by["torch_group_norm"]
    assert known.status == plain.status == "ok"
    extra_mib = (known.extra_mem_bytes - plain.extra_mem_bytes) / 2**20
    assert 60 <= extra_mib <= 70, f"measured {extra_mib:.1f} MiB for a 64 MiB temporary"
    assert plain.extra_mem_bytes < 1 << 20


def test_outputs_over_the_mmap_ceiling_get_a_default_process_figure_too(tmp_path):
    """A 48 MiB output: normbench's steady state keeps it mapped (no faults per call); a default
    process maps it fresh every call. Both figures are in the row, and the report shows both. Fault
    counts, not times: they do not depend on this machine's speed (transparent huge pages may make
    them fewer, never fewer than one)."""
    proc, rows = run_rows(
        tmp_path, "--impl", "torch_group_norm", "--shape", "3,64,256,256", "--shape", "2,3,8,8",
        "--device", "cpu", "--max-time", "0.05", "--preset", "smoke", "--effective-cache", "32M",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    by = {r.shape: r for r in rows}
    big, small = by[(3, 64, 256, 256)], by[(2, 3, 8, 8)]
    assert big.status == "ok" and big.faults_per_call is not None and big.faults_per_call < 1
    assert big.default_alloc_faults_per_call is not None and big.default_alloc_faults_per_call >= 1
    assert big.default_alloc_time_median_s and big.default_alloc_time_median_s > 0
    assert small.default_alloc_time_median_s is None and small.default_alloc_faults_per_call is None
    report = cli("report", str(tmp_path / "run.jsonl"), "--out", str(tmp_path / "rep"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "A default process pays more" in page and "default process: " in page
