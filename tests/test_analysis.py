"""Analysis records from the committed fixtures (tests/data/README.md says what each row pins): no
framework is imported, nothing is rendered."""

from __future__ import annotations

import html
import json
import math
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from bench import analysis
from bench.errors import BenchError
from bench.results import migrate, read_envs, write_env
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data"
RUN_A, RUN_B, V1, CRAFTED = (DATA / f for f in ("run_a.jsonl", "run_b.jsonl", "v1.jsonl", "crafted.jsonl"))
BIG = (2, 4, 16, 16)


@pytest.fixture(scope="module")
def a() -> analysis.Analysis:
    return analysis.analyse(analysis.load([RUN_A]))


@pytest.fixture(scope="module")
def crafted() -> analysis.Analysis:
    return analysis.analyse(analysis.load([CRAFTED]))


def config(a: analysis.Analysis, mode: str, layout: str) -> analysis.ConfigResults:
    (cr,) = [c for c in a.configs if (c.config.mode, c.config.layout) == (mode, layout)]
    return cr


# ---- robustness ----------------------------------------------------------------------------------


def test_robustness_has_a_column_per_layout_and_shows_the_articles_failures(a):
    (rb,) = a.robustness
    assert rb.columns == tuple(
        (k, lay) for k in ("one_pixel", "constant", "large_offset", "fp16_range") for lay in ("NCHW", "NHWC")
    )
    cells = {row.variant: dict(zip(rb.columns, row.cells)) for row in rb.rows}
    view, lam = cells["torch_view"], cells["keras_lambda[tensorflow]"]
    assert view[("one_pixel", "NCHW")].verdict == "unsafe" and view[("one_pixel", "NCHW")].nonfinite == 6
    assert view[("one_pixel", "NHWC")].verdict == "unavailable"
    assert lam[("fp16_range", "NHWC")].verdict == "unsafe" and lam[("fp16_range", "NHWC")].nonfinite == 2048
    assert lam[("fp16_range", "NCHW")].verdict == "unavailable"
    # The article's snippets lead the table.
    assert {r.variant for r in rb.rows[:3]} == {"torch_view", "torch_module", "keras_lambda[tensorflow]"}
    # Every measured edge row is shown as measured.
    for r in analysis.load([RUN_A]).rows:
        if r.input_kind != "random" and r.status == "ok":
            assert cells[r.variant][(r.input_kind, r.layout)].verdict in ("safe", "inexact", "unsafe"), (
                r.key()
            )


def test_headline_names_the_articles_edge_failures_with_their_layout(a):
    (h,) = a.headlines
    failures = {(f.variant, f.input_kind, f.layout): f.nonfinite for f in h.article_edge_failures}
    assert failures[("torch_view", "one_pixel", "NCHW")] == 6
    assert failures[("keras_lambda[tensorflow]", "fp16_range", "NHWC")] == 2048


# ---- wrong rows are marked everywhere, never winners ---------------------------------------------


def test_a_wrong_row_is_marked_in_every_record_and_left_out_of_the_verdict(a):
    cr = config(a, "forward", "NHWC")
    (wrong,) = [m for m in cr.measurements if m.wrong]
    assert (wrong.variant, wrong.shape) == ("torch_group_norm", BIG) and "wrong" in wrong.flags
    # On the roofline the wrong row beats every correct one that streams from memory: it is marked.
    assert wrong in cr.roofline
    assert wrong.sol_fraction > max(
        m.sol_fraction for m in cr.roofline if not m.wrong and not m.cache_resident
    )
    cell = cr.speedups.cell("torch_group_norm", BIG)
    assert cell.wrong and cell.speedup > max(
        c.speedup for c in cr.speedups.cells if c.shape == BIG and not c.wrong
    )
    (first,) = [f for f in cr.first_calls if f.variant == "torch_group_norm"]
    assert (first.wrong_shapes, first.shapes) == (1, 2)
    (v,) = [v for v in a.verdicts if (v.config.mode, v.config.layout) == ("forward", "NHWC")]
    assert v.fastest != "torch_group_norm" and v.left_out == ("torch_group_norm",)
    (caveat,) = [c for c in a.caveats if c.kind == "wrong"]
    assert caveat.variant == "torch_group_norm" and caveat.value == pytest.approx(0.0031)
    assert caveat.where == (analysis.Where("cpu", "forward", "float32", "NHWC", "random", (BIG,)),)


