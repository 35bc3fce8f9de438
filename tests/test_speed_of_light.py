"""The speed of light: each case's own limit (a copy in the pattern of its calls), copies that paid
page faults taken again, limits that disagree unknown, and the calibration that checks the limit.
No timing is asserted here: the figures belong to benchmark runs (the issue note, the report)."""

from __future__ import annotations

import mmap
from dataclasses import replace

import pytest

from bench import memory, stats
from bench.analysis import Results, analyse
from bench.errors import BenchError
from bench.registry import register
from tests.test_shards import env, row


def fresh_pages(nbytes):
    """A pass that writes `nbytes` of pages never touched before: each one a minor fault."""
    m = mmap.mmap(-1, nbytes)
    m[:: mmap.PAGESIZE] = b"\1" * (nbytes // mmap.PAGESIZE)
    m.close()


def test_a_copy_that_pays_page_faults_is_taken_again_and_says_what_it_paid():
    passes = {"n": 0}

    def faulting_first_try():  # the first try's untimed pass and timed passes fault; later ones not
        passes["n"] += 1
        if passes["n"] <= 6:
            fresh_pages(4 << 20)

    figure = memory.copy_figure(faulting_first_try, 4 << 20, min_time_s=0.0)
    assert figure.tries == 2 and not figure.faulted
    always = memory.copy_figure(lambda: fresh_pages(4 << 20), 4 << 20, min_time_s=0.0)
    assert always.tries == memory.COPY_TRIES and always.faulted and always.faults_per_mib > 100


def test_a_rows_limit_is_its_cases_copy_and_unknown_where_that_copy_is_noisy_or_faulting():
    how = "torch copy of the input into fresh outputs, timed beside it"
    good = replace(row("x"), limit_how=how, limit_gbps=40.0, limit_rel_ci=0.02, limit_faults_per_call=0.0)
    dram = {"copy_gbps_samples": {"cpu": [10.0, 30.0, 20.0]}}
    assert stats.row_limit(good, dram) == (40.0, how)
    assert stats.sol_fraction(30.0, good, dram) == pytest.approx(0.75)
    noisy = replace(good, limit_rel_ci=0.3)
    assert stats.row_limit(noisy, dram) == (None, "unknown: its copy's median is uncertain by 30% (95 % CI)")
    assert stats.sol_fraction(30.0, noisy, dram) is None  # never the DRAM copy instead
    good = replace(good, ideal_bytes=1 << 20)  # 256 pages moved per call
    faulting = replace(good, limit_faults_per_call=64.0)  # a quarter of them fresh: first touch
    assert (
        stats.row_limit(faulting, dram)[1] == "unknown: its copy paid 64 page faults per call (fresh pages)"
    )
    assert stats.row_limit(replace(good, limit_faults_per_call=1.0), dram)[0] == 40.0  # an allocator's page
    failed = replace(row("x"), limit_how="not measured: RuntimeError: no copy")
    assert stats.row_limit(failed, dram) == (None, "not measured: RuntimeError: no copy")
    old = row("x")  # a row from before per-case limits: its run's DRAM copy
    assert stats.row_limit(old, dram) == (20.0, "the run's DRAM copy")
    assert stats.row_limit(old, {}) == (None, "no copy was measured")


def test_a_calibration_is_shown_against_the_limit_and_never_in_a_verdict(tmp_path):
    how = "torch copy of the input into fresh outputs, timed beside it"
    limit = dict(limit_how=how, limit_gbps=20.0, limit_rel_ci=0.01, limit_faults_per_call=0.0,
                 ideal_bytes=2 * 1536, run_id="r1")  # fmt: skip
    rows = [
        replace(
            row("torch_copy", shape=(2, 3, 8, 8), median=1536 * 2 / 19.4e9), roles=("calibration",), **limit
        ),
        replace(row("torch_group_norm", shape=(2, 3, 8, 8), median=1e-6), **limit),
        replace(row("torch_layer_norm", shape=(2, 3, 8, 8), median=2e-6), **limit),
    ]
    results = Results(tuple(rows), ("r1",) * 3, {"r1": env("r1")}, ("f",))
    a = analyse(results)
    (c,) = a.calibration
    assert c.variant == "torch_copy" and c.sol_fraction == pytest.approx(0.97, rel=0.02) and c.holds
    (verdict,) = a.verdicts
    assert verdict.fastest == "torch_group_norm" and verdict.variants == 2  # the copy is not in it
    assert not any("torch_copy" in str(c) for c in a.caveats)
    assert a.rows == 3


def test_only_a_calibration_declares_a_copy():
    with pytest.raises(
        BenchError, match="unknown semantics 'copy'; instance_norm's are: population/eps@sqrt"
    ):
        register(framework="torch", layout="NCHW", std="copy", eps_at="none")(lambda case: None)
    with pytest.raises(BenchError, match="unknown semantics 'copy'; instance_norm's are"):
        register(framework="torch", layout="NCHW", semantics="copy")(lambda case: None)
    with pytest.raises(BenchError, match="'population/eps@sqrt'; a calibration .* declares: copy"):
        register(framework="torch", layout="NCHW", std="population", eps_at="sqrt", roles=("calibration",))(
            lambda case: None
        )
