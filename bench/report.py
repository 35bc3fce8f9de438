"""Results -> pandas -> PNGs + one self-contained HTML page (and the data as CSV)."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from jinja2 import Environment, FileSystemLoader, select_autoescape  # noqa: E402

from bench.cases import DTYPES  # noqa: E402
from bench.errors import BenchError  # noqa: E402
from bench.reference import CANONICAL  # noqa: E402
from bench.results import Row, read_envs, read_rows  # noqa: E402
from bench.stats import ratio_ci  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
CONFIG = ["run", "device", "mode", "dtype", "layout"]
NOISY_REL_IQR = 0.10
SMALL_PLANE = 32 * 32  # planes below this are "small" in the verdict's regimes
ARTICLE = ("keras_lambda", "torch_view", "torch_module")


def newest_results() -> Path:
    files = sorted((ROOT / "results").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise BenchError("no results in results/; run `python -m bench run` first or name a results file")
    return files[-1]


def run_label(env: dict[str, Any], rows: list[Row], path: Path) -> str:
    run_id = env.get("run_id") or (rows[0].run_id if rows else path.stem)
    return str(run_id)


def frame(paths: list[Path]) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    records, envs = [], {}
    for path in paths:
        rows = read_rows(path)
        env = next(iter(read_envs(path).values()), {})
        label = run_label(env, rows, path)
        if label in envs:
            label = f"{label} ({path.name})"
        envs[label] = env
        for r in rows:
            d = r.__dict__.copy()
            d["run"] = label
            records.append(d)
    if not records:
        raise BenchError(f"no rows in {', '.join(map(str, paths))}")
    df = pd.DataFrame.from_records(records)
    df["shape_str"] = df["shape"].map(lambda s: "x".join(map(str, s)))
    df["elements"] = df["shape"].map(lambda s: int(np.prod(s)))
    df["plane"] = df["shape"].map(lambda s: int(s[2] * s[3]))
    df["variant"] = df["impl"] + np.where(df["framework"] == "keras", "[" + df["backend"] + "]", "")
    df["noisy"] = df["time_rel_iqr"].astype(float) > NOISY_REL_IQR
    return df, envs


def usable(df: pd.DataFrame) -> pd.DataFrame:
    """Measured rows whose output was right: only these can win a verdict."""
    return df[(df["status"] == "ok") & (df["correct"] == True) & df["time_median_s"].notna()]  # noqa: E712


def _pairs(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[Any, Any]]:
    merged = a.merge(b, on="shape_str", suffixes=("_a", "_b"))
    return list(zip(merged["samples_s_a"], merged["samples_s_b"]))


def best_variant(df: pd.DataFrame) -> tuple[str, pd.DataFrame] | None:
    """The variant with the lowest geometric-mean time over the shapes it shares with the others."""
    if df.empty:
        return None
    shapes = set.intersection(*(set(g["shape_str"]) for _, g in df.groupby("variant")))
    if not shapes:
        shapes = set(df["shape_str"])
    sub = df[df["shape_str"].isin(shapes)]
    score = sub.groupby("variant")["time_median_s"].apply(lambda t: float(np.exp(np.mean(np.log(t)))))
    name = str(score.idxmin())
    return name, df[df["variant"] == name]


def compare_sentence(name_a: str, a: pd.DataFrame, name_b: str, b: pd.DataFrame) -> dict[str, Any] | None:
    pairs = _pairs(a, b)
    if not pairs:
        return None
    ratio, lo, hi = ratio_ci([(y, x) for x, y in pairs])  # b over a: > 1 means a is faster
    if lo > 1:
        text = f"{name_a} is {ratio:.2f}x faster than {name_b}"
    elif hi < 1:
        text = f"{name_a} is {1 / ratio:.2f}x slower than {name_b}"
    else:
        text = f"{name_a} and {name_b} are not distinguishable"
    return {
        "a": name_a,
        "b": name_b,
        "ratio": ratio,
        "ci_low": lo,
        "ci_high": hi,
        "shapes": len(pairs),
        "text": f"{text} (time ratio {ratio:.2f}, 95% CI {lo:.2f}-{hi:.2f}, over {len(pairs)} shapes)",
    }


def verdicts(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Per run x device x mode x dtype: the winners and the head-to-heads, from the rows alone."""
    out = []
    good = usable(df)
    for (run, device, mode, dtype), g in good.groupby(["run", "device", "mode", "dtype"], sort=True):
        v: dict[str, Any] = {"run": run, "device": device, "mode": mode, "dtype": dtype, "sentences": []}
        # Within one layout, the same shapes: the layout where most variants ran.
        layout = g.groupby("layout")["variant"].nunique().idxmax()
        gl = g[g["layout"] == layout]
        v["layout"] = layout
        best = best_variant(gl)
        if best is None:
            continue
        v["fastest"] = best[0]
        v["per_framework"] = {}
        for fw, gf in gl.groupby("framework"):
            b = best_variant(gf)
            if b:
                v["per_framework"][fw] = b[0]
        torch_best, keras_best = (
            best_variant(gl[gl["framework"] == "torch"]),
            best_variant(gl[gl["framework"] == "keras"]),
        )
        if torch_best and keras_best:
            v["torch_vs_keras"] = compare_sentence(
                f"PyTorch's best ({torch_best[0]})",
                torch_best[1],
                f"Keras's best ({keras_best[0]})",
                keras_best[1],
            )
        # The article's own snippets, each in the layout it was written for.
        arts = {
            n: g[(g["impl"] == n) & (g["layout"] == ("NHWC" if n == "keras_lambda" else "NCHW"))]
            for n in ARTICLE
        }
        v["article"] = [
            s
            for n in ("torch_view", "torch_module")
            if not arts[n].empty and not arts["keras_lambda"].empty
            for s in [compare_sentence(n, arts[n], "keras_lambda", arts["keras_lambda"])]
            if s
        ]
        for regime, mask in (
            ("small planes (< 32x32)", gl["plane"] < SMALL_PLANE),
            ("large planes (>= 32x32)", gl["plane"] >= SMALL_PLANE),
        ):
            b = best_variant(gl[mask])
            if b:
                v["sentences"].append(f"On {regime}, {device} {mode} {dtype} {layout}: fastest is {b[0]}.")
        out.append(v)
    # The question people ask first (float32 forward) leads; then train, then backward.
    order = {"forward": 0, "train": 1, "backward": 2}
    out.sort(key=lambda v: (v["run"], v["device"], order.get(v["mode"], 9), _dtype_rank(v["dtype"])))
    return out