def test_plots_draw_wrong_rows_hatched_and_labelled(a):
    from bench import plots

    cr = config(a, "forward", "NHWC")
    colors = plots.palette([m.variant for m in cr.measurements])
    fig = plots.roofline_figure(cr, colors)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    hatched = [labels[i] for i, p in enumerate(fig.axes[0].patches) if p.get_hatch()]
    assert hatched == ["torch_group_norm (WRONG)"]
    fig = plots.speedup_figure(cr)
    assert any(p.get_hatch() for p in fig.axes[0].patches)
    assert any("WRONG" in t.get_text() for t in fig.axes[0].texts)
    fig = plots.latency_figure(cr, colors)
    assert "wrong output" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    fig = plots.first_call_figure(cr, colors)
    assert any(p.get_hatch() for p in fig.axes[0].patches)


def test_cache_resident_and_faulting_rows_are_flagged(a):
    jit = next(
        m for m in config(a, "forward", "NHWC").measurements if m.variant == "jax_jit" and m.shape == BIG
    )
    assert (
        jit.cache_resident
        and jit.sol_fraction == pytest.approx(1.4, rel=0.01)
        and "cache-resident" in jit.flags
    )
    mod = next(
        m for m in config(a, "forward", "NCHW").measurements if m.variant == "torch_module" and m.shape == BIG
    )
    assert mod.faulting and mod.faults_per_call == 2.5 and "page faults" in mod.flags
    kinds = {(c.kind, c.variant) for c in a.caveats}
    assert {
        ("cache_resident", "jax_jit"),
        ("page_faults", "torch_module"),
        ("concurrent", "keras_layer[jax]"),
    } <= kinds


def test_sol_fraction_is_over_the_median_of_the_runs_copy_samples(a):
    env = next(iter(read_envs(RUN_A).values()))
    copy = float(np.median(env["copy_gbps_samples"]["cpu"]))
    for m in config(a, "forward", "NCHW").measurements:
        assert m.sol_fraction == pytest.approx(m.achieved_gbps / copy)
    # Without samples (an older sidecar) the one median stands in.
    v1 = analysis.measurements(analysis.load([V1]))
    v1_copy = json.loads((DATA / "v1.env.json").read_text())["copy_gbps"]["cpu"]
    assert all(m.sol_fraction == pytest.approx(m.achieved_gbps / v1_copy) for m in v1)


# ---- verdicts, one per layout --------------------------------------------------------------------


def test_one_verdict_per_device_mode_dtype_and_layout(a):
    keys = {(v.config.device, v.config.mode, v.config.dtype, v.config.layout) for v in a.verdicts}
    assert keys == {("cpu", m, "float32", lay) for m in ("forward", "train") for lay in ("NCHW", "NHWC")}
    assert [v.config.mode for v in a.verdicts][:2] == ["forward", "forward"]  # the question people ask first
    for v in a.verdicts:
        assert (
            v.torch_vs_keras is not None
            and v.torch_vs_keras.ci_low <= v.torch_vs_keras.ratio <= v.torch_vs_keras.ci_high
        )


# ---- the headline --------------------------------------------------------------------------------


def _geomean_ratio(ms, a_variant, b_variant):
    t = {m.shape: np.median(m.samples_s) for m in ms if m.variant == a_variant}
    k = {m.shape: np.median(m.samples_s) for m in ms if m.variant == b_variant}
    shared = sorted(set(t) & set(k))
    return float(np.exp(np.mean([np.log(k[s] / t[s]) for s in shared]))), len(shared)


def test_headline_answers_per_layout_with_cis_and_the_speed_of_light(a):
    (h,) = a.headlines
    assert (h.main.mode, h.main.dtype) == ("forward", "float32") and (h.train.mode, h.train.dtype) == (
        "train",
        "float32",
    )
    assert h.main.copy_gbps == pytest.approx(
        float(np.median(next(iter(read_envs(RUN_A).values()))["copy_gbps_samples"]["cpu"]))
    )
    assert [la.layout for la in h.main.layouts] == ["NCHW", "NHWC"]
    for la in h.main.layouts:
        ms = config(a, "forward", la.layout).measurements
        best = {
            fw: v
            for v_ in a.verdicts
            if (v_.config.mode, v_.config.layout) == ("forward", la.layout)
            for fw, v in v_.per_framework
        }
        assert (la.torch.variant, la.keras.variant) == (best["torch"], best["keras"])
        ratio, n = _geomean_ratio(ms, la.torch.variant, la.keras.variant)
        assert la.comparison.ratio == pytest.approx(ratio) and la.comparison.shapes == n
        assert la.comparison.ci_low < la.comparison.ratio < la.comparison.ci_high
        largest = max((m for m in ms if m.variant == la.torch.variant), key=lambda m: m.elements)
        assert la.torch.sol_fraction == largest.sol_fraction and la.torch.sol_shape == largest.shape


