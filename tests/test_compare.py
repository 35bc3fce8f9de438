"""compare: run-to-run noise is absorbed, a real slowdown is still caught, a change of page-fault or
cache state is named instead of called slower, and usage errors exit 2 before any output."""

import json
from dataclasses import replace

import numpy as np
import pytest

from bench.compare import classify, compare_rows, estimate_run_noise, parse_run_noise, unpaired, widen
from bench.errors import BenchError
from bench.results import Row
from tests.conftest import ROOT, cli

DATA = ROOT / "tests" / "data"


def _rows(factors, seed):
    """One row per factor: 40 samples around 1 ms x factor, with 1 % in-run noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, f in enumerate(factors):
        samples = tuple(float(s) for s in 1e-3 * f * (1 + 0.01 * rng.standard_normal(40)))
        rows.append(
            Row(
                impl=f"impl{i}", framework="torch", backend="eager", device="cpu", dtype="float32",
                layout="NCHW", mode="forward", shape=(1, 2, 3, 4), status="ok",
                time_median_s=float(np.median(samples)), samples_s=samples,
            )
        )  # fmt: skip
    return rows


def test_run_wide_noise_is_same_and_a_real_slowdown_is_slower():
    rng = np.random.default_rng(7)
    drift = np.exp(0.05 * rng.standard_normal(30))  # whole rows move by ~5 % between runs
    new_factors = drift.copy()
    new_factors[3] *= 1.5
    base, new = _rows(np.ones(30), 1), _rows(new_factors, 2)
    results, sigma = compare_rows(base, new, threshold=0.10)
    assert 0.02 < sigma < 0.10
    verdicts = {c.impl: c.verdict for c in results}
    assert verdicts.pop("impl3") == "slower"
    assert list(verdicts.values()).count("same") >= 0.8 * len(verdicts)
    assert "slower" not in verdicts.values()


def test_without_run_noise_the_in_run_interval_decides():
    base, new = _rows(np.ones(30), 1), _rows(np.full(30, 1.08), 2)
    results, sigma = compare_rows(base, new, threshold=0.05, run_noise=0.0)
    assert sigma == 0.0 and all(c.verdict == "slower" for c in results)
    # A change that moves every row alike is not noise: the estimate stays small and it is caught.
    results, sigma = compare_rows(base, new, threshold=0.05)
    assert sigma < 0.01 and all(c.verdict == "slower" for c in results)


def test_noise_estimate_needs_enough_rows_and_widening_is_symmetric_in_log_space():
    assert estimate_run_noise([0.1, -0.1, 0.2]) == 0.0
    lo, hi = widen(1.0, 1.0, 1.0, 0.05)
    assert lo == pytest.approx(np.exp(-1.96 * 0.05)) and hi == pytest.approx(np.exp(1.96 * 0.05))
    assert classify(1.02, 0.9, 1.15, 0.05) == "same"  # holds 1, estimate within the band
    assert classify(1.08, 0.97, 1.2, 0.05) == "ambiguous"
    assert classify(1.3, 1.1, 1.5, 0.05) == "slower" and classify(0.7, 0.6, 0.9, 0.05) == "faster"


@pytest.mark.parametrize("text", ["loud", "150%", "-1%"])
def test_bad_run_noise_is_a_clear_error(text):
    with pytest.raises(BenchError, match="--run-noise"):
        parse_run_noise(text)


def test_a_change_of_fault_state_is_named_not_called_slower():
    base, new = _rows(np.ones(30), 1), _rows(np.ones(30), 2)
    new[0] = replace(new[0], samples_s=tuple(s * 1.6 for s in new[0].samples_s), faults_per_call=3.0)
    base[0] = replace(base[0], faults_per_call=0.2)
    new[1] = replace(new[1], samples_s=tuple(s * 1.6 for s in new[1].samples_s), faults_per_call=40.0)
    base[1] = replace(base[1], faults_per_call=2.0)  # both fault, 20x apart
    new[2] = replace(new[2], samples_s=tuple(s * 1.6 for s in new[2].samples_s), sol_fraction=1.5)
    base[2] = replace(base[2], sol_fraction=0.6)
    new[3] = replace(new[3], samples_s=tuple(s * 1.6 for s in new[3].samples_s), faults_per_call=1.5)
    base[3] = replace(base[3], faults_per_call=1.2)  # both fault, alike: a real slowdown
    results, _ = compare_rows(base, new, threshold=0.10)
    by_impl = {c.impl: c for c in results}
    assert by_impl["impl0"].verdict == by_impl["impl1"].verdict == "fault state differs"
    assert by_impl["impl2"].verdict == "cache state differs"
    assert by_impl["impl3"].verdict == "slower" and by_impl["impl3"].warning == ""
    assert by_impl["impl4"].verdict == "same"


def test_compare_cli_warns_on_fault_and_cache_state(tmp_path):
    proc = cli(
        "compare", str(DATA / "run_a.jsonl"), str(DATA / "run_b.jsonl"), "--json", str(tmp_path / "c.json")
    )
    assert proc.returncode in (0, 1), proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: torch_module")]
    assert len(warnings) == 1 and "page faults per call 2.5 in base, 0.1 in new" in warnings[0], proc.stderr
    assert any(
        line.startswith("warning: jax_jit") and "speed of light" in line for line in proc.stderr.splitlines()
    )
    doc = json.loads((tmp_path / "c.json").read_text())
    flagged = {(c["impl"], c["layout"]): c for c in doc["comparisons"] if c["warning"]}
    assert flagged[("torch_module", "NCHW")]["warning"] == "fault state differs"
    assert flagged[("jax_jit", "NHWC")]["warning"] == "cache state differs"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--json", "/nonexistent/dir/c.json"],
            "--json '/nonexistent/dir/c.json': folder '/nonexistent/dir' does not exist",
        ),
        (["--json", "/"], "--json '/' is a directory"),
        (["--threshold", "lots"], "bad --threshold 'lots'"),
    ],
)
def test_usage_and_io_errors_exit_2_before_any_output(args, message, tmp_path):
    proc = cli("compare", str(DATA / "run_a.jsonl"), str(DATA / "run_b.jsonl"), *args)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert proc.stderr.strip().splitlines() == [f"error: {proc.stderr.split('error: ', 1)[1].strip()}"]
    assert message in proc.stderr


def test_a_file_without_usable_rows_exits_2_in_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for command in (["compare", str(empty), str(DATA / "run_a.jsonl")], ["report", str(empty)]):
        proc = cli(*command, "--out", str(tmp_path / "r")) if command[0] == "report" else cli(*command)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [f"error: no usable rows in {empty}"], proc.stderr
        assert proc.stdout == "" and not (tmp_path / "r").exists()


def test_a_row_slower_by_far_more_than_a_float_holds_is_slower_not_ambiguous():
    base, new = _rows([1.0], 1), _rows([1.0], 2)
    new = [replace(new[0], samples_s=tuple(s * 1e305 for s in new[0].samples_s), time_median_s=1e302)]
    (result,), _ = compare_rows(base, new, threshold=0.10)  # the bootstrap's ratios overflow to inf
    assert result.verdict == "slower"  # CI would pass an "ambiguous" one
    (result,), _ = compare_rows(new, base, threshold=0.10)
    assert result.verdict == "faster"
    assert classify(float("nan"), float("nan"), float("nan"), 0.1) == "ambiguous"


def _op_rows(cases, seed):
    """One torch_groupnorm row per (op, op_params, factor): 40 samples around 1 ms x factor."""
    rows = _rows([f for _, _, f in cases], seed)
    return [
        replace(r, impl="torch_groupnorm", op=op, op_params=params) for r, (op, params, _) in zip(rows, cases)
    ]


def test_rows_pair_only_with_the_same_operator_and_parameters(tmp_path):
    """Two runs of one implementation at several num_groups, and InstanceNorm beside: each row is
    compared with its own operator and parameters, its case names them, and the rows either file
    alone holds are counted and named, not dropped in silence."""
    base = _op_rows(
        [
            ("group_norm", "num_groups=32", 1.0),
            ("group_norm", "num_groups=1", 1.0),
            ("instance_norm", "", 1.0),
        ],
        1,
    )
    new = _op_rows(
        [
            ("group_norm", "num_groups=32", 1.5),
            ("group_norm", "num_groups=16", 1.0),
            ("instance_norm", "", 1.0),
        ],
        2,
    )
    results, _ = compare_rows(base, new, threshold=0.10, run_noise=0.0)
    by_op = {(c.op, c.op_params): c for c in results}
    assert set(by_op) == {("group_norm", "num_groups=32"), ("instance_norm", "")}
    slowed, same = by_op["group_norm", "num_groups=32"], by_op["instance_norm", ""]
    assert slowed.verdict == "slower" and same.verdict == "same"
    assert slowed.key() == new[0].key() and same.key() == new[2].key()
    assert slowed.case_text() == "cpu group_norm(num_groups=32) 1x2x3x4 float32 NCHW forward"
    assert same.case_text() == "cpu 1x2x3x4 float32 NCHW forward" and slowed.op_label == "GroupNorm(32)"
    assert unpaired(base, new) == ([base[1].key()], [new[1].key()])

    files = []
    for name, rows in (("base", base), ("new", new)):
        files.append(tmp_path / f"{name}.jsonl")
        files[-1].write_text("".join(r.to_json() + "\n" for r in rows))
    proc = cli("compare", *map(str, files), "--run-noise", "0", "--json", str(tmp_path / "c.json"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert (
        "not compared, 1 measured row only in base: torch_groupnorm[eager] group_norm(num_groups=1)"
        in lines[0]
    )
    assert (
        "not compared, 1 measured row only in new: torch_groupnorm[eager] group_norm(num_groups=16)"
        in lines[1]
    )
    (slower,) = [ln for ln in lines if ln.rstrip().endswith("slower")]
    assert "group_norm(num_groups=32) 1x2x3x4" in slower
    doc = json.loads((tmp_path / "c.json").read_text())
    assert {(c["op"], c["op_params"]) for c in doc["comparisons"]} == set(by_op)
    assert (doc["machines"][0]["only_in_base"], doc["machines"][0]["only_in_new"]) == (1, 1)
