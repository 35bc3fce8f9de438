"""The rendered report from the committed fixtures: what the page says, what it marks, where it is
written, and that nothing in a results file can inject markup or escape the output folder."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from bench import analysis, cli, report
from bench.results import migrate, read_envs, write_env
from tests.conftest import ROOT
from tests.conftest import cli as run_cli

DATA = ROOT / "tests" / "data"
RUN_A, RUN_B, V1, CRAFTED = (DATA / f for f in ("run_a.jsonl", "run_b.jsonl", "v1.jsonl", "crafted.jsonl"))
SAFE_FILE = re.compile(r"^[A-Za-z0-9._+-]+$")


@pytest.fixture(scope="module")
def page_a(tmp_path_factory) -> tuple[Path, str]:
    index = report.render([RUN_A], tmp_path_factory.mktemp("a") / "report")
    return index, index.read_text(encoding="utf-8")


def text(fragment: str) -> str:
    """Visible text: tags dropped, whitespace folded, entities decoded."""
    inline = re.sub(r"</?(code|b|a)\b[^>]*>", "", fragment)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", inline)))


def section(page: str, start_id: str, end_id: str) -> str:
    return page[page.index(f'id="{start_id}"') : page.index(f'id="{end_id}"')]


# ---- the page --------------------------------------------------------------------------------------


def test_report_folder_holds_the_page_its_pngs_and_the_csv(page_a):
    index, page = page_a
    out = index.parent
    pngs = {p.name for p in out.glob("*.png")}
    assert len(pngs) == 16  # 2 modes x 2 layouts x 4 figures
    assert set(re.findall(r'<img src="([^"]+)"', page)) == pngs
    assert (out / "results.csv").stat().st_size > 0
    assert sum((out / p).stat().st_size for p in pngs) < 1_500_000  # a full run's 24 stay within a few MB
    assert stat.S_IMODE(out.stat().st_mode) & 0o055  # not mkdtemp's 0700
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_answer_comes_first_in_sentences_a_reader_can_quote(page_a):
    _, page = page_a
    answer = text(section(page, "answer", "verdict"))
    assert page.index('id="answer"') < page.index('id="verdict"') < page.index('id="semantics"')
    for layout in ("NCHW", "NHWC"):
        m = re.search(
            rf"Forward float32, {layout}: PyTorch's best \((\w+)\) is ([\d.]+)x faster than Keras's best "
            rf"\((\S+)\) \(95 % CI ([\d.]+)x–([\d.]+)x, 2 shapes\)\. Speed of light \(([\d.]+) GB/s copy "
            r"bandwidth, same run\): PyTorch's best reaches ([\d.]+) % of it at 2x4x16x16; "
            r"Keras's best reaches",
            answer,
        )
        assert m, (layout, answer[:2000])
        assert float(m.group(4)) <= float(m.group(2)) <= float(m.group(5))
    assert re.search(r"The article's snippets as written: torch_view \(NCHW\) is [\d.]+x faster than "
                     r"keras_lambda\[tensorflow\] \(NHWC\) \(95 % CI", answer)  # fmt: skip
    assert "torch_view's output is up to 0.75 % from InstanceNorm" in answer
    assert re.search(r"Train float32 \(forward and backward\): NCHW: PyTorch's best", answer)
    assert "torch_view: one_pixel in NCHW (6 non-finite values)" in answer
    assert "keras_lambda[tensorflow]: fp16_range in NHWC (2,048 non-finite values)" in answer


def test_wrong_rows_are_red_flagged_and_named_with_their_rows(page_a):
    _, page = page_a
    results = section(page, "results", "errors")
    wrong_rows = re.findall(r'<tr class="wrong"><td>([^<]+)</td><td>([^<]+)</td>', results)
    assert wrong_rows == [("torch_group_norm", "2x4x16x16")]
    caveats = text(page[page.index('class="caveat"') : page.index('id="verdict"')])
    assert (
        "Wrong output" in caveats and "torch_group_norm on cpu forward float32 NHWC at 2x4x16x16" in caveats
    )
    cells = [text(f) for f in re.findall(r'<td class="flags">(.*?)</td>', results)]
    flags = [f.strip() for c in cells for f in c.split(", ") if f.strip() != "warm inputs"]
    assert "warm inputs" in " ".join(cells)  # the fixture's tiny cases rotate far less than its cache
    assert "wrong" in flags and "cache-resident (SOL 1.4)" in flags and "page faults 2.5/call" in flags
    assert flags.count("concurrent") == 2  # keras_layer[jax] train NCHW, both shapes
    verdicts = text(section(page, "verdict", "semantics"))
    assert "Left out (wrong output here): torch_group_norm." in verdicts


def test_robustness_shows_each_layout(page_a):
    _, page = page_a
    rob = section(page, "robustness", "compile")
    row = re.search(r"<tr><td>torch_view \(article\)</td>(.*?)</tr>", rob, re.S).group(1)
    cells = re.findall(r'<td class="(\w+)"[^>]*>([^<]*)</td>', row)
    assert cells[0] == ("unsafe", "UNSAFE: 6 non-finite") and cells[1][0] == "unavailable"
    row = re.search(r"<tr><td>keras_lambda\[tensorflow\] \(article\)</td>(.*?)</tr>", rob, re.S).group(1)
    cells = re.findall(r'<td class="(\w+)"[^>]*>([^<]*)</td>', row)
    assert cells[-1] == ("unsafe", "UNSAFE: 2,048 non-finite") and cells[-2][0] == "unavailable"


def test_semantics_table_gives_the_distance_from_instance_norm(page_a):
    _, page = page_a
    sem = section(page, "semantics", "robustness")
    row = re.search(r"<tr><td>torch_view</td>(.*?)</tr>", sem, re.S).group(1)
    assert '<td class="num canonical">0.0075 at 2x3x8x8</td>' in row
    assert "MISMATCH" not in row


def test_compile_cost_is_labelled_by_layout_and_never_negative(page_a):
    _, page = page_a
    be = section(page, "compile", "results")
    assert "no keras_lambda row in NCHW for this case (unavailable:" in text(be)
    assert not re.search(r"-\d+ calls|>-[\d.]+ [mµn]?s<", be)
    assert "<th>layout</th>" in be


def test_crafted_break_even_and_semantics_ties():
    page = report.render_page(analysis.analyse(analysis.load([CRAFTED])), [{}] * 4)
    be = text(section(page, "compile", "results"))
    assert "first call not measurably slower than eager's: nothing to pay back" in be
    assert re.search(r"after 4\d,\d{3} calls", be)
    assert "never: not measurably faster per call" in be
    assert "no torch_fancy row in NHWC for this case: nothing to pair with" in be
    sem = section(page, "semantics", "compile")
    assert re.search(r"<td>torch_liar</td>.*?\(MISMATCH\)", sem, re.S)
    for name in ("keras_tie[jax]", "keras_amb[jax]"):
        row = re.search(rf"<td>{re.escape(name)}</td>(.*?)</tr>", sem, re.S).group(1)
        assert "MISMATCH" not in row
    caveats = page[page.index('class="caveat"') : page.index('id="verdict"')]
    assert "keras_tie" not in caveats and "torch_liar" in caveats


def test_the_unit_formatter():
    assert report.fmt(1.5e-5, "s") == "15 µs" and report.fmt(0.00123, "s") == "1.23 ms"
    assert report.fmt(None, "s") == report.fmt(float("nan"), "x") == "–"
    assert report.fmt(0.0075, "pct") == "0.75 %" and report.fmt(0.42, "pct") == "42 %"
    assert report.fmt(16.744, "x") == "16.74x" and report.fmt((2, 3, 8, 8), "shape") == "2x3x8x8"
    assert report.fmt(3 * 2**20, "bytes") == "3 MiB" and report.fmt(45285, "count") == "45,285"


# ---- several runs ----------------------------------------------------------------------------------


def test_two_files_give_one_report_with_runs_side_by_side():
    a = analysis.analyse(analysis.load([RUN_A, RUN_B]))
    page = report.render_page(a, [{}] * len(a.configs))
    runs = text(section(page, "runs", "semantics"))
    assert "fixture-b against fixture-a" in runs and "host vm → vm-b" in runs
    m = re.search(r"fixture-b takes ([\d.]+)x the time of fixture-a \(geometric mean, "
                  r"95 % CI ([\d.]+)x–([\d.]+)x\): fixture-a is faster", runs)  # fmt: skip
    assert m and float(m.group(2)) > 1
    assert re.search(r"cpu PyTorch 1\.2\dx [\d.]+x–[\d.]+x \d+ fixture-a", runs)
    assert "ambiguous; fault state differs (page faults per call 2.5 → 0.1)" in runs
    assert page.count('<table class="verdicts-by-run">') == 1 and page.count("<h1>") == 1
    assert {stem.split("-")[0] for stem in report._stems(a)} == {"run1", "run2"}


def test_two_runs_of_two_operators_pair_each_row_with_its_own_operator(tmp_path):
    """The fixtures' runs with a GroupNorm(1) copy of every measured PyTorch row (its times doubled in
    the second run): side by side, each pair is one operator's, named as such, with its own ratio.
    (Pairs once looked their rows up without the operator: two GroupNorm runs made report raise.)"""
    files = []
    for src, factor in ((RUN_A, 1.0), (RUN_B, 2.0)):
        dst = tmp_path / src.name
        rows = [migrate(json.loads(line)) for line in src.read_text().splitlines() if line.strip()]
        op = {"op": "group_norm", "op_params": "num_groups=1"}
        copies = [
            {
                **d,
                **op,
                "samples_s": [t * factor for t in d["samples_s"]],
                "time_median_s": d["time_median_s"] * factor,
            }
            for d in rows
            if d["status"] == "ok" and d["framework"] == "torch" and d.get("samples_s")
        ]
        dst.write_text("".join(json.dumps(d) + "\n" for d in rows + copies))
        ((run_id, env),) = read_envs(src).items()
        write_env(dst, run_id, env)
        files.append(dst)
    a = analysis.analyse(analysis.load(files))
    (x,) = a.cross
    by_op: dict[str, list[float]] = {}
    for c in x.changes:
        by_op.setdefault(c.op_label, []).append(c.ratio)
    assert set(by_op) == {"InstanceNorm", "GroupNorm(1)"}
    torch_instance = [c.ratio for c in x.changes if c.op_label == "InstanceNorm" and c.framework == "torch"]
    assert len(by_op["GroupNorm(1)"]) == len(torch_instance)
    assert np.median(by_op["GroupNorm(1)"]) == pytest.approx(2 * np.median(torch_instance), rel=0.05)
    runs = text(section(report.render_page(a, [{}] * len(a.configs)), "runs", "semantics"))
    assert re.search(r"torch_module GroupNorm\(1\) cpu forward float32 NCHW 2x3x8x8", runs), runs[:2000]


def test_a_v1_file_renders_with_migrated_roles(tmp_path):
    proc = run_cli("report", str(V1), "--out", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    page = text((tmp_path / "r" / "index.html").read_text())
    assert re.search(r"The article's snippets as written: torch_view \(NCHW\) is [\d.]+x faster than "
                     r"keras_lambda\[tensorflow\] \(NHWC\)", page)  # fmt: skip
    assert "Speedup vs torch_instance_norm" not in page  # in the PNG, not the text
    assert "torch_compile torch_module" in page


# ---- hostile files ------------------------------------------------------------------------------------


def hostile(tmp_path: Path) -> Path:
    base = {
        "framework": "torch", "backend": "eager", "device": "cpu", "dtype": "float32", "layout": "NCHW",
        "mode": "forward", "shape": [1, 2, 3, 4], "schema_version": 2,
        "run_id": "../../<script>alert('run')</script>",
        "samples_s": [1e-4, 1.1e-4, 0.9e-4], "time_median_s": 1e-4, "first_call_s": 1e-3, "correct": True,
        "semantics": "<script>alert('sem')</script>", "semantics_declared": "population/eps@sqrt",
    }  # fmt: skip
    rows = [
        {**base, "impl": "<script>alert('impl')</script>", "status": "ok",
         "stop_reason": "<img src=x onerror=alert(1)>", "roles": ["baseline", "article"]},
        {**base, "impl": "keras_<b>x</b>", "framework": "keras", "status": "error",
         "message": "<script>alert('msg')</script>"},
        {**base, "impl": "torch_ok", "status": "ok", "dtype": "../../evil", "layout": "/etc/passwd"},
    ]  # fmt: skip
    path = tmp_path / "hostile.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {
        "run_id": base["run_id"], "host": "<b>host</b>", "command": "<script>alert('cmd')</script>",
        "packages": {"<script>": "</td></tr></table>"}, "copy_gbps": {"cpu": 10.0}, "gpu_start": "<script>",
    }  # fmt: skip
    write_env(path, base["run_id"], env)
    return path


def test_everything_from_a_results_file_is_escaped(tmp_path):
    out = tmp_path / "out" / "report"
    path = hostile(tmp_path)
    before = set(tmp_path.iterdir())
    proc = run_cli("report", str(path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    page = (out / "index.html").read_text()
    assert "<script" not in page.lower() and "<img src=x" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;alert(" in page and "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;" in page
    assert all(SAFE_FILE.match(p.name) for p in out.iterdir())
    assert set(tmp_path.iterdir()) == before | {tmp_path / "out"}
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"report"}


@pytest.mark.parametrize(
    "run_id, folder",
    [
        ("/tmp/x", "tmp_x"),
        ("../../x", "x"),
        ("..", "run"),
        ("", "run"),
        ("2025-01-01T12:00:00.123456+00:00", "2025-01-01T12_00_00.123456_00_00"),
        ("pytest-20250101T120000", "pytest-20250101T120000"),
        ("../<script>/..", "script"),
    ],
)
def test_run_ids_become_safe_folder_names(run_id, folder):
    assert report.safe_name(run_id) == folder


def test_without_out_the_report_goes_to_reports_run_id_and_nowhere_else(tmp_path, monkeypatch):
    reports = tmp_path / "repo" / "reports"
    monkeypatch.setattr(report, "REPORTS", reports)
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps({**json.loads(line), "run_id": "../../escaped"}) + "\n"
                            for line in CRAFTED.read_text().splitlines()))  # fmt: skip
    index = report.render([path], None)
    assert index == reports / "escaped" / "index.html" and index.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "repo"]
    assert [p.name for p in reports.iterdir()] == ["escaped"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_rendering_leaves_nothing_and_prints_one_line(signum, tmp_path, monkeypatch, capsys):
    from bench import plots

    real_draw = plots.draw

    def draw_then_stop(cr, out, stem, colors):
        real_draw(cr, out, stem, colors)  # some PNGs exist when the signal comes
        os.kill(os.getpid(), signum)  # SIGTERM too: not a silent death
        time.sleep(5)

    monkeypatch.setattr(plots, "draw", draw_then_stop)
    before = signal.getsignal(signal.SIGTERM)
    # Ctrl-C as a fresh `python -m bench` has it, whatever this test process was left with (the
    # SIGINT case once rendered on, no KeyboardInterrupt, late in a full `make test`).
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = cli.main(["report", str(CRAFTED), "--out", str(tmp_path / "r")])
    finally:
        signal.signal(signal.SIGINT, interrupt)
    assert status == 128 + signum
    assert capsys.readouterr().err == f"report stopped by {signal.Signals(signum).name}: nothing written\n"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) == before  # put back


def test_rendering_again_replaces_its_own_files_and_keeps_the_users(tmp_path):
    out = tmp_path / "r"
    report.render([V1], out)
    first = {p.name for p in out.glob("*.png")}
    (out / "notes.txt").write_text("mine")
    report.render([CRAFTED], out)
    second = {p.name for p in out.glob("*.png")}
    assert first and second and not (first - second) & {p.name for p in out.iterdir()}
    assert (out / "notes.txt").read_text() == "mine"
    assert "fixture-crafted" in (out / "index.html").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_out_path_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "f").write_text("")
    proc = run_cli("report", str(CRAFTED), "--out", str(tmp_path / "f"))
    assert (
        proc.returncode == 2 and proc.stderr.strip() == f"error: report folder '{tmp_path / 'f'}' is a file"
    )
    assert os.listdir(tmp_path) == ["f"]


def test_environment_shows_copy_bandwidth_spread_and_effective_cache(page_a):
    _, page = page_a
    env = text(page[page.index('id="environment"') :])
    assert "cpu: 19.3 GB/s (median of 3 measurements, 18.5 GB/s–19.9 GB/s)" in env
    assert "effective cache cpu: 32 MiB" in env
