"""What a run prints: on a terminal a live bar (cases, implementation, ETA) with lines above it; in a
log only start and end lines, warnings and one summary per worker group."""

from __future__ import annotations

import io
import os
import re
from collections import Counter

from rich.console import Console

from bench.cases import CaseKey
from bench.progress import LiveProgress, Progress, for_stream, format_eta, group_summary
from tests.conftest import ROOT, run_rows

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUMMARY = re.compile(r"^(?P<label>\S+/cpu): (?P<rows>\d+) rows, (?P<counts>.*), (?P<s>\d+) s$")


def test_a_log_gets_group_summaries_and_no_per_case_lines(tmp_path):
    proc, rows = run_rows(
        tmp_path,
        "--impl-path",
        str(ROOT / "tests" / "faulty"),
        "--impl",
        "torch_group_norm",
        "--impl",
        "torch_view",
        "--impl",
        "torch_raises",
        "--layout",
        "NCHW",
        "--layout",
        "NHWC",
        "--shape",
        "2,3,8,8",
        "--device",
        "cpu",
        "--max-time",
        "0.05",
        "--preset",
        "smoke",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert any(ln.startswith("normbench run ") and "measurements in 1 worker groups" in ln for ln in lines)
    assert any(ln.startswith("done: ") for ln in lines), proc.stderr

    summaries = [m for ln in lines if (m := SUMMARY.match(ln))]
    assert [m["label"] for m in summaries] == ["torch/cpu"], proc.stderr
    # NHWC is unsupported by torch_view and torch_raises: unavailable rows, written without a worker.
    assert Counter(r.status for r in rows) == {"ok": 3, "error": 1, "unavailable": 2}
    assert (summaries[0]["rows"], summaries[0]["counts"]) == ("4", "3 ok, 1 error"), proc.stderr
    assert any(ln.startswith("not run: 2 rows unavailable") for ln in lines), proc.stderr

    per_case = [ln for ln in lines if re.search(r"\d ms\b|^\[\d+/\d+|\b2x3x8x8\b", ln)]
    assert not per_case, proc.stderr
    assert "\x1b" not in proc.stderr


def test_the_terminal_bar_shows_count_implementation_and_eta():
    buf = io.StringIO()
    live = LiveProgress(Console(file=buf, force_terminal=True, width=160))
    live.start(40)
    live.update(
        3,
        95.0,
        "jax/cpu jax_jit "
        + CaseKey("cpu", "float32", "NCHW", "forward", (8, 3, 32, 32)).text()
        + " (sample)",
    )
    live.bar.refresh()
    live.case("jax/cpu 8x3x32x32 float32 NCHW forward: jax_jit 0.0635 ms")
    live.say(group_summary("jax/cpu", Counter(ok=58, error=2), 41.2))
    live.stop()
    shown = ANSI.sub("", buf.getvalue())
    assert " 3/40 " in shown
    assert "jax/cpu jax_jit 8x3x32x32 float32 NCHW forward (sample)" in shown
    assert re.search(r"eta 1:3[45]\b", shown), shown
    assert "jax/cpu 8x3x32x32 float32 NCHW forward: jax_jit 0.0635 ms\n" in shown
    assert "jax/cpu: 60 rows, 58 ok, 2 error, 41 s\n" in shown


def test_plain_lines_for_pipes_the_bar_for_terminals():
    assert type(for_stream(io.StringIO())) is Progress
    primary, secondary = os.openpty()
    try:
        with open(secondary, "w", closefd=False) as tty:
            assert isinstance(for_stream(tty), LiveProgress)
    finally:
        os.close(primary)
        os.close(secondary)
    quiet = io.StringIO()
    plain = Progress(quiet)
    plain.start(3)
    plain.update(1, 2.0, "torch/cpu torch_module")
    plain.case("torch/cpu 2x3x8x8 float32 NCHW forward: torch_module 0.01 ms")
    plain.say("copy bandwidth on cpu: 9.9 GB/s (read + write)")
    plain.stop()
    assert quiet.getvalue() == "copy bandwidth on cpu: 9.9 GB/s (read + write)\n"


def test_summary_and_eta_formats():
    assert group_summary("keras-jax/cpu", Counter(timeout=1, ok=4, crashed=1), 12.4) == (
        "keras-jax/cpu: 6 rows, 4 ok, 1 timeout, 1 crashed, 12 s"
    )
    assert group_summary("torch/cpu", Counter(ok=2), 3, interrupted=True) == (
        "torch/cpu: 2 rows, 2 ok, 3 s (interrupted)"
    )
    assert format_eta(None) == "eta ?" and format_eta(95) == "eta 1:35" and format_eta(3725) == "eta 1:02:05"
    assert (
        CaseKey("cpu", "float16", "NHWC", "train", (2, 3, 8, 8), "one_pixel").text()
        == "2x3x8x8 float16 NHWC train edge:one_pixel"
    )