def _dtype_rank(dtype: str) -> int:
    return DTYPES.index(dtype) if dtype in DTYPES else len(DTYPES)


def caveats(df: pd.DataFrame) -> list[str]:
    notes = []
    # A tie that includes the canonical semantics (low precision, or a wrong row) is not a design choice.
    sem = df["semantics"].fillna("")
    odd = df[(df["status"] == "ok") & (sem != CANONICAL) & ~sem.str.contains(CANONICAL, regex=False)][
        "impl"
    ].unique()
    if len(odd):
        notes.append(
            "Not the canonical InstanceNorm semantics (population std, eps inside the sqrt): "
            + ", ".join(sorted(odd))
            + ". Their outputs differ by design, not by error."
        )
    mism = df[df["semantics_mismatch"] == True]["impl"].unique()  # noqa: E712
    if len(mism):
        notes.append("Detected semantics differ from the declared ones: " + ", ".join(sorted(mism)) + ".")
    wrong = df[(df["status"] == "ok") & (df["correct"] == False)]["variant"].unique()  # noqa: E712
    if len(wrong):
        notes.append(
            "Outside the dtype's tolerance (excluded from verdicts): " + ", ".join(sorted(wrong)) + "."
        )
    failed = df[df["status"].isin(["error", "crashed", "timeout", "oom"])]["variant"].unique()
    if len(failed):
        notes.append("Failed somewhere (see Errors): " + ", ".join(sorted(failed)) + ".")
    slow_first = df[(df["first_call_s"].astype(float) > 0.5)]["variant"].unique()
    if len(slow_first):
        notes.append(
            "First call over 0.5 s (compile/trace, not in the steady-state times): "
            + ", ".join(sorted(slow_first))
            + "."
        )
    return notes