def test_the_articles_snippets_are_compared_each_in_its_own_layout(a):
    (h,) = a.headlines
    matches = {(m.torch, m.torch_layout, m.keras, m.keras_layout) for m in h.main.article}
    assert matches == {
        ("torch_view", "NCHW", "keras_lambda[tensorflow]", "NHWC"),
        ("torch_module", "NCHW", "keras_lambda[tensorflow]", "NHWC"),
    }
    view = next(m for m in h.main.article if m.torch == "torch_view")
    ms = analysis.measurements(analysis.load([RUN_A]))
    fwd = [m for m in ms if m.mode == "forward" and m.variant in ("torch_view", "keras_lambda[tensorflow]")]
    ratio, n = _geomean_ratio(fwd, "torch_view", "keras_lambda[tensorflow]")
    assert view.comparison.ratio == pytest.approx(ratio) and n == 2
    assert (view.torch_semantics, view.keras_semantics) == ("unbiased/eps@std", "population/eps@std")


def test_analysis_names_no_implementation():
    """Roles and pairings come from the rows: no implementation's name in the report's code."""
    names = {p.stem for p in (ROOT / "implementations").glob("*.py") if not p.stem.startswith("_")}
    for path in [ROOT / "bench" / f for f in ("analysis.py", "plots.py", "report.py")] + list(
        (ROOT / "bench" / "templates").iterdir()
    ):
        text = path.read_text()
        found = [n for n in names if re.search(rf"\b{n}\b", text)]
        assert not found, f"{path.name} names {found}"


# ---- distance from InstanceNorm ------------------------------------------------------------------


def test_distance_from_instance_norm_beside_the_error_against_declared_semantics(a):
    sem = {s.variant: s for s in a.semantics}
    view = sem["torch_view"]
    # Unbiased std: y is sqrt((n-1)/n) of InstanceNorm's, about 1/(2n) off; worst on the smallest planes.
    n = 8 * 8
    assert 0.4 / n < view.canonical_rel_err < 0.6 / n and view.canonical_rel_err_shape == (2, 3, 8, 8)
    assert view.max_rel_err < 1e-5
    per_shape = {
        m.shape: m.canonical_rel_err
        for m in analysis.measurements(analysis.load([RUN_A]))
        if m.variant == "torch_view"
    }
    assert per_shape[(2, 3, 8, 8)] > per_shape[BIG]  # grows as planes shrink
    assert sem["torch_instance_norm"].canonical_rel_err < 1e-5
    assert sem["keras_lambda[tensorflow]"].canonical_rel_err < view.canonical_rel_err


# ---- semantics the detector could not decide -----------------------------------------------------


def test_indistinguishable_or_ambiguous_including_declared_raises_no_alarm(crafted):
    sem = {s.variant: s for s in crafted.semantics}
    assert not sem["keras_tie[jax]"].mismatch and not sem["keras_amb[jax]"].mismatch
    assert sem["torch_liar"].mismatch
    alarms = {(c.kind, c.variant) for c in crafted.caveats}
    assert ("semantics_mismatch", "torch_liar") in alarms
    assert not {k for k, v in alarms if v in ("keras_tie[jax]", "keras_amb[jax]") and k != "non_canonical"}
    assert ("non_canonical", "keras_tie[jax]") not in alarms  # declared canonical: nothing to say
    assert analysis.semantics_mismatch("ambiguous: a | b", "c", True)
    assert not analysis.semantics_mismatch(
        "indistinguishable at bfloat16, 64-element planes: a | b", "c", True
    )


# ---- compile cost and break-even -----------------------------------------------------------------


