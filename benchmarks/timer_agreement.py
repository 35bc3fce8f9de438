"""Cross-check: normbench's median for torch_group_norm vs torch.utils.benchmark.Timer.

Runs the harness (warm cache, like Timer's single input) and blocked_autorange on the same
callable and thread count, at three shapes, and prints the ratio of the two medians. A benchmark
script, not a test: run it on a quiet machine.

    .venv/bin/python benchmarks/timer_agreement.py [--threads N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the harness is the repo's `bench`

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.utils.benchmark as tb  # noqa: E402

from bench import operators  # noqa: E402
from bench.cases import Case  # noqa: E402
from bench.results import read_rows  # noqa: E402

SHAPES = [(8, 64, 28, 28), (8, 64, 56, 56), (2, 64, 128, 128)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "agreement.jsonl"
        shapes = [a for s in SHAPES for a in ("--shape", ",".join(map(str, s)))]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                "run",
                "--impl",
                "torch_group_norm",
                "--device",
                "cpu",
                "--preset",
                "full",
                "--warm-cache",
                "--threads",
                str(args.threads),
                "--out",
                str(out),
                *shapes,
            ],
            cwd=ROOT,
            check=True,
        )
        harness = {tuple(r.shape): r.time_median_s for r in read_rows(out) if r.status == "ok"}
    torch.set_num_threads(args.threads)
    print(f"{'shape':>18} {'normbench':>12} {'Timer':>12} {'ratio':>7}  (threads {args.threads})")
    worst = 0.0
    for shape in SHAPES:
        x = torch.from_numpy(operators.get(Case(shape=shape).op).make_input(Case(shape=shape))).float()
        timer = tb.Timer(
            "F.group_norm(x, c, eps=1e-5)", globals={"F": F, "x": x, "c": shape[1]}, num_threads=args.threads
        )
        ref = timer.blocked_autorange(min_run_time=2.0).median
        ratio = harness[shape] / ref
        worst = max(worst, abs(ratio - 1))
        print(
            f"{'x'.join(map(str, shape)):>18} {harness[shape] * 1e6:10.1f}us {ref * 1e6:10.1f}us {ratio:7.3f}"
        )
    print(f"largest disagreement: {worst:.1%} ({'within' if worst <= 0.10 else 'OUTSIDE'} +-10 %)")
    return 0 if worst <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
