"""Fault injection: each fault in tests/faulty/ ends as the same row through `run`, `check` and the
pytest-benchmark front end (one worker client serves all three), and the real ones are measured."""

import io
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.check import check
from bench.results import read_rows
from bench.workers import Limits
from tests.conftest import ROOT, bench_pytest, cli, run_rows

FAULTY = ROOT / "tests" / "faulty"
SHAPE = (8, 3, 32, 32)
# torch_hog must reach the memory limit before the case timeout: this VM populates pages at about
# 1.5 GB/s when quiet and several times slower under a loaded make test, where growing a worker by
# 2.6 GiB to a 3 GiB limit once took over 10 s (a timeout). So the limit is low (a small torch worker
# holds ~0.5 GiB). The cold policy's buffers are fitted under it, whatever the host's cache: the runs
# below simulate a 1 GiB and a 32 MiB effective cache (a 480 MiB one once made every case an oom row).
MAX_MEMORY_GIB = 1.5
LIMITS = ["--case-timeout", "10", "--max-memory", f"{MAX_MEMORY_GIB}G"]
# fault -> (status, what its message must say)
EXPECTED = {
    "torch_segfault": ("crashed", "worker killed by SIGSEGV (signal 11) during first_call of torch_segfault"),
    "torch_hang": ("timeout", "no progress for 10 s (--case-timeout) during first_call of torch_hang"),
    "torch_raises": ("error", "ValueError: deliberate failure for the fault-injection test"),
    "torch_hog": (
        "oom",
        f"exceeded --max-memory {MAX_MEMORY_GIB:.2f} GiB during first_call of torch_hog; worker killed",
    ),
    "torch_wrong_shape": ("error", "OutputError: output has shape (8, 3); expected (8, 3, 32, 32)"),
    "torch_not_tensor": ("error", "OutputError: output is a list; expected a torch.Tensor"),
    "torch_nan": ("ok", "wrong: 24576 non-finite values in the forward output"),
    "torch_interrupts": (
        "error",
        "KeyboardInterrupt raised by the implementation: from inside the implementation",
    ),
    "torch_float64": ("ok", "wrong: returns float64 in a float32 case"),
    "torch_mutates": ("error", "mutates its input: "),
}


def masked(text):
    """The numbers that vary from run to run (resident memory) masked."""
    return re.sub(r"resident memory [\d.]+ GiB", "resident memory # GiB", text)


def same(row):
    return row.status, masked(row.message)


def fault_run(tmp, effective_cache):
    names = [a for n in EXPECTED for a in ("--impl", n)]
    proc, rows = run_rows(
        tmp, "--impl-path", str(FAULTY), *names, "--impl", "torch_group_norm", "--impl", "torch_module",
        "--shape", ",".join(map(str, SHAPE)), "--device", "cpu", *LIMITS, "--max-time", "0.05",
        "--preset", "smoke", "--effective-cache", effective_cache, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {r.impl: r for r in rows}


@pytest.fixture(scope="module")
def run_fault_rows(tmp_path_factory):
    """A big-cache host (1 GiB): the rotation it wants is over what --max-memory leaves."""
    return fault_run(tmp_path_factory.mktemp("faults"), "1G")


def test_a_small_cache_host_gives_the_same_rows(run_fault_rows, tmp_path):
    small = fault_run(tmp_path, "32M")
    assert {n: same(r) for n, r in small.items()} == {n: same(r) for n, r in run_fault_rows.items()}
    measured = [r for r in small.values() if r.status == "ok"]
    assert measured and {r.cache_state for r in measured} == {"warm"}  # 256 x 96 KiB: far under 32 MiB
    assert all(r.buffers == 256 and r.cache_policy == "cold" for r in measured)


def test_each_fault_ends_with_its_status_and_the_real_ones_are_measured(run_fault_rows):
    by = run_fault_rows
    for name, (status, text) in EXPECTED.items():
        assert by[name].status == status and text in by[name].message, (name, by[name].message)
        if status == "ok":
            assert by[name].correct is False and by[name].time_median_s, name
    # torch_mutates ran before torch_module in the same case: torch_module's input was restored.
    for name in ("torch_group_norm", "torch_module"):
        assert by[name].status == "ok" and by[name].correct, by[name].message


def test_check_gives_the_same_rows(run_fault_rows):
    """Two checks at a time: one waits out torch_hang's timeout while the other works."""

    def check_one(name):
        out = io.StringIO()
        limits = Limits(case_timeout_s=10, max_memory_bytes=int(MAX_MEMORY_GIB * 2**30))
        code = check(name, ["cpu"], ["float32"], ["NCHW"], ["forward"], [SHAPE], edge=False,
                     impl_paths=[str(FAULTY)], out=out, limits=limits)  # fmt: skip
        return code, out.getvalue()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(EXPECTED, pool.map(check_one, EXPECTED)))
    for name, (code, text) in results.items():
        assert code == 1, text
        status, message = same(run_fault_rows[name])
        shown = status.upper() if status != "ok" else "WRONG"
        shown_text = masked(text.replace("\n    -> ", " "))
        assert shown in shown_text and message in shown_text, text


