"""The verdicts on the rendered page, recomputed from the same results file with pandas alone.

The README's rules: only rows measured `ok` on random input and within tolerance can win; one
verdict per device x mode x dtype x layout; the fastest variant has the lowest geometric-mean median
time over the shapes every variant ran; "PyTorch vs Keras" is the geometric mean over their shared
shapes of Keras's best median over PyTorch's best median. The file is the committed fixture, whose
NHWC forward configuration holds a wrong row that is the fastest there.
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from bench import analysis, report
from bench.results import read_rows
from tests.conftest import ROOT

RUN_A = ROOT / "tests" / "data" / "run_a.jsonl"


def all_rows(path) -> pd.DataFrame:
    """The file's rows through the reader (fixtures omit fields that hold their default)."""
    return pd.DataFrame([asdict(r) for r in read_rows(path)])


def usable_rows(path) -> pd.DataFrame:
    df = all_rows(path)
    df = df[(df["input_kind"] == "random") & (df["status"] == "ok") & (df["correct"] == True)]  # noqa: E712
    df = df[df["time_median_s"].notna()].copy()
    df["variant"] = [
        f"{i}[{b}]" if fw == "keras" else i for i, b, fw in zip(df["impl"], df["backend"], df["framework"])
    ]
    df["shape"] = df["shape"].map(lambda s: "x".join(map(str, s)))
    return df


def geomean_times(rows: pd.DataFrame) -> pd.DataFrame:
    """variant x shape median times, restricted to the shapes every variant ran (all, if none is)."""
    times = rows.pivot_table(index="variant", columns="shape", values="time_median_s")
    shared = times.dropna(axis=1)
    return shared if shared.shape[1] else times


def fastest(rows: pd.DataFrame) -> str:
    times = geomean_times(rows)
    score = np.exp(np.log(times.astype(float)).mean(axis=1, skipna=True))
    return str(score.idxmin())


def torch_over_keras_ratio(rows: pd.DataFrame, torch_best: str, keras_best: str) -> tuple[float, int]:
    t = rows[rows["variant"] == torch_best].set_index("shape")["time_median_s"]
    k = rows[rows["variant"] == keras_best].set_index("shape")["time_median_s"]
    shapes = t.index.intersection(k.index)
    return float(np.exp(np.mean(np.log(k[shapes] / t[shapes])))), len(shapes)


def page_verdicts(page: str) -> dict[tuple[str, str, str], dict]:
    found = {}
    for block in page.split('<div class="verdict">')[1:]:
        block = html.unescape(block.split("</div>", 1)[0])
        device, mode, dtype, layout = re.search(r"<h3>(.*?)</h3>", block).group(1).split(" · ")[:4]
        per_fw = re.search(r"<b>Fastest per framework:</b> (.*?)\.</p>", block).group(1)
        v = {
            "layout": layout,
            "fastest": re.search(r"<b>Fastest overall:</b> (.*?)\.", block).group(1),
            "per_framework": dict(item.split(": ", 1) for item in per_fw.split("; ")),
        }
        tvk = re.search(r"<b>PyTorch vs Keras:</b> (.*?)\.</p>", block)
        if tvk:
            v["torch_vs_keras"] = tvk.group(1)
        found[(device, mode, dtype, layout)] = v
    return found


@pytest.fixture(scope="module")
def page() -> str:
    a = analysis.analyse(analysis.load([RUN_A]))
    return report.render_page(a, [{}] * len(a.configs))


def test_verdict_matches_a_recomputation_from_the_rows(page):
    rows = usable_rows(RUN_A)
    verdicts = page_verdicts(page)
    assert set(verdicts) == set(rows.groupby(["device", "mode", "dtype", "layout"]).groups)
    assert {k[3] for k in verdicts} == {"NCHW", "NHWC"}

    compared = 0
    for (device, mode, dtype, layout), v in verdicts.items():
        g = rows[(rows["device"] == device) & (rows["mode"] == mode) & (rows["dtype"] == dtype)]
        g = g[g["layout"] == layout]

        assert v["fastest"] == fastest(g), (device, mode, dtype, layout)
        expected_per_fw = {fw: fastest(gf) for fw, gf in g.groupby("framework")}
        assert v["per_framework"] == expected_per_fw, (device, mode, dtype, layout)

        if "torch" not in expected_per_fw or "keras" not in expected_per_fw:
            assert "torch_vs_keras" not in v
            continue
        torch_best, keras_best = expected_per_fw["torch"], expected_per_fw["keras"]
        ratio, n_shapes = torch_over_keras_ratio(g, torch_best, keras_best)
        text = v["torch_vs_keras"]
        m = re.fullmatch(r"(.*) \(time ratio ([\d.]+), 95% CI ([\d.]+)-([\d.]+), over (\d+) shapes\)", text)
        assert m, text
        shown, lo, hi = (float(x) for x in m.group(2, 3, 4))
        assert f"PyTorch's best ({torch_best})" in text and f"Keras's best ({keras_best})" in text
        # Two decimals on the page; the report takes medians of the raw samples, equal to
        # time_median_s up to the rounding of stored samples.
        assert shown == pytest.approx(ratio, abs=0.006, rel=1e-3), (device, mode, dtype, layout, text)
        assert int(m.group(5)) == n_shapes
        assert lo <= shown <= hi
        if lo > 1:
            factor = re.search(r" is ([\d.]+)x faster than ", m.group(1))
            assert factor and float(factor.group(1)) == pytest.approx(ratio, abs=0.006, rel=1e-3), text
        elif hi < 1:
            factor = re.search(r" is ([\d.]+)x slower than ", m.group(1))
            assert factor and float(factor.group(1)) == pytest.approx(1 / ratio, abs=0.006, rel=1e-3), text
        else:
            assert " are not distinguishable" in m.group(1), text
        compared += 1
    assert compared == 4, "every device x mode x dtype x layout has both PyTorch and Keras measured"


def test_the_wrong_fastest_row_does_not_win(page):
    df = all_rows(RUN_A)
    nhwc = df[(df["layout"] == "NHWC") & (df["mode"] == "forward") & (df["input_kind"] == "random")]
    nhwc = nhwc[nhwc["status"] == "ok"]
    big = nhwc[nhwc["shape"].map(tuple) == (2, 4, 16, 16)]
    assert big.loc[big["time_median_s"].idxmin(), "impl"] == "torch_group_norm"  # the fastest row is wrong
    assert page_verdicts(page)[("cpu", "forward", "float32", "NHWC")]["fastest"] != "torch_group_norm"