def test_break_even_pairs_by_compiled_from_and_never_prints_a_negative_cost(crafted):
    by = {(b.config.layout, b.shape): b for b in crafted.break_even if b.compiled == "torch_fancy_compiled"}
    small, mid, big = by[("NCHW", (2, 3, 8, 8))], by[("NCHW", BIG)], by[("NCHW", (1, 8, 32, 32))]
    assert small.outcome == "no_cost" and small.compile_cost_s is None and small.calls is None
    assert mid.outcome == "calls" and mid.eager == "torch_fancy" and 40_000 < mid.calls < 50_000
    assert mid.calls == math.ceil(mid.compile_cost_s / mid.saving_s)
    assert big.outcome == "never" and big.calls is None and big.speedup.outcome == "b"
    nhwc = by[("NHWC", BIG)]
    assert (nhwc.outcome, nhwc.eager, nhwc.eager_status) == ("no_counterpart", "torch_fancy", "absent")


def test_break_even_in_a_genuine_run(a):
    outcomes = {(b.compiled, b.config.layout, b.config.mode, b.shape): b for b in a.break_even}
    nchw = outcomes[("tf_function", "NCHW", "forward", BIG)]
    assert nchw.outcome == "no_counterpart" and nchw.eager_status == "unavailable"
    assert outcomes[("tf_function", "NHWC", "forward", BIG)].eager == "keras_lambda[tensorflow]"
    for b in a.break_even:
        assert b.compile_cost_s is None or b.compile_cost_s > 0
        assert b.calls is None or b.calls >= 1


# ---- runs side by side ---------------------------------------------------------------------------


def test_two_runs_side_by_side_give_ratios_with_cis():
    results = analysis.load([RUN_A, RUN_B])
    assert results.runs == ("fixture-a", "fixture-b")
    a2 = analysis.analyse(results)
    (x,) = a2.cross
    assert (x.base, x.new) == ("fixture-a", "fixture-b") and ("host", "vm", "vm-b") in x.differences
    by_fw = {s.framework: s for s in x.summaries}
    assert by_fw["torch"].ci_low > 1.1 and by_fw["torch"].ratio == pytest.approx(1.25, rel=0.05)
    assert by_fw["keras"].ci_low < 1.0 < by_fw["keras"].ci_high
    assert x.overall.ratio > 1 and x.overall.pairs == len(x.changes) == 140
    torch_changes = [c for c in x.changes if c.framework == "torch"]
    assert np.median([c.ratio for c in torch_changes]) == pytest.approx(1.25, rel=0.05)
    fault = next(
        c
        for c in x.changes
        if (c.impl, c.layout, c.mode, c.shape) == ("torch_module", "NCHW", "forward", BIG)
    )
    assert fault.warning == "fault state differs"
    assert {rv.by_run[0][0] for rv in a2.verdicts_by_run} == {"fixture-a"} and len(a2.verdicts_by_run) == 4
    assert all(v is not None for rv in a2.verdicts_by_run for _, v in rv.by_run)


def test_a_file_holding_two_runs_is_two_runs_each_with_its_env(tmp_path):
    both = tmp_path / "both.jsonl"
    both.write_text(RUN_A.read_text() + RUN_B.read_text())
    for src in (RUN_A, RUN_B):
        ((run_id, env),) = read_envs(src).items()
        write_env(both, run_id, env)
    merged = analysis.analyse(analysis.load([both]))
    separate = analysis.analyse(analysis.load([RUN_A, RUN_B]))
    assert [r.label for r in merged.runs] == ["fixture-a", "fixture-b"]
    assert [r.host for r in merged.runs] == ["vm", "vm-b"]
    assert merged.cross[0].overall == separate.cross[0].overall


def test_run_label_is_the_run_id_and_rows_without_one_take_the_file_name(tmp_path):
    rows = analysis.load([RUN_A]).rows
    assert {analysis.run_label(r, {}) for r in rows} == {"fixture-a"}
    bare = tmp_path / "nameless.jsonl"
    bare.write_text(
        "".join(
            json.dumps({**json.loads(line), "run_id": ""}) + "\n" for line in CRAFTED.read_text().splitlines()
        )
    )
    assert analysis.load([bare]).runs == ("nameless",)


# ---- schema 1 ------------------------------------------------------------------------------------


