"""Renders the analysis into one HTML page with its PNGs and the rows as CSV.

The page is templates/report.html.j2 through Jinja with autoescape on: every string from a results
file (names, messages, run ids) is escaped, and no HTML is built in Python. Numbers reach the page
through one unit formatter (`fmt`, registered as Jinja filters). The report is written into a
temporary folder beside its target and moved into place at the end, so an interrupted report
leaves no PNGs without their index.html.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bench import analysis, operators
from bench.analysis import Analysis, Results, Where
from bench.cases import shape_text
from bench.errors import BenchError
from bench.frameworks import frameworks
from bench.stats import LIMIT_NOISE

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"
TEMPLATES = Path(__file__).resolve().parent / "templates"
MANIFEST = ".normbench-report"  # the files a report wrote into its folder: replaced on re-render
FRAMEWORK_NAMES = {name: fw.title for name, fw in frameworks().items()}


def newest_results() -> Path:
    files = sorted((ROOT / "results").glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise BenchError("no results in results/; run `python -m bench run` first or name a results file")
    return files[-1]


# ---- the one unit formatter ---------------------------------------------------------------------


def fmt(value: Any, unit: str) -> str:
    """Every number on the page: `unit` is s, x, ratio, pct, sci, bytes, gbps, shape or count."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if unit == "shape":
        return shape_text(value)
    v = float(value)
    if unit == "s":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {name}"
        return f"{v * 1e9:.3g} ns"
    if unit == "x":
        return f"{v:.2f}x" if v < 100 else f"{v:.0f}x"
    if unit == "ratio":
        return f"{v:.2f}"
    if unit == "pct":
        return f"{v * 100:.2g} %" if abs(v) < 0.1 else f"{v * 100:.0f} %"
    if unit == "sci":
        return f"{v:.2g}"
    if unit == "bytes":
        return f"{v / 2**20:.3g} MiB"
    if unit == "gbps":
        return f"{v:.3g} GB/s" if abs(v) < 1000 else f"{v:,.0f} GB/s"  # a GPU's 4,067, not 4.07e+03
    if unit == "count":
        return f"{int(v):,}"
    raise ValueError(f"unknown unit {unit!r}")


def fmt_where(w: Where) -> str:
    kind = "" if w.input_kind == "random" else f" edge case {w.input_kind}"
    shapes = ", ".join(shape_text(s) for s in w.shapes)
    return f"{w.device} {w.mode} {w.dtype} {w.layout}{kind} at {shapes}"


def _filters() -> dict[str, Any]:
    def unit(u: str) -> Any:
        return lambda v: fmt(v, u)

    return {
        "seconds": unit("s"),
        "times": unit("x"),
        "ratio": unit("ratio"),
        "pct": unit("pct"),
        "sci": unit("sci"),
        "mib": unit("bytes"),
        "gbps": unit("gbps"),
        "shape": unit("shape"),
        "thousands": unit("count"),
        "where": fmt_where,
        "framework": lambda fw: FRAMEWORK_NAMES.get(fw, fw),
    }


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(_filters())
    return env


# ---- where the report goes ------------------------------------------------------------------------


