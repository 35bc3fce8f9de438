"""What a GPU run says, in the figures its issue asks for: rows by status and by why sampling
stopped, normbench's own kernel against the copy bandwidth and against every other PyTorch
implementation, and each implementation's device time, call latency and fraction of the speed of
light at a small and a large shape.

    python3 tools/gpu_summary.py RESULTS.jsonl [--own triton_fused] [--json OUT.json]

Reads the file as `bench report` does (older schemas migrated); prints text, `--json` writes it all.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cases import shape_text  # noqa: E402
from bench.results import Row, read_envs, read_rows  # noqa: E402
from bench.stats import copy_gbps_samples, sol_fraction  # noqa: E402

# The bar for the own kernel: a fraction of the copy bandwidth per mode, on planes of at
# least 32x32 with N*C at least 4096.
TARGET_SOL = {"forward": 0.85, "backward": 0.80}
MIN_PLANE = 32 * 32
MIN_PLANES = 4096


def _sol(row: Row, envs: dict[str, dict[str, Any]]) -> float | None:
    """Against the run's final median copy bandwidth (a row stores the median so far)."""
    return sol_fraction(row.achieved_gbps, row, envs.get(row.run_id, {}))


def _us(seconds: float | None) -> str:
    return f"{seconds * 1e6:.1f}" if seconds else "-"


def summarize(rows: list[Row], envs: dict[str, dict[str, Any]], own: str) -> dict[str, Any]:
    timed = [r for r in rows if r.input_kind == "random"]
    out: dict[str, Any] = {
        "rows": len(rows),
        "status": dict(Counter(r.status for r in rows)),
        "stop_reason": dict(Counter(r.stop_reason for r in timed if r.status == "ok" and r.stop_reason)),
        "wrong": sorted(
            {f"{r.variant} {r.case_key().text()}" for r in timed if r.status == "ok" and not r.correct}
        ),
        "copy_gbps": {},
    }
    for run_id, env in envs.items():
        for device in {r.device for r in rows if r.run_id == run_id}:
            copies = copy_gbps_samples(env, device)
            if copies:
                out["copy_gbps"][f"{run_id} {device}"] = {
                    "median": statistics.median(copies),
                    "samples": copies,
                }
    by_case: dict[Any, list[Row]] = {}
    for r in timed:
        if r.status == "ok" and r.correct and r.time_median_s and r.device.startswith("cuda"):
            by_case.setdefault(r.case_key(), []).append(r)
    target, speedups = [], []
    for key, group in sorted(by_case.items()):
        mine = next((r for r in group if r.impl == own), None)
        n, c, h, w = key.shape
        if mine is None or h * w < MIN_PLANE or n * c < MIN_PLANES:
            continue
        others = [r for r in group if r.framework == "torch" and r.impl != own and "own" not in r.roles]
        best = min(others, key=lambda r: r.time_median_s or math.inf) if others else None
        sol = _sol(mine, envs)
        bar = TARGET_SOL.get(key.mode)
        entry = {
            "case": key.text(),
            "mode": key.mode,
            "sol_fraction": sol,
            "bar": bar,
            "meets_bar": (sol is not None and sol >= bar) if bar else None,
            "time_s": mine.time_median_s,
            "best_other": best.variant if best else None,
            "best_other_s": best.time_median_s if best else None,
            "speedup_vs_best_other": (best.time_median_s / mine.time_median_s)
            if best and best.time_median_s
            else None,
        }
        target.append(entry)
        if entry["speedup_vs_best_other"]:
            speedups.append(entry["speedup_vs_best_other"])
    out["own"] = own
    out["own_target"] = target
    out["own_geomean_speedup"] = (
        math.exp(statistics.fmean(math.log(s) for s in speedups)) if speedups else None
    )
    out["own_slower_cases"] = [e["case"] for e in target if (e["speedup_vs_best_other"] or 0) < 1]
    out["own_below_bar"] = [e["case"] for e in target if e["meets_bar"] is False]
    # Per implementation at the smallest and the largest shape measured (forward, float32, NCHW).
    fwd = [r for r in timed if r.mode == "forward" and r.dtype == "float32" and r.layout == "NCHW"]
    shapes = sorted({r.shape for r in fwd}, key=lambda s: math.prod(s))
    picks = [shapes[0], shapes[-1]] if len(shapes) > 1 else shapes
    table = []
    for r in sorted(fwd, key=lambda r: (math.prod(r.shape), r.variant)):
        if r.shape in picks:
            table.append(
                {
                    "impl": r.variant,
                    "shape": shape_text(r.shape),
                    "status": r.status if r.status != "ok" or r.correct else "wrong",
                    "device_s": r.time_median_s,
                    "latency_s": r.latency_median_s,
                    "sol_fraction": _sol(r, envs),
                    "timer": r.timer,
                    "message": r.message if r.status != "ok" else "",
                }
            )
    out["per_impl"] = table
    return out