def test_a_v1_file_gets_roles_from_migration():
    v1 = analysis.analyse(analysis.load([V1]))
    (h,) = v1.headlines
    assert {(m.torch, m.keras) for m in h.main.article} == {
        ("torch_view", "keras_lambda[tensorflow]"),
        ("torch_module", "keras_lambda[tensorflow]"),
    }
    assert v1.baseline == "torch_instance_norm"
    assert {(b.compiled, b.eager) for b in v1.break_even if b.outcome != "no_counterpart"} == {
        ("torch_compile", "torch_module"),
        ("tf_function", "keras_lambda[tensorflow]"),
    }


def test_an_own_kernel_never_answers_for_the_library_it_is_called_from(a, tmp_path):
    """A kernel written for normbench (role "own") is not "PyTorch's best": the libraries are
    compared without it, and it is set beside PyTorch's best in a sentence of its own."""
    (h,) = a.headlines
    nchw = next(la for la in h.main.layouts if la.layout == "NCHW")
    champion = nchw.torch.variant  # PyTorch's best library variant in run_a
    assert nchw.own is None and nchw.own_vs_torch is None
    lines = []
    for line in RUN_A.read_text().splitlines():
        d = json.loads(line)
        if d["impl"] == champion:
            d["roles"] = ["own"]
        lines.append(json.dumps(d))
    own_file = tmp_path / "own.jsonl"
    own_file.write_text("\n".join(lines) + "\n")
    write_env(own_file, *next(iter(read_envs(RUN_A).items())))
    b = analysis.analyse(analysis.load([own_file]))
    (h2,) = b.headlines
    la = next(x for x in h2.main.layouts if x.layout == "NCHW")
    assert la.own.variant == champion and la.torch.variant not in (champion, None)
    assert la.keras.variant == nchw.keras.variant
    ms = config(b, "forward", "NCHW").measurements
    ratio, n = _geomean_ratio(ms, champion, la.torch.variant)
    assert la.own_vs_torch.ratio == pytest.approx(ratio) and la.own_vs_torch.shapes == n
    (v,) = [v for v in b.verdicts if (v.config.mode, v.config.layout) == ("forward", "NCHW")]
    assert dict(v.per_framework)["torch"] == la.torch.variant and v.fastest == champion
    page = tmp_path / "report"
    from bench.report import render

    render([own_file], page)
    text = re.sub(r"\s+", " ", html.unescape((page / "index.html").read_text()))
    assert f"normbench's own kernel {champion} (called from PyTorch)" in text


def test_baseline_override_and_unknown_baseline():
    results = analysis.load([RUN_A])
    assert analysis.analyse(results, baseline="torch_layer_norm").baseline == "torch_layer_norm"
    assert analysis.analyse(results, baseline="keras_layer").baseline.startswith("keras_layer[")
    with pytest.raises(BenchError, match="unknown --baseline 'nope'"):
        analysis.analyse(results, baseline="nope")


