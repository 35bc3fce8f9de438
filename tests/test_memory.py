"""The CPU memory method, calibrated with an implementation that touches a known 64 MiB."""

from tests.conftest import ROOT, run_rows


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