def safe_name(text: str, limit: int = 80) -> str:
    """A run id as one folder or file name: letters, digits, '.', '_' and '-' only, no leading dot,
    never '..' (so "../../x" and "/tmp/x" stay inside the reports folder)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    name = re.sub(r"\.{2,}", ".", name).strip("._-")
    return name[:limit].rstrip("._-") or "run"


def default_out(results: Results) -> Path:
    """reports/<run id> (runs joined by '+'), always a direct child of reports/."""
    name = "+".join(safe_name(r, 60) for r in results.runs)
    if len(name) > 120:
        name = f"{safe_name(results.runs[0], 60)}+{len(results.runs) - 1}-more"
    out = REPORTS / name
    if out.resolve().parent != REPORTS.resolve():
        raise BenchError(f"report folder {str(out)!r} is outside {REPORTS}")
    return out


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A temporary folder beside `target` to render into; moved into place only when the block ends
    normally. On any exception (Ctrl-C included) it is removed and `target` is left as it was."""
    if target.exists() and not target.is_dir():
        raise BenchError(f"report folder {str(target)!r} is a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name[:40]}.", suffix=".tmp", dir=target.parent))
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would follow the folder into place
    except OSError as exc:
        raise BenchError(f"report folder {str(target)!r} cannot be created: {exc.strerror or exc}") from None
    try:
        yield tmp
        _install(tmp, target)
    except OSError as exc:
        raise BenchError(f"cannot write the report into {str(target)!r}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install(tmp: Path, target: Path) -> None:
    files = sorted(p.name for p in tmp.iterdir())
    (tmp / MANIFEST).write_text("".join(f"{name}\n" for name in files))
    if not target.exists():
        os.rename(tmp, target)
        return
    # An existing folder (a previous report, or the user's own): our files replace theirs one by
    # one, index.html last; files an earlier report listed and this one does not are removed.
    old = (target / MANIFEST).read_text().split() if (target / MANIFEST).is_file() else []
    for name in sorted(files, key=lambda n: n == "index.html"):
        os.replace(tmp / name, target / name)
    for name in set(old) - set(files):
        stale = target / name
        if name == safe_name(name) and stale.is_file():
            stale.unlink()
    os.replace(tmp / MANIFEST, target / MANIFEST)


# ---- rendering ------------------------------------------------------------------------------------


def _stems(a: Analysis) -> list[str]:
    """A safe, unique file stem per configuration."""
    runs = [r.label for r in a.runs]
    seen: set[str] = set()
    stems = []
    for cr in a.configs:
        c = cr.config
        prefix = f"run{runs.index(c.run) + 1}-" if len(runs) > 1 else ""
        parts = (c.op,) if a.show_op else ()
        stem = prefix + "-".join(safe_name(x, 30) for x in (*parts, c.device, c.mode, c.dtype, c.layout))
        unique, n = stem, 2
        while unique in seen:
            unique, n = f"{stem}-{n}", n + 1
        seen.add(unique)
        stems.append(unique)
    return stems


def render_page(a: Analysis, plots: Sequence[dict[str, str]], title: str | None = None) -> str:
    """The page; its title names the operators measured (those this normbench has)."""
    titles = {label.split("(", 1)[0] for label in a.op_labels}
    ops = sorted(
        (op for op in operators.operators().values() if op.title in titles),
        key=lambda op: operators.label_rank(op.title),  # the default operator first, as the page
    )
    title = title or f"normbench: {', '.join(op.title for op in ops) or 'normalization'}"
    edge_help: dict[str, str] = {}
    for op in ops:
        for kind, text in op.edge_help.items():
            edge_help.setdefault(kind, text)
    return (
        environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            a=a,
            plots=plots,
            ops=ops,
            canon_name=ops[0].title if len(ops) == 1 else "the canonical formula",
            edge_help=edge_help,
            noisy=analysis.NOISY_REL_IQR,
            small_plane=analysis.SMALL_PLANE,
            cache_sol=analysis.CACHE_RESIDENT_SOL,
            limit_noise=LIMIT_NOISE,
            calibration_low=analysis.CALIBRATION_LOW,
            faulting=analysis.FAULTING_PER_CALL,
            first_call_noise=analysis.FIRST_CALL_NOISE,
            multi=len(a.runs) > 1,
        )
    )


def their_operators(results: Results) -> None:
    """Load the operators the runs measured from the folders their sidecars name (--op-path), those
    still there; a run whose folder is gone is reported with its operators' names for titles."""
    paths = {str(p) for env in results.envs.values() for p in env.get("op_paths", ()) if isinstance(p, str)}
    gone = sorted(p for p in paths if not Path(p).exists())
    for p in gone:
        print(f"warning: operators of these results were in {p}, which is gone: their rows are "
              "labelled by operator name, without canonical semantics", file=sys.stderr)  # fmt: skip
    operators.use_paths(sorted(paths - set(gone)))


def render(paths: Sequence[Path], out: Path | None = None, baseline: str | None = None) -> Path:
    """Read, analyse, draw and write the report; returns its index.html."""
    from bench import plots as plotting

    results = analysis.load(list(paths))
    their_operators(results)
    a = analysis.analyse(results, baseline=baseline)
    target = out if out is not None else default_out(results)
    with staged(target) as tmp:
        colors = plotting.palette([m.variant for cr in a.configs for m in cr.measurements])
        drawn = [plotting.draw(cr, tmp, stem, colors) for cr, stem in zip(a.configs, _stems(a))]
        analysis.frame(results).to_csv(tmp / "results.csv", index=False)
        (tmp / "index.html").write_text(render_page(a, drawn), encoding="utf-8")
    return target / "index.html"
