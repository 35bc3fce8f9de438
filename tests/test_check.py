"""`python -m bench check IMPL`: verdicts and exit codes for correct, wrong and unknown implementations."""

import re
import textwrap

from tests.conftest import ROOT, cli

FAULTY = str(ROOT / "tests" / "faulty")


def test_a_correct_implementation_passes_every_declared_check():
    proc = cli("check", "torch_instance_norm", "--device", "cpu", "--dtype", "float32", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    out = proc.stdout
    assert "torch_instance_norm (torch, built-in): declared population/eps@sqrt" in out
    for mode in ("forward", "backward", "train"):
        for layout in ("NCHW", "NHWC"):
            assert re.search(rf"{mode} +float32 +{layout} +2x3x6x8 +ok", out)
    assert "WRONG" not in out.split("verdict:")[0]
    assert "edge cases" in out and re.search(r"constant +NCHW  safe", out)
    assert "verdict: ok: 6 of 6 checks" in out


def test_nan_output_is_wrong_with_a_readable_reason():
    proc = cli("check", "torch_nan", "--impl-path", FAULTY, "--mode", "forward", "--no-edge", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    assert "WRONG" in proc.stdout
    assert "wrong: 288 non-finite values in the forward output" in proc.stdout  # every one of 2x3x6x8
    assert "verdict: WRONG: 3 of 3 checks failed" in proc.stdout  # its three declared dtypes


def test_wrong_semantics_is_flagged_against_the_declaration(tmp_path):
    # Computes torch's .std() (unbiased, eps on the std) while declaring the canonical InstanceNorm.
    (tmp_path / "torch_mislabelled.py").write_text(
        textwrap.dedent('''
        """Declares population/eps@sqrt, computes unbiased/eps@std."""
        from bench.registry import register

        @register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", dtypes=("float32",))
        def torch_mislabelled(case):
            eps = case.eps
            return lambda x: (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + eps)
        ''')
    )
    proc = cli("check", "torch_mislabelled", "--impl-path", str(tmp_path), "--no-edge", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    assert "unbiased/eps@std (declared population/eps@sqrt)" in proc.stdout
    assert "over the float32 tolerance" in proc.stdout
    assert "verdict: WRONG: 3 of 3 checks failed" in proc.stdout  # forward, backward, train


def test_wrong_shape_and_crash_are_failures_not_crashes_of_the_checker():
    proc = cli("check", "torch_wrong_shape", "--impl-path", FAULTY, "--mode", "forward", "--no-edge")
    assert proc.returncode == 1
    assert "ERROR" in proc.stdout and "shape (2, 3); expected (2, 3, 6, 8)" in proc.stdout
    proc = cli("check", "torch_segfault", "--impl-path", FAULTY, "--mode", "forward", "--no-edge")
    assert proc.returncode == 1
    assert "CRASHED" in proc.stdout and "SIGSEGV" in proc.stdout


def test_bad_input_exits_2_with_one_line():
    proc = cli("check", "torch_no_such_impl", timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown implementation 'torch_no_such_impl'; known: ")
    proc = cli("check", "torch_instance_norm", "--dtype", "float64")
    assert proc.returncode == 2
    assert "unknown dtype 'float64'" in proc.stderr
    proc = cli("check", "torch_nan", "--impl-path", FAULTY, "--layout", "NHWC")
    assert proc.returncode == 2
    assert "torch_nan does not declare layout NHWC (declares NCHW)" in proc.stderr