def render(s: dict[str, Any]) -> str:
    lines = [f"rows: {s['rows']} ({', '.join(f'{v} {k}' for k, v in sorted(s['status'].items()))})"]
    lines.append("timed rows stopped: " + ", ".join(f"{v} {k}" for k, v in sorted(s["stop_reason"].items())))
    for where, c in s["copy_gbps"].items():
        lines.append(f"copy bandwidth {where}: median {c['median']:.0f} GB/s over {len(c['samples'])} copies")
    if s["wrong"]:
        lines.append(f"wrong ({len(s['wrong'])}): " + "; ".join(s["wrong"][:12]))
    lines.append(f"\n{s['own']} on planes >= 32x32, N*C >= 4096 (sol against the run's copy bandwidth):")
    lines.append(f"{'case':>40} {'sol':>6} {'bar':>5} {'time us':>9} {'best other':>22} {'speedup':>8}")
    for e in s["own_target"]:
        sol = f"{e['sol_fraction']:.3f}" if e["sol_fraction"] is not None else "-"
        bar = f"{e['bar']:.2f}" if e["bar"] else "-"
        sp = f"{e['speedup_vs_best_other']:.2f}x" if e["speedup_vs_best_other"] else "-"
        lines.append(
            f"{e['case']:>40} {sol:>6} {bar:>5} {_us(e['time_s']):>9} {e['best_other'] or '-':>22} {sp:>8}"
        )
    g = s["own_geomean_speedup"]
    lines.append(
        f"geometric mean speedup over the best other PyTorch implementation: {g:.2f}x, "
        f"{len(s['own_target'])} cases"
        if g
        else "no case to compare"
    )
    lines.append(
        f"below the bar: {len(s['own_below_bar'])}; slower than the best other: {len(s['own_slower_cases'])}"
    )
    lines.append("\nper implementation, forward float32 NCHW:")
    lines.append(
        f"{'impl':>28} {'shape':>14} {'device us':>10} {'latency us':>11} {'sol':>6} {'timer':>10}  status"
    )
    for e in s["per_impl"]:
        sol = f"{e['sol_fraction']:.3f}" if e["sol_fraction"] is not None else "-"
        lines.append(
            f"{e['impl']:>28} {e['shape']:>14} {_us(e['device_s']):>10} {_us(e['latency_s']):>11} {sol:>6} "
            f"{e['timer'] or '-':>10}  {e['status']} {e['message'][:80]}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument(
        "--own", default="triton_fused", help="the kernel held to the bar (default triton_fused)"
    )
    parser.add_argument("--json", help="write the summary here too")
    args = parser.parse_args()
    rows = read_rows(args.results)
    if not rows:
        print(f"gpu_summary: no rows in {args.results}")
        return 1
    s = summarize(rows, read_envs(args.results), args.own)
    print(render(s))
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
