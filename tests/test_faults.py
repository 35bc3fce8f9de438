"""Fault injection: crashes, hangs, exceptions, runaway memory, wrong outputs end as rows."""

from tests.conftest import ROOT, run_rows


def test_each_fault_ends_with_its_status_and_the_real_one_is_measured(tmp_path):
    proc, rows = run_rows(
        tmp_path,
        "--impl-path",
        str(ROOT / "tests" / "faulty"),
        "--impl",
        "torch_*",
        "--impl",
        "torch_group_norm",
        "--shape",
        "2,3,8,8",
        "--device",
        "cpu",
        "--case-timeout",
        "20",
        "--max-memory",
        "3G",
        "--max-time",
        "0.05",
        "--preset",
        "smoke",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    by = {r.impl: r for r in rows}
    assert by["torch_segfault"].status == "crashed"
    assert "SIGSEGV" in by["torch_segfault"].message
    assert by["torch_hang"].status == "timeout"
    assert by["torch_raises"].status == "error"
    assert "deliberate failure" in by["torch_raises"].message
    assert by["torch_hog"].status == "oom"
    assert "--max-memory" in by["torch_hog"].message
    assert by["torch_wrong_shape"].status == "error"
    assert "shape (2, 3); expected (2, 3, 8, 8)" in by["torch_wrong_shape"].message
    assert by["torch_not_tensor"].status == "error"
    assert "expected a torch.Tensor" in by["torch_not_tensor"].message
    assert by["torch_nan"].correct is False and by["torch_nan"].nonfinite_outputs == 2 * 3 * 8 * 8
    for name in ("torch_group_norm", "torch_module", "torch_instance_norm"):
        assert by[name].status == "ok" and by[name].correct, by[name].message
    assert len(rows) == len({r.key() for r in rows})
