"""Implementations that game the harness (tests/cheats/: one per trick, and variants no list names)
end as named rows through `run`, `check` and the pytest front end, and their honest neighbours in
the same worker are measured as they are alone. The defence is the mechanism: answers of timed
calls checked by the parent against its own reference, claimed time held to the parent's wall
clock, and what a file changes for the others put back (bench/verify.py, bench/guard.py)."""

import io

import pytest

from bench.check import check
from bench.results import read_rows
from tests.conftest import ROOT, bench_pytest, run_rows

CHEATS = ROOT / "tests" / "cheats"
SHAPE = (8, 3, 32, 32)
CHANGES = "changes what other implementations run with"
# cheat -> (status, correct, what its message says)
EXPECTED = {
    "cheat_first_call_only": ("ok", False, "wrong on a timed call, checked by the parent"),
    "cheat_cached": ("ok", False, "wrong on a timed call, checked by the parent"),
    "cheat_one_late": ("ok", False, "wrong on a timed call, checked by the parent"),
    "cheat_by_address": ("ok", False, "wrong on a fresh call, checked by the parent"),
    "cheat_background": ("ok", False, "wrong on a timed call, checked by the parent"),
    "cheat_thread_per_call": ("error", None, "left running (waited for)"),
    "cheat_checker": ("error", None, f"{CHANGES}, at import: bench.reference.accuracy replaced"),
    "cheat_neighbour": ("error", None, f"{CHANGES}, at import: torch.nn.functional.instance_norm replaced"),
    "cheat_slow_clock": ("error", None, f"{CHANGES}, at import: time.perf_counter replaced"),
    "cheat_clock_in_call": ("error", None, f"{CHANGES}, in its first call: bench.timing.read_clock replaced"),
    "cheat_threads": ("error", None, f"{CHANGES}, when built: torch threads"),
    "cheat_flags": ("error", None, f"{CHANGES}, in its first call: flush-to-zero True (was False)"),
    "cheat_own_sampler": ("error", None, "its clock disagrees with the parent's"),
}
HONEST = ["torch_instance_norm", "torch_group_norm", "honest_out_buffer", "honest_slow_switch"]


@pytest.fixture(scope="module")
def cheat_rows(tmp_path_factory):
    names = [a for n in [*EXPECTED, *HONEST] for a in ("--impl", n)]
    proc, rows = run_rows(
        tmp_path_factory.mktemp("cheats"), "--impl-path", str(CHEATS), *names,
        "--shape", ",".join(map(str, SHAPE)), "--device", "cpu", "--max-time", "0.05", "--preset", "smoke",
        "--effective-cache", "32M", "--mode", "forward", "--mode", "train",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {(r.impl, r.mode): r for r in rows}


def test_every_trick_is_a_named_row_never_a_correct_time(cheat_rows):
    for name, (status, correct, text) in EXPECTED.items():
        row = cheat_rows[(name, "forward")]
        assert row.status == status and text in row.message, (name, row.status, row.message)
        assert row.correct is correct, name
        if status == "error":
            assert row.time_median_s is None  # no time survives a caught clock or a tampering file
        # In train too (autograd may refuse a garbage answer first: an error row, named as well).
        train = cheat_rows[(name, "train")]
        assert train.message and not (train.status == "ok" and train.correct), (name, train.message)


def test_the_honest_neighbours_are_measured_as_they_are_alone(cheat_rows):
    for name in HONEST:
        for mode in ("forward", "train"):
            row = cheat_rows[(name, mode)]
            if row.status != "unavailable":  # honest_out_buffer and honest_slow_switch: forward only
                assert row.status == "ok" and row.correct, (name, mode, row.message)
    # cheat_neighbour's wrapper sleeps 2 ms a call (100x F.instance_norm here): put back at import, it
    # never reaches its neighbour, timed in the same interleaved rounds as F.group_norm (a ratio, so
    # a loaded machine slows both alike)
    instance, group = (
        cheat_rows[(n, "forward")].time_median_s for n in ("torch_instance_norm", "torch_group_norm")
    )
    assert instance < 20 * group, (instance, group)
    assert (
        cheat_rows[("torch_group_norm", "forward")].threads
        == cheat_rows[("cheat_threads", "forward")].threads
    )
    # A slow first call of each round (a framework warming up again after its neighbours ran) is
    # not a clock that lies: the parent's witness starts after it.
    assert cheat_rows[("honest_slow_switch", "forward")].time_median_s < 0.1
    # Writing each answer into one reused buffer (as out= does) is not a trick: said, still correct.
    assert "overwrites" in cheat_rows[("honest_out_buffer", "forward")].message


def test_check_names_the_same_tricks(cheat_rows):
    """`check` times nothing, so a lying clock is not its business; everything else is caught."""
    for name, (status, _, text) in EXPECTED.items():
        if name == "cheat_own_sampler":
            continue
        out = io.StringIO()
        code = check(name, ["cpu"], ["float32"], ["NCHW"], ["forward"], [SHAPE], edge=False,
                     impl_paths=[str(CHEATS)], out=out)  # fmt: skip
        text_out = out.getvalue().replace("\n    -> ", " ")
        assert code == 1, (name, text_out)
        shown = "WRONG" if status == "ok" else status.upper()
        assert shown in text_out and text.split(",")[0] in text_out, (name, text_out)


def test_the_pytest_front_end_fails_every_trick(cheat_rows, tmp_path):
    rows_file = tmp_path / "rows.jsonl"
    select = " or ".join(f"{n}-cpu-forward-float32-NCHW-8x3x32x32" for n in EXPECTED)
    proc = bench_pytest(
        "--benchmark-disable-gc", "-k", select, "--normbench-impl-path", str(CHEATS),
        "--normbench-max-time", "0.05", "--normbench-rows", str(rows_file),
    )  # fmt: skip
    assert f"{len(EXPECTED)} failed" in proc.stdout, proc.stdout[-3000:]
    rows = {r.impl: r for r in read_rows(rows_file)}
    for name, (status, _, text) in EXPECTED.items():
        row = rows[name]
        assert row.status == status or (status == "ok" and row.correct is False), (
            name,
            row.status,
            row.message,
        )
        assert text.split(",")[0] in row.message, (name, row.message)


def test_the_guard_waits_for_threads_left_running_but_keeps_a_pool_started_when_built(monkeypatch):
    import threading
    import time

    from bench import guard as guard_module

    monkeypatch.setattr(guard_module, "THREAD_WAIT_S", 0.5)
    g = guard_module.Guard([], dict, lambda state: None)
    stop = threading.Event()
    pool = threading.Thread(target=stop.wait, daemon=True)
    pool.start()
    assert g.check(threads_allowed=True) == ""  # a build's pool joins the picture
    assert g.check(threads_allowed=False) == ""
    quick = threading.Thread(target=time.sleep, args=(0.05,), daemon=True)
    quick.start()
    assert g.check(threads_allowed=False) == "1 Python thread left running (waited for)"
    assert not quick.is_alive()  # waited for: no neighbour is timed beside it
    stuck = [threading.Thread(target=stop.wait, daemon=True) for _ in range(2)]
    for t in stuck:
        t.start()
    assert g.check(threads_allowed=False) == "2 Python threads left running (2 still alive after 0.5 s)"
    assert g.check(threads_allowed=False) == ""  # named once
    stop.set()