def colors(variants: list[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab20")
    return {v: cmap(i % 20) for i, v in enumerate(sorted(variants))}


def _save(fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def config_plots(
    g: pd.DataFrame, tag: str, out: Path, palette: dict[str, Any], baseline: str
) -> dict[str, str]:
    plots: dict[str, str] = {}
    ok = g[(g["status"] == "ok") & g["time_median_s"].notna()]
    if ok.empty:
        return plots
    fig, ax = plt.subplots(figsize=(11, 5.5))
    for variant, gv in ok.sort_values("elements").groupby("variant"):
        x = gv["elements"].to_numpy()
        med = gv["time_median_s"].to_numpy() * 1e3
        q = [np.percentile(s, [25, 75]) * 1e3 if len(s) else (m, m) for s, m in zip(gv["samples_s"], med)]
        ax.plot(x, med, "o-", color=palette[variant], label=variant, lw=1.5, ms=4)
        ax.fill_between(x, [a for a, _ in q], [b for _, b in q], color=palette[variant], alpha=0.2)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="elements (N*C*H*W)",
        ylabel="median time per call (ms)",
        title=f"Latency vs problem size ({tag}); bands: IQR",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    plots["latency"] = _save(fig, out, f"latency_{tag}.png")

    base = ok[ok["impl"] == baseline].set_index("shape_str")["time_median_s"]
    if not base.empty:
        piv = ok.pivot_table(index="variant", columns="shape_str", values="time_median_s", aggfunc="median")
        cols = [
            c for c in sorted(piv.columns, key=lambda s: math.prod(map(int, s.split("x")))) if c in base.index
        ]
        if cols:
            speed = base[cols] / piv[cols]
            fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 4, 0.38 * len(speed) + 1.8))
            im = ax.imshow(
                np.log2(speed.to_numpy(dtype=float)), cmap="RdYlGn", vmin=-4, vmax=4, aspect="auto"
            )
            ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
            ax.set_yticks(range(len(speed)), speed.index, fontsize=8)
            for (i, j), val in np.ndenumerate(speed.to_numpy(dtype=float)):
                if np.isfinite(val):
                    ax.text(j, i, f"{val:.2g}x", ha="center", va="center", fontsize=7)
            fig.colorbar(im, ax=ax, label="log2 speedup")
            ax.set_title(f"Speedup vs {baseline} ({tag}); > 1 is faster")
            plots["speedup"] = _save(fig, out, f"speedup_{tag}.png")

    largest = ok[ok["elements"] == ok["elements"].max()].sort_values("time_median_s")
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.35 * len(largest) + 2))
    names = largest["variant"].tolist()
    sol = largest["sol_fraction"].astype(float).fillna(0).to_numpy()
    gbps = largest["achieved_gbps"].astype(float).fillna(0).to_numpy()
    axes[0].barh(names, sol, color=[palette[n] for n in names])
    axes[0].set(
        xlabel="fraction of measured copy bandwidth (speed of light)",
        title=f"Roofline: {largest['shape_str'].iloc[0]}",
    )
    for i, (s, b) in enumerate(zip(sol, gbps)):
        axes[0].text(s, i, f" {b:.3g} GB/s", va="center", fontsize=7)
    mem = largest["extra_mem_bytes"].astype(float).fillna(0).to_numpy() / 2**20
    axes[1].barh(names, mem, color=[palette[n] for n in names])
    axes[1].set(xlabel="extra memory beyond input and output (MiB)", title="Extra memory, same shape")
    for ax in axes:
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    plots["roofline"] = _save(fig, out, f"roofline_{tag}.png")

    first = ok.groupby("variant")["first_call_s"].median().sort_values()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(first) + 1.8))
    ax.barh(first.index, first.to_numpy() * 1e3, color=[palette[n] for n in first.index])
    ax.set(
        xscale="log",
        xlabel="first call (ms, median over shapes): compile/trace included",
        title=f"First-call cost ({tag})",
    )
    ax.invert_yaxis()
    plots["first_call"] = _save(fig, out, f"first_call_{tag}.png")
    return plots