def test_the_pytest_front_end_gives_the_same_rows(run_fault_rows, tmp_path):
    rows_file = tmp_path / "rows.jsonl"
    select = " or ".join(f"{n}-cpu-forward-float32-NCHW-8x3x32x32" for n in EXPECTED)
    proc = bench_pytest(
        "--benchmark-disable-gc", "-k", select, "--normbench-impl-path", str(FAULTY),
        "--normbench-max-time", "0.05", "--normbench-case-timeout", "10",
        "--normbench-max-memory-gib", str(MAX_MEMORY_GIB),
        "--normbench-rows", str(rows_file),
    )  # fmt: skip
    assert f"{len(EXPECTED)} failed" in proc.stdout, proc.stdout[-3000:]
    rows = {r.impl: r for r in read_rows(rows_file)}
    for name in EXPECTED:
        assert same(rows[name]) == same(run_fault_rows[name]), (name, rows[name].message)


def test_an_input_changed_in_place_never_reaches_another_implementation(tmp_path):
    """After an in-place normalization, an identity function must not look correct, and after
    x.mul_(16) torch_module must not look wrong: the inputs are checked and restored."""
    proc, rows = run_rows(
        tmp_path, "--impl-path", str(FAULTY), "--impl", "torch_inplace_norm", "--impl", "torch_identity",
        "--impl", "torch_mutates", "--impl", "torch_module", "--shape", "2,3,8,8", "--device", "cpu",
        "--max-time", "0.05", "--preset", "smoke", "--mode", "forward", "--mode", "train",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    by = {(r.impl, r.mode): r for r in rows}
    assert by[("torch_inplace_norm", "forward")].status == by[("torch_mutates", "forward")].status == "error"
    assert by[("torch_inplace_norm", "forward")].message.startswith("mutates its input: ")
    assert by[("torch_mutates", "forward")].message.startswith("mutates its input: ")
    # In train mode autograd itself refuses in-place writes to a leaf: an error row either way.
    assert by[("torch_inplace_norm", "train")].status == "error"
    for mode in ("forward", "train"):
        assert by[("torch_identity", mode)].status == "ok" and by[("torch_identity", mode)].correct is False
        assert by[("torch_module", mode)].status == "ok" and by[("torch_module", mode)].correct


def test_a_file_that_dies_or_hangs_at_import_is_the_only_casualty(tmp_path):
    proc, rows = run_rows(
        tmp_path, "--impl-path", str(ROOT / "tests" / "faulty_import"), "--impl", "torch_*_at_import",
        "--impl", "fine_group_norm", "--impl", "torch_group_norm", "--impl", "torch_module",
        "--impl", "torch_view", "--shape", "2,3,8,8", "--device", "cpu", "--max-time", "0.05",
        "--preset", "smoke", "--import-timeout", "10", timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    by = {r.impl: r for r in rows}
    assert by["torch_dies_at_import"].status == "unavailable"
    assert by["torch_dies_at_import"].message == "importing it killed the worker: worker exited with code 1"
    assert by["torch_hangs_at_import"].message.startswith("importing it hung: no progress for 10 s")
    assert by["torch_interrupts_at_import"].message == "KeyboardInterrupt: raised while importing it"
    for name in ("fine_group_norm", "torch_group_norm", "torch_module", "torch_view"):
        assert by[name].status == "ok" and by[name].correct, by[name].message
    for name in ("torch_dies_at_import", "torch_hangs_at_import"):
        assert f"faulty_import/{name}.py: importing it" in proc.stderr
    env = json.loads((tmp_path / "run.env.json").read_text())
    assert env["runs"]


def test_one_impossible_shape_is_its_own_oom_row_and_the_others_run(tmp_path):
    proc, rows = run_rows(
        tmp_path, "--impl", "torch_group_norm", "--shape", "2,3,8,8", "--shape", "100000,1000,1000,1000",
        "--shape", "2,3,4,4", "--device", "cpu", "--max-time", "0.05", "--preset", "smoke",
        "--max-memory", "4G",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    by = {r.shape: r for r in rows}
    assert by[(100000, 1000, 1000, 1000)].status == "oom"
    assert "over --max-memory 4.0 GiB; not run" in by[(100000, 1000, 1000, 1000)].message
    assert by[(2, 3, 8, 8)].status == by[(2, 3, 4, 4)].status == "ok"
    again = cli("run", "--resume", str(tmp_path / "run.jsonl"))  # the oom row is a result: nothing left
    assert again.returncode == 0 and "nothing to resume" in again.stderr