def test_no_usable_rows_is_a_bench_error(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    with pytest.raises(BenchError, match="no usable rows"):
        analysis.load([empty])


def test_records_are_frozen(a):
    with pytest.raises(AttributeError):
        a.verdicts[0].fastest = "x"  # type: ignore[misc]
    assert Path(analysis.__file__).name == "analysis.py"


def test_host_timed_rows_beside_gpu_timed_ones_are_named_and_the_headline_says_so():
    """The H200 run: torch rows time the GPU alone (CUDA events), JAX and Keras-on-JAX rows time
    the host; a comparison across the two is flagged, and a CPU run (one timer) has no such caveat."""
    gpu = analysis.analyse(analysis.load([ROOT / "results" / "h200" / "h200.jsonl"]))
    flagged = {c.variant for c in gpu.caveats if c.kind == "host_timed"}
    assert {"jax_jit", "keras_layer[jax]"} <= flagged
    assert not any(v.startswith(("torch_", "triton_")) for v in flagged)
    (headline,) = gpu.headlines
    assert headline.main is not None and (headline.main.mode, headline.main.dtype) == ("forward", "float32")
    nchw = next(la for la in headline.main.layouts if la.layout == "NCHW")
    assert nchw.torch is not None and nchw.torch.timer == "cuda_event"
    assert nchw.keras is not None and nchw.keras.timer == "host"
    page = (ROOT / "reports" / "h200" / "index.html").read_text()
    assert "timed differently, cuda_event against host: see Caveats" in html.unescape(page)
    cpu = analysis.analyse(analysis.load([ROOT / "results" / "sample" / "cpu.jsonl"]))
    assert not [c for c in cpu.caveats if c.kind == "host_timed"]


def test_a_caveat_of_the_case_is_said_once_for_every_implementation_it_holds_for():
    from bench.analysis import Caveat, Where, _merged

    small = (Where("cpu", "forward", "float32", "NHWC", "random", ((2, 1280, 8, 8),)),)
    big = (Where("cpu", "forward", "float32", "NHWC", "random", ((2, 320, 32, 32),)),)
    said = [
        Caveat("not_cold", "r", "numba_groupnorm", small, 100.0),
        Caveat("not_cold", "r", "torch_groupnorm", small, 300.0),
        Caveat("not_cold", "r", "torch_groupnorm_module", big, 50.0),
        Caveat("wrong", "r", "numba_groupnorm", small, 1e-3, "0.0001"),
        Caveat("wrong", "r", "torch_groupnorm", small, 2e-3, "0.0001"),
    ]
    merged = _merged(said, ("not_cold", "concurrent"))
    assert [c for c in merged if c.kind == "wrong"] == said[3:]  # the implementation's own: one each
    cold = {c.where: c for c in merged if c.kind == "not_cold"}
    assert len(cold) == 2 and cold[small].variants() == ("numba_groupnorm", "torch_groupnorm")
    assert cold[small].value == 300.0 and cold[big].variant == "torch_groupnorm_module"


def test_one_variant_at_two_operator_parameters_keeps_each_ones_tables_apart(tmp_path):
    """The fixture run with a GroupNorm(1) copy of every PyTorch row: the copies' eager first calls
    are 1 s and torch_compile's large_offset NCHW copy is off by 5. Break-even pairs each compiled
    row with the eager row of its own operator and parameters, and robustness and semantics give each
    operator its own table and rows (one variant's rows at another parameter value once shared a
    cell, and break-even's lookups overwrote each other)."""
    rows = [migrate(json.loads(line)) for line in RUN_A.read_text().splitlines() if line.strip()]
    copies = []
    for d in rows:
        if d["framework"] != "torch":
            continue
        c = {**d, "op": "group_norm", "op_params": "num_groups=1"}
        if d["impl"] == "torch_module" and d.get("first_call_s"):
            c["first_call_s"] = 1.0
        if (d["impl"], d.get("input_kind"), d["layout"]) == ("torch_compile", "large_offset", "NCHW"):
            c.update(max_abs_err=5.0, correct=False)
        copies.append(c)
    path = tmp_path / "two_ops.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in rows + copies))
    ((run_id, env),) = read_envs(RUN_A).items()
    write_env(path, run_id, env)
    a2 = analysis.analyse(analysis.load([path]))

    pairs = [
        b for b in a2.break_even if b.compiled.startswith("torch_compile") and b.outcome != "no_counterpart"
    ]
    by_op = {op: [b for b in pairs if b.config.op == op] for op in ("InstanceNorm", "GroupNorm(1)")}
    assert by_op["InstanceNorm"] and len(by_op["GroupNorm(1)"]) == len(by_op["InstanceNorm"])
    assert all(b.eager_first_s == 1.0 for b in by_op["GroupNorm(1)"])
    assert all(b.eager_first_s != 1.0 for b in by_op["InstanceNorm"])

    tables = {rb.op: rb for rb in a2.robustness}
    assert set(tables) == {"InstanceNorm", "GroupNorm(1)"}

    def cell(rb, variant, kind, layout):
        (row,) = [r for r in rb.rows if r.variant == variant]
        return row.cells[rb.columns.index((kind, layout))]

    assert cell(tables["GroupNorm(1)"], "torch_compile", "large_offset", "NCHW").verdict == "unsafe"
    assert cell(tables["InstanceNorm"], "torch_compile", "large_offset", "NCHW").verdict == "safe"
    assert "keras_lambda" not in {r.variant for r in tables["GroupNorm(1)"].rows}

    ops_of = defaultdict(set)
    for s in a2.semantics:
        ops_of[s.variant].add(s.op)
    keras = {op for variant, ops in ops_of.items() if variant.startswith("keras_") for op in ops}
    assert ops_of["torch_module"] == {"InstanceNorm", "GroupNorm(1)"} and keras == {"InstanceNorm"}
