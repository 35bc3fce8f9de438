"""matplotlib figures (Agg) from analysis records: latency vs size, speedup heatmap, roofline with
extra memory, first-call cost. Every figure marks what the tables mark: wrong outputs (hatched,
crossed, labelled), cache-resident rows (above the copy bandwidth) and rows whose time includes
page faults. Small PNGs: a full CPU run's ~24 figures stay within a few MB."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from bench.analysis import ConfigResults, Measurement  # noqa: E402
from bench.cases import shape_text  # noqa: E402

DPI = 72
WRONG_HATCH = "xxx"
WRONG_COLOR = "#c00000"
KINDS = ("latency", "speedup", "roofline", "first_call")


def palette(variants: Sequence[str]) -> dict[str, Any]:
    """One colour per variant, the same in every figure of a report."""
    cmap = plt.get_cmap("tab20")
    return {v: cmap(i % 20) for i, v in enumerate(sorted(set(variants)))}


def _title(cr: ConfigResults) -> str:
    c = cr.config
    return f"{c.device} {c.mode} {c.dtype} {c.layout}"


def _marks(m: Measurement) -> str:
    parts = []
    if m.wrong:
        parts.append("WRONG")
    if m.cache_resident:
        parts.append("cache-resident")
    if m.faulting and m.faults_per_call is not None:
        parts.append(f"{m.faults_per_call:.2g} faults/call")
    return ", ".join(parts)


def latency_figure(cr: ConfigResults, colors: dict[str, Any]) -> Figure | None:
    timed = [m for m in cr.measurements if m.time_median_s]
    if not timed:
        return None
    fig, ax = plt.subplots(dpi=DPI, figsize=(8, 4))
    any_wrong = False
    for variant in sorted({m.variant for m in timed}):
        vm = sorted((m for m in timed if m.variant == variant), key=lambda m: m.elements)
        x = [m.elements for m in vm]
        med = [(m.time_median_s or 0) * 1e3 for m in vm]
        lo = [(m.time_q1_s or m.time_median_s or 0) * 1e3 for m in vm]
        hi = [(m.time_q3_s or m.time_median_s or 0) * 1e3 for m in vm]
        wrong = [m.wrong for m in vm]
        label = variant + (" (WRONG output at some sizes)" if any(wrong) else "")
        ax.plot(x, med, "o-", color=colors[variant], label=label, lw=1.3, ms=3.5)
        ax.fill_between(x, lo, hi, color=colors[variant], alpha=0.18, lw=0)
        for m, t in zip(vm, med):
            if m.wrong:
                any_wrong = True
                ax.plot([m.elements], [t], "X", color=WRONG_COLOR, ms=10, mfc="none", mew=1.5)
            note = _marks(m).replace("WRONG", "").strip(", ")
            if note:
                ax.annotate(note, (m.elements, t), fontsize=6.5, xytext=(4, 4), textcoords="offset points")
    if any_wrong:
        ax.plot([], [], "X", color=WRONG_COLOR, ms=8, mfc="none", mew=1.5, ls="none", label="wrong output")
    ax.set(xscale="log", yscale="log", xlabel="elements (N*C*H*W)", ylabel="median time per call (ms)")
    ax.set_title(f"Latency vs size ({_title(cr)}); bands: IQR", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def speedup_figure(cr: ConfigResults) -> Figure | None:
    sp = cr.speedups
    if sp is None or not sp.shapes:
        return None
    variants = [v for v in sp.variants if any(c.variant == v for c in sp.cells)]
    grid = np.full((len(variants), len(sp.shapes)), np.nan)
    for i, v in enumerate(variants):
        for j, s in enumerate(sp.shapes):
            cell = sp.cell(v, s)
            if cell is not None and cell.speedup is not None:
                grid[i, j] = cell.speedup
    fig, ax = plt.subplots(dpi=DPI, figsize=(1.1 * len(sp.shapes) + 3.6, 0.3 * len(variants) + 1.4))
    with np.errstate(invalid="ignore", divide="ignore"):
        im = ax.imshow(np.log2(grid), cmap="RdYlGn", vmin=-4, vmax=4, aspect="auto")
    ax.set_xticks(
        range(len(sp.shapes)), [shape_text(s) for s in sp.shapes], rotation=20, ha="right", fontsize=7
    )
    ax.set_yticks(range(len(variants)), variants, fontsize=7)
    for i, v in enumerate(variants):
        for j, s in enumerate(sp.shapes):
            cell = sp.cell(v, s)
            if cell is None or cell.speedup is None:
                continue
            text = f"{cell.speedup:.2g}x"
            if cell.wrong:
                text += " WRONG"
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch=WRONG_HATCH, ec=WRONG_COLOR, lw=0)
                )
            if cell.cache_resident:
                text += " cache"
            if cell.faults_per_call is not None:
                text += f" {cell.faults_per_call:.2g}pf"
            marked = cell.wrong or cell.cache_resident or cell.faults_per_call is not None
            box = {"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1} if marked else None
            ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color="black", bbox=box)
    fig.colorbar(im, ax=ax, label="log2 speedup", shrink=0.8)
    base = sp.baseline + (" (its output is WRONG here)" if sp.baseline_wrong else "")
    ax.set_title(f"Speedup vs {base} ({_title(cr)}); > 1 is faster", fontsize=9)
    return fig


def roofline_figure(cr: ConfigResults, colors: dict[str, Any]) -> Figure | None:
    bars = cr.roofline
    if not bars:
        return None
    names = [m.variant + (" (WRONG)" if m.wrong else "") for m in bars]
    fig, axes = plt.subplots(1, 2, dpi=DPI, figsize=(10, 0.28 * len(bars) + 1.5), sharey=True)
    sol = np.array([m.sol_fraction or 0.0 for m in bars])
    for ax, values, xlabel in (
        (axes[0], sol, "fraction of the copy bandwidth measured in this run (speed of light)"),
        (axes[1], np.array([(m.extra_mem_bytes or 0) / 2**20 for m in bars]), "extra memory (MiB)"),
    ):
        patches = ax.barh(range(len(bars)), values, color=[colors[m.variant] for m in bars])
        for patch, m in zip(patches, bars):
            if m.wrong:
                patch.set_hatch(WRONG_HATCH)
                patch.set_edgecolor(WRONG_COLOR)
                patch.set_linewidth(1.0)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, axis="x", alpha=0.25)
    axes[0].set_yticks(range(len(bars)), names)
    axes[0].invert_yaxis()
    axes[0].axvline(1.0, color="black", lw=0.8, ls="--")
    axes[0].set_xlim(0, max(1.15, float(sol.max()) * 1.25 if sol.size else 1.15))
    for i, m in enumerate(bars):
        note = f" {m.achieved_gbps:.3g} GB/s" if m.achieved_gbps else ""
        marks = _marks(m)
        axes[0].text(sol[i], i, note + (f" [{marks}]" if marks else ""), va="center", fontsize=6.5)
    axes[0].set_title(f"Roofline at {shape_text(bars[0].shape)} ({_title(cr)})", fontsize=9)
    axes[1].set_title("Extra memory beyond input and output", fontsize=9)
    return fig


def first_call_figure(cr: ConfigResults, colors: dict[str, Any]) -> Figure | None:
    firsts = cr.first_calls
    if not firsts:
        return None
    fig, ax = plt.subplots(dpi=DPI, figsize=(7, 0.28 * len(firsts) + 1.4))
    names = [
        f.variant + (f" (WRONG at {f.wrong_shapes}/{f.shapes} shapes)" if f.wrong_shapes else "")
        for f in firsts
    ]
    patches = ax.barh(
        range(len(firsts)), [f.median_s * 1e3 for f in firsts], color=[colors[f.variant] for f in firsts]
    )
    for patch, f in zip(patches, firsts):
        if f.wrong_shapes:
            patch.set_hatch(WRONG_HATCH)
            patch.set_edgecolor(WRONG_COLOR)
    ax.set_yticks(range(len(firsts)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set(xscale="log", xlabel="first call (ms, median over shapes): compile/trace included")
    ax.set_title(f"First-call cost ({_title(cr)})", fontsize=9)
    ax.grid(True, axis="x", alpha=0.25)
    return fig


def save(fig: Figure, path: Path) -> None:
    """Laid out and drawn at one resolution: the layout's text measurements serve the drawing (a
    figure made at another dpi than it is saved at measures every label twice)."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def draw(cr: ConfigResults, out: Path, stem: str, colors: dict[str, Any]) -> dict[str, str]:
    """The configuration's figures as out/<stem>-<kind>.png; returns kind -> file name."""
    figures = {
        "latency": latency_figure(cr, colors),
        "speedup": speedup_figure(cr),
        "roofline": roofline_figure(cr, colors),
        "first_call": first_call_figure(cr, colors),
    }
    files = {}
    for kind, fig in figures.items():
        if fig is not None:
            name = f"{stem}-{kind}.png"
            save(fig, out / name)
            files[kind] = name
    return files