def break_even(df: pd.DataFrame) -> pd.DataFrame:
    """Calls after which a compiled variant has paid back its compile time against its eager twin."""
    rows = []
    counterparts = {"torch_compile": "torch_module", "tf_function": "keras_lambda", "tf_xla": "keras_lambda"}
    ok = df[df["status"] == "ok"]
    for comp, eager in counterparts.items():
        for _, c in ok[ok["impl"] == comp].iterrows():
            e = ok[
                (ok["impl"] == eager)
                & (ok["run"] == c["run"])
                & (ok["device"] == c["device"])
                & (ok["mode"] == c["mode"])
                & (ok["dtype"] == c["dtype"])
                & (ok["shape_str"] == c["shape_str"])
            ]
            if e.empty:
                continue
            e = e.iloc[0]
            gain = e["time_median_s"] - c["time_median_s"]
            extra = c["first_call_s"] - e["first_call_s"]
            calls = math.ceil(extra / gain) if gain > 0 else None
            rows.append(
                {
                    "run": c["run"],
                    "device": c["device"],
                    "mode": c["mode"],
                    "dtype": c["dtype"],
                    "shape": c["shape_str"],
                    "compiled": comp,
                    "eager": f"{eager} ({e['layout']})",
                    "compile cost (s)": round(extra, 4),
                    "saving per call (us)": round(gain * 1e6, 2),
                    "break-even calls": calls if calls is not None else "never (not faster)",
                }
            )
    return pd.DataFrame(rows)


def _fmt_time(s: Any) -> str:
    if s is None or (isinstance(s, float) and not np.isfinite(s)):
        return ""
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.3g} ms"


def results_table(g: pd.DataFrame) -> str:
    t = g[g["status"] == "ok"].sort_values(["shape_str", "time_median_s"])
    body = []
    for _, r in t.iterrows():
        cls = ' class="noisy"' if r["noisy"] else ""
        wrong = "" if r["correct"] else ' class="wrong"'
        body.append(
            f"<tr><td>{html.escape(r['variant'])}</td><td>{r['shape_str']}</td>"
            f"<td{cls}>{_fmt_time(r['time_median_s'])}{' ⚠' if r['noisy'] else ''}</td>"
            f"<td>{(r['time_rel_iqr'] or 0) * 100:.1f} %</td><td>{_fmt_time(r['latency_median_s'])}</td>"
            f"<td>{_fmt_time(r['first_call_s'])}</td><td>{(r['achieved_gbps'] or 0):.3g} GB/s</td>"
            f"<td>{'' if pd.isna(r['sol_fraction']) else f'{r.sol_fraction:.2f}'}</td>"
            f"<td>{'' if pd.isna(r['extra_mem_bytes']) else f'{r.extra_mem_bytes / 2**20:.2f} MiB'}</td>"
            f"<td{wrong}>{'' if pd.isna(r['max_rel_err']) else f'{r.max_rel_err:.2g}'}</td>"
            f"<td>{html.escape(str(r['semantics']))}</td><td>{r['n_samples']} ({r['stop_reason']})</td></tr>"
        )
    head = (
        "<tr><th>implementation</th><th>shape</th><th>median</th><th>IQR/median</th><th>call latency</th>"
        "<th>first call</th><th>achieved</th><th>SOL</th><th>extra mem</th><th>max rel err</th>"
        "<th>semantics (detected)</th><th>samples</th></tr>"
    )
    return f"<table>{head}{''.join(body)}</table>"


