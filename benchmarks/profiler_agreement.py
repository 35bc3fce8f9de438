"""Cross-check on a GPU: normbench's device time against the CUDA kernels' own durations.

For each implementation and case, the harness's own pieces build and time the call: the torch
adapter's inputs (rotating through twice the L2 cache, as the cold policy does), its `make_call`,
the timed loop `bench.worker.Rotation`, and `bench.timing.Sampler` with the CUDA-event clock. Then
torch.profiler records more back-to-back calls of the same loop, and the durations of the device
activities (kernels, memsets, copies) are summed and divided by the number of calls. Where a call
keeps the GPU busy (large shapes) the two agree; where launching costs more than the kernels run
(small shapes), the event time follows the launch rate and the latency column shows the call as
a caller waits for it.

    python3 benchmarks/profiler_agreement.py [--impl NAME]... [--shape N,C,H,W]... [--mode M]...
        [--dtype D]... [--calls 200] [--tolerance 0.05] [--json OUT.json]

Exit status 1 when a case of `--large-elements` or more disagrees by more than the tolerance. A
benchmark script, not a test: it needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the harness is the repo's `bench`

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench import (  # noqa: E402
    memory,  # noqa: E402
    operators,
    registry,
)
from bench.cases import Case, parse_shape, shape_text  # noqa: E402
from bench.frameworks import make_adapter  # noqa: E402
from bench.timing import PRESET_TIMING, Sampler, summarize  # noqa: E402
from bench.worker import Rotation  # noqa: E402

IMPLS = ["torch_layer_norm", "triton_fused"]
SHAPES = [(8, 3, 32, 32), (16, 320, 64, 64), (64, 256, 56, 56), (64, 64, 112, 112)]


def device_activity_us(prof: Any) -> tuple[float, int, dict[str, float]]:
    """(total device time in us, number of device activities, us per activity name) of a profile.

    Read from the raw Kineto events (each device activity once, with its own duration); the
    FunctionEvent list serves where that API is absent."""
    per_name: dict[str, float] = {}
    count = 0
    raw = getattr(getattr(prof, "profiler", None), "kineto_results", None)
    events = list(raw.events()) if raw is not None else []
    if events:
        for e in events:
            if "cuda" not in str(e.device_type()).lower():
                continue
            us = e.duration_ns() / 1e3 if hasattr(e, "duration_ns") else float(e.duration_us())
            per_name[e.name()] = per_name.get(e.name(), 0.0) + us
            count += 1
    else:
        for fe in prof.events():
            if "cuda" not in str(fe.device_type).lower():
                continue
            us = fe.time_range.elapsed_us()
            per_name[fe.name] = per_name.get(fe.name, 0.0) + us
            count += 1
    return sum(per_name.values()), count, per_name


def event_copy_gbps(device: str, nbytes: int = 2 << 30, repeats: int = 20) -> float:
    """One large device-to-device copy timed with CUDA events (bytes read + written, median): a
    cross-check on the copy bandwidth the run measured with its pieces and host clock."""
    src = torch.ones(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / statistics.median(times) / 1e9


def measure(name: str, case: Case, calls: int, settings: Any) -> dict[str, Any]:
    importlib.import_module(f"implementations.{name}")
    impl = registry.get(name)
    adapter = make_adapter(impl.framework, None)
    adapter.setup(torch.get_num_threads(), case.device)
    op = operators.get(case.op)
    x64 = op.make_input(case)
    g64 = op.make_upstream_grad(case) if case.mode != "forward" else None
    nbuf = memory.plan_buffers(
        case.numel, case.itemsize, case.mode, False, 2 * adapter.cache_bytes(case.device), False, 0
    ).count  # type: ignore[union-attr]
    xs = [adapter.to_tensor(x64, case) for _ in range(nbuf)]
    assert impl.builder is not None
    call = adapter.make_call(impl.builder(case), case, xs, g64)
    run = Rotation(call, nbuf, adapter, case.device)
    clock = adapter.clock(case.device)
    sampler = Sampler(run, settings, clock, min_warmup_calls=nbuf)
    sampler.warm_up()
    while not sampler.stop_reason:
        sampler.round()
    device = summarize(sampler.device_samples)
    latency = summarize(sampler.latency_samples)
    run(nbuf, True)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run(calls, False)
        torch.cuda.synchronize()
    total_us, activities, per_name = device_activity_us(prof)
    profiled_s = total_us / 1e6 / calls
    top = sorted(per_name.items(), key=lambda kv: -kv[1])[:4]
    return {
        "impl": name,
        "shape": list(case.shape),
        "mode": case.mode,
        "dtype": case.dtype,
        "layout": case.layout,
        "elements": case.numel,
        "buffers": nbuf,
        "normbench_device_median_s": device.median,
        "normbench_device_rel_ci": device.rel_ci,
        "normbench_latency_median_s": latency.median,
        "stop_reason": sampler.stop_reason,
        "calls_per_sample": sampler.calls_per_sample,
        "profiled_calls": calls,
        "profiler_device_s_per_call": profiled_s,
        "device_activities_per_call": activities / calls,
        "top_activities_us_per_call": {k: v / calls for k, v in top},
        "ratio": (device.median / profiled_s) if device.median and profiled_s else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", action="append", help=f"default: {' '.join(IMPLS)}")
    parser.add_argument("--shape", action="append", help="N,C,H,W (default: four, one small)")
    parser.add_argument("--mode", action="append", choices=("forward", "backward", "train"))
    parser.add_argument("--dtype", action="append", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--layout", default="NCHW", choices=("NCHW", "NHWC"))
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--calls", type=int, default=200, help="calls recorded by the profiler")
    parser.add_argument("--max-time", type=float, default=0.5, help="the harness's sampling budget per case")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--large-elements", type=int, default=1 << 24, help="what counts as a large case")
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args()
    if not args.device.startswith("cuda") or not torch.cuda.is_available():
        print(f"profiler_agreement: needs a CUDA device (got --device {args.device}, torch sees none)")
        return 2
    shapes = [parse_shape(s) for s in args.shape] if args.shape else SHAPES
    timing = PRESET_TIMING["quick"]
    settings = type(timing)(**{**timing.__dict__, "max_time_s": args.max_time})
    copy_gbps = event_copy_gbps(args.device)
    print(f"one 2 GiB device copy, CUDA events: {copy_gbps:.0f} GB/s (read + write)")
    records, worst = [], 0.0
    header = f"{'impl':>17} {'case':>28} {'normbench':>11} {'latency':>10} {'profiler':>10} {'ratio':>6}"
    print(header)
    for name in args.impl or IMPLS:
        for shape in shapes:
            for mode in args.mode or ["forward", "backward"]:
                for dtype in args.dtype or ["float32"]:
                    case = Case(shape=shape, dtype=dtype, layout=args.layout, mode=mode, device=args.device)
                    try:
                        rec = measure(name, case, args.calls, settings)
                    except Exception as exc:  # noqa: BLE001  one failing case is a line, not the end
                        rec = {
                            "impl": name,
                            "shape": list(shape),
                            "mode": mode,
                            "dtype": dtype,
                            "error": repr(exc),
                        }
                        print(f"{name:>17} {shape_text(shape):>12} {mode} {dtype}: {exc!r}")
                        records.append(rec)
                        continue
                    records.append(rec)
                    if args.json:  # after every case: a run cut short keeps what it measured
                        partial = {"summary": None, "records": records}
                        Path(args.json).write_text(json.dumps(partial, indent=2))
                    large = rec["elements"] >= args.large_elements
                    if large and rec["ratio"]:
                        worst = max(worst, abs(rec["ratio"] - 1))
                    us = [
                        rec[k] * 1e6
                        for k in (
                            "normbench_device_median_s",
                            "normbench_latency_median_s",
                            "profiler_device_s_per_call",
                        )
                    ]
                    print(
                        f"{name:>17} {shape_text(shape) + ' ' + mode[:3] + ' ' + dtype:>28} "
                        f"{us[0]:9.1f}us {us[1]:8.1f}us {us[2]:8.1f}us {rec['ratio'] or float('nan'):6.3f}"
                        f"{'' if large else '  (small: launch-bound)'}"
                    )
                    torch.cuda.empty_cache()
    ratios = [r["ratio"] for r in records if r.get("ratio") and r["elements"] >= args.large_elements]
    verdict = "within" if worst <= args.tolerance else "OUTSIDE"
    summary = {
        "large_cases": len(ratios),
        "median_ratio": statistics.median(ratios) if ratios else None,
        "worst_disagreement": worst,
        "tolerance": args.tolerance,
        "event_copy_gbps": copy_gbps,
        "device_name": torch.cuda.get_device_name(),
        "torch": torch.__version__,
    }
    median = summary["median_ratio"] or float("nan")
    print(
        f"large cases ({len(ratios)}): normbench / profiler median {median:.3f}, "
        f"largest disagreement {worst:.1%} ({verdict} +-{args.tolerance:.0%})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "records": records}, indent=2))
    errors = sum(1 for r in records if "error" in r)
    return 0 if worst <= args.tolerance and ratios and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