def semantics_table(df: pd.DataFrame) -> str:
    ok = df[df["status"] == "ok"]
    agg = (
        ok.groupby(["impl", "semantics_declared"])
        .agg(
            detected=("semantics", lambda s: ", ".join(sorted(set(s)))),
            mismatch=("semantics_mismatch", "any"),
            max_rel_err=("max_rel_err", "max"),
            nonfinite=("nonfinite_outputs", "sum"),
            all_correct=("correct", "all"),
            layout_copy=("layout_copy", "any"),
        )
        .reset_index()
    )
    return agg.to_html(index=False, float_format=lambda v: f"{v:.2g}", classes="semantics", border=0)


def errors_table(df: pd.DataFrame) -> str:
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return "<p>None.</p>"
    agg = (
        bad.groupby(["variant", "status", "message"])
        .agg(cases=("shape_str", "count"), devices=("device", lambda s: ", ".join(sorted(set(s)))))
        .reset_index()
    )
    return agg.to_html(index=False, classes="errors", border=0)


def robustness_table(edge: pd.DataFrame) -> str:
    """Implementation x edge case: safe (finite and close to the reference) or what went wrong."""
    if edge.empty:
        return ""

    def cell(g: pd.DataFrame) -> str:
        r = g.iloc[0]
        if r["status"] != "ok":
            return f"{r['status']}"
        if r["nonfinite_outputs"]:
            return f"UNSAFE: {int(r['nonfinite_outputs'])} non-finite"
        if "unsafe" in r["message"]:
            return f"UNSAFE: abs err {r['max_abs_err']:.2g}"
        if not r["correct"]:
            return f"inexact ({r['max_abs_err']:.2g})"
        return f"safe ({r['max_abs_err']:.1g})"

    table = edge.groupby(["variant", "input_kind"]).apply(cell, include_groups=False).unstack("input_kind")
    return table.fillna("").to_html(border=0, classes="robustness")


def render(paths: list[Path], out: Path | None, baseline: str = "torch_instance_norm") -> Path:
    df, envs = frame(paths)
    edge = df[df["input_kind"] != "random"]
    df = df[df["input_kind"] == "random"]
    if out is None:
        name = "+".join(envs) if len(envs) > 1 else next(iter(envs))
        out = ROOT / "reports" / name[:120]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"report directory {str(out)!r} cannot be created: {exc.strerror}") from None
    palette = colors(df["variant"].unique().tolist())
    configs = []
    for key, g in df.groupby(CONFIG, sort=True):
        tag = "_".join(str(k) for k in key).replace(":", "").replace("/", "-").replace(" ", "")
        configs.append(
            {
                "key": dict(zip(CONFIG, key)),
                "plots": config_plots(g, tag, out, palette, baseline),
                "table": results_table(g),
            }
        )
    flat = df.drop(columns=["samples_s"]).copy()
    flat["shape"] = flat["shape_str"]
    flat.to_csv(out / "results.csv", index=False)
    be = break_even(df)
    jenv = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    page = jenv.get_template("report.html.j2").render(
        title="normbench: per-channel normalization",
        verdicts=verdicts(df),
        caveats=caveats(df),
        configs=configs,
        semantics=semantics_table(df),
        errors=errors_table(df),
        robustness=robustness_table(edge),
        break_even=be.to_html(index=False, border=0) if not be.empty else "",
        envs=envs,
        baseline=baseline,
        runs=list(envs),
        canonical=CANONICAL,
        noisy=NOISY_REL_IQR,
        n_rows=len(df),
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"
