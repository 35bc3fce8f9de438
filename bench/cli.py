"""argparse subcommands: list, run, report, compare, check, merge; one BenchError caught in main()."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import operators
from bench.cases import DTYPES, LAYOUTS, MODES, check_choice, parse_shape, preset_timing_name, presets
from bench.errors import BenchError
from bench.registry import check_impl_paths
from bench.timing import preset_timing

MIN_SIZE_BYTES = 1 << 20
EXIT_INCOMPLETE = 75  # a submission ended with measurements `stopped` (EX_TEMPFAIL): --resume completes it


def parse_size(text: str, option: str = "--max-memory") -> int:
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    t = text.strip().lower().removesuffix("ib").removesuffix("b") if text else ""
    try:
        if t and t[-1] in units:
            value = float(t[:-1]) * units[t[-1]]
        else:
            value = float(t)
    except ValueError:
        raise BenchError(f"bad {option} {text!r}; expected a number of bytes such as 8G or 512M") from None
    if not math.isfinite(value) or not 0 < value < 2**60:
        raise BenchError(f"bad {option} {text!r}; expected a positive, finite size such as 8G")
    if value < MIN_SIZE_BYTES:  # 0.5 or 1e-30G would round to 0 bytes: a limit switched off
        raise BenchError(f"bad {option} {text!r}; expected at least 1M (a size such as 8G or 512M)")
    return int(value)


def parse_positive(text: str | None, option: str, unit: str = "") -> float | None:
    """A positive, finite number (nan or inf would silently disable a limit or poison a result)."""
    if text is None:
        return None
    expected = f"bad {option} {text!r}; expected a positive, finite number{unit}"
    try:
        value = float(text)
    except ValueError:
        raise BenchError(expected) from None
    if not math.isfinite(value) or value <= 0:
        raise BenchError(expected)
    return value


def parse_seconds(text: str | None, option: str) -> float | None:
    return parse_positive(text, option, " of seconds")


def operator_params() -> dict[str, str]:
    """Every operator's parameters (name -> the operators that take it), each a repeatable option
    of run and check: num_groups is --num-groups."""
    found: dict[str, list[str]] = {}
    for op in operators.operators().values():
        for name in op.params:
            found.setdefault(name, []).append(op.name)
    return {name: ", ".join(ops) for name, ops in found.items()}


def _param_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_param_args(p: argparse.ArgumentParser) -> None:
    for name, ops in operator_params().items():
        help_text = f"{ops} parameter (repeatable)"
        p.add_argument(_param_flag(name), action="append", default=None, metavar="N", help=help_text)


def param_options(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    """The operator parameter values given (--num-groups 32 --num-groups 1), validated."""
    given = {}
    for name in operator_params():
        values = getattr(args, name, None)
        if values:
            given[name] = tuple(dict.fromkeys(parse_count(v, _param_flag(name)) for v in values))
    return given


def parse_ops(names: list[str]) -> tuple[str, ...]:
    """--op's operators, each checked (an unknown one: a BenchError naming the known ones)."""
    return tuple(dict.fromkeys(check_choice("operator", n, tuple(operators.operators())) for n in names))


def parse_eps(text: str | None) -> float | None:
    return parse_positive(text, "--eps")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="every implementation, its semantics and availability")
    ls.add_argument(
        "--impl",
        action="append",
        default=None,
        metavar="GLOB",
        help="only these (only their files are imported)",
    )
    ls.add_argument("--op", action="append", default=None, metavar="NAME", help="only these operators'")
    add_source_args(ls)

    run = sub.add_parser("run", help="measure implementations and append rows to a results file")
    run.add_argument("--impl", action="append", default=None, metavar="GLOB", help="implementation name glob")
    run.add_argument(
        "--op",
        action="append",
        default=None,
        metavar="NAME",
        help="operator (repeatable; default: every operator a chosen implementation computes)",
    )
    add_param_args(run)
    run.add_argument(
        "--device", default=None, help="cpu | cuda | cuda:N | auto (default: cpu, and cuda if present)"
    )
    run.add_argument("--preset", default=None, help=f"shape sweep: {', '.join(presets())} (default quick)")
    run.add_argument("--shape", action="append", default=None, metavar="N,C,H,W")
    run.add_argument("--dtype", action="append", default=None, help=f"{', '.join(DTYPES)} (repeatable)")
    run.add_argument("--layout", action="append", default=None, help=f"{', '.join(LAYOUTS)} (repeatable)")
    run.add_argument("--mode", action="append", default=None, help=f"{', '.join(MODES)} (repeatable)")
    run.add_argument(
        "--threads", type=int, default=None, help="threads for every framework (default: all cores)"
    )
    run.add_argument("--eps", default=None, help="epsilon (default 1e-5)")
    run.add_argument("--out", default=None, help="results JSONL path (default results/<run_id>.jsonl)")
    run.add_argument(
        "--resume",
        default=None,
        metavar="RESULTS.jsonl",
        help="finish that file's last run, with its options",
    )
    run.add_argument("--warm-cache", action="store_true", help="reuse one input (default: rotate buffers)")
    run.add_argument("--max-time", default=None, help="seconds of sampling per case at most")
    run.add_argument(
        "--case-timeout", default=None, help="seconds without progress while measuring (default 300)"
    )
    run.add_argument(
        "--import-timeout", default=None, help="seconds for a worker to start or import a file (default 120)"
    )
    run.add_argument("--max-memory", default=None, help="worker RSS limit, e.g. 8G (default 80%% of RAM)")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first error row")
    run.add_argument("--report", action="store_true", help="render reports/<run_id>/ afterwards")
    run.add_argument("--edge", action="store_true", help="also check the edge cases (robustness table)")
    run.add_argument(
        "--reprobe",
        action="store_true",
        help="sweep the caches and import every implementation again (default: reuse this machine's "
        "sweep of the last day, and what unchanged files registered)",
    )
    run.add_argument(
        "--effective-cache",
        default=None,
        metavar="SIZE",
        help="take this effective cache (64M, 1G) instead of sweeping for it: a machine whose caches "
        "you know, or a simulated one; the cold check and the copy bandwidth are still measured",
    )
    run.add_argument("--shard", default=None, metavar="K/N", help="measure only part K of N of the plan")
    run.add_argument(
        "--group",
        action="append",
        metavar="GLOB",
        help="measure only these worker groups of the plan (torch/cuda:0, 'keras-*'); runs of one plan "
        "in parts, in the order you choose, merge into one run",
    )
    add_source_args(run)
    add_cluster_args(run)

    chk = sub.add_parser("check", help="correctness, semantics and edge cases of one implementation, untimed")
    chk.add_argument("impl", help="implementation name (see `python -m bench list`)")
    chk.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    chk.add_argument("--op", action="append", default=None, metavar="NAME", help="the operator it computes")
    add_param_args(chk)
    chk.add_argument("--dtype", action="append", default=None, help="default: every declared dtype")
    chk.add_argument("--layout", action="append", default=None, help="default: every declared layout")
    chk.add_argument("--mode", action="append", default=None, help="default: every declared mode")
    chk.add_argument("--shape", action="append", default=None, metavar="N,C,H,W", help="default: 2,3,6,8")
    chk.add_argument("--eps", default=None, help="epsilon (default 1e-5)")
    chk.add_argument("--no-edge", action="store_true", help="skip the edge cases")
    chk.add_argument("--case-timeout", default=None, help="seconds without progress (default 300)")
    chk.add_argument("--import-timeout", default=None, help="seconds to start or import a file (default 120)")
    chk.add_argument("--max-memory", default=None, help="worker RSS limit, e.g. 8G (default 80%% of RAM)")
    add_source_args(chk)

    rep = sub.add_parser("report", help="render results into an HTML page with PNGs")
    rep.add_argument("results", nargs="*", help="results JSONL files (default: the newest in results/)")
    rep.add_argument("--out", default=None, help="output directory (default reports/<run_id>)")
    rep.add_argument(
        "--baseline",
        default=None,
        metavar="NAME",
        help="the heatmaps' reference (default: the implementation whose rows declare the baseline role)",
    )
    add_op_path_arg(rep)

    rep_ = sub.add_parser(
        "repro",
        allow_abbrev=False,  # its own options must not swallow a run option they begin (--out)
        help="the same run in K fresh processes: the spread of the medians (then any `run` options)",
    )
    rep_.add_argument("--runs", type=int, default=5, help="processes (default 5)")
    rep_.add_argument(
        "--out-dir", default=None, help="where the K results files go (default results/repro-<id>)"
    )

    cmp_ = sub.add_parser("compare", help="statistical comparison of two runs")
    cmp_.add_argument("base")
    cmp_.add_argument("new")
    cmp_.add_argument(
        "--threshold", default="10%", help="relative change that matters (default 10%%, as asv's 1.1 factor)"
    )
    cmp_.add_argument("--json", default=None, help="also write the comparison as JSON here")
    cmp_.add_argument(
        "--run-noise",
        default="auto",
        help="run-to-run noise added to each CI: auto (from the spread of all ratios) or a sd, e.g. 3%%",
    )

    mg = sub.add_parser("merge", help="one results file from shards or cluster jobs; rows keep their machine")
    mg.add_argument("out", metavar="OUT.jsonl", help="the merged results file (new)")
    mg.add_argument("inputs", nargs="+", metavar="SHARD.jsonl", help="results files to merge")
    return p


def add_cluster_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster (submitit): one job per worker group, shards merged into --out")
    g.add_argument("--executor", default=None, help="local | slurm: run as submitit jobs")
    g.add_argument(
        "--folder", default=None, help="shared folder for shards and logs (default results/<run_id>.jobs)"
    )
    g.add_argument("--partition", default=None, help="SLURM partition")
    g.add_argument("--constraint", default=None, help="SLURM constraint, e.g. h100")
    g.add_argument("--gpus-per-job", default=None, help="GPUs a GPU job asks SLURM for (default 1)")
    g.add_argument("--time", default=None, help="minutes a job may run (default 120)")
    g.add_argument("--array-parallelism", default=None, help="SLURM: jobs of one array at once")
    g.add_argument("--cpu-jobs", default=None, help="local: CPU jobs at once (default 1: alone, in turn)")


def add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl-path", action="append", default=[], metavar="DIR", help="extra implementations")
    p.add_argument(
        "--impl-module", action="append", default=[], metavar="MODULE", help="extra implementations"
    )
    add_op_path_arg(p)


def add_op_path_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--op-path", action="append", default=[], metavar="DIR", help="extra operators (folder or .py file)"
    )


def resolve_devices(text: str, gpus: int | None = None) -> list[str]:
    """Devices of a --device value; `gpus`: how many the machine that measures has (default: this one)."""
    from bench.environment import cuda_device_count

    gpus = cuda_device_count() if gpus is None else gpus
    if text == "auto":
        return ["cpu"] + (["cuda:0"] if gpus else [])
    if text == "cpu":
        return ["cpu"]
    if text == "cuda" or text.startswith("cuda:"):
        index = 0 if text == "cuda" else text.split(":", 1)[1]
        if not str(index).isdigit():
            raise BenchError(f"bad --device {text!r}; expected cpu, cuda, cuda:N or auto")
        if int(index) >= gpus:
            raise BenchError(f"--device {text!r} requested but this machine has {gpus} CUDA GPU(s)")
        return [f"cuda:{index}"]
    raise BenchError(f"bad --device {text!r}; expected cpu, cuda, cuda:N or auto")


def say_imports(cfg: Any, source: Path) -> None:
    """A resume imports the code its file names: say so before it does."""
    from bench.stored import imports

    if imports(cfg):
        print(f"resume of {source} imports code from: {imports(cfg)}", file=sys.stderr)


def check_out_path(path: Path) -> None:
    """Refuse an --out that cannot be written, or that holds something else than normbench rows,
    before anything is measured or created."""
    import tempfile

    from bench.stored import is_results_file

    if path.is_dir():
        raise BenchError(f"--out {str(path)!r} is a directory; expected a .jsonl file path")
    if path.is_file() and not is_results_file(path):
        raise BenchError(
            f"--out {str(path)!r} exists and is not a normbench results file (its first line is no "
            "row); choose another path"
        )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    try:
        # A probe file that vanishes on close: root passes os.access, but /proc and read-only mounts do not.
        with tempfile.TemporaryFile(dir=parent):
            pass
        if path.exists():
            with open(path, "a"):
                pass
    except OSError:
        raise BenchError(f"--out {str(path)!r} is not writable") from None


def run_options(args: argparse.Namespace, gpus: int | None = None) -> dict[str, Any]:
    """The RunConfig fields the command line gave explicitly, validated (bad input: BenchError)."""
    given: dict[str, Any] = {}
    if args.impl:
        given["impl_globs"] = tuple(args.impl)
    if args.op:
        given["ops"] = parse_ops(args.op)
    params = param_options(args)
    if params:
        given["params"] = params
    if args.device:
        given["devices"] = tuple(resolve_devices(args.device, gpus))
    if args.preset:
        given["preset"] = check_choice("preset", args.preset, presets())
    if args.shape:
        given["shapes"] = tuple(parse_shape(s) for s in args.shape)
    if args.dtype:
        given["dtypes"] = tuple(check_choice("dtype", d, DTYPES) for d in args.dtype)
    if args.layout:
        given["layouts"] = tuple(check_choice("layout", v, LAYOUTS) for v in args.layout)
    if args.mode:
        given["modes"] = tuple(check_choice("mode", m, MODES) for m in args.mode)
    if args.threads is not None:
        cores = os.cpu_count() or 1
        if not 0 <= args.threads <= cores:
            raise BenchError(f"bad --threads {args.threads}; expected 1..{cores} (0: all cores)")
        given["threads"] = args.threads or cores
    if args.eps is not None:
        given["eps"] = parse_eps(args.eps)
    if args.impl_path:
        check_impl_paths(args.impl_path)
        given["impl_paths"] = tuple(str(Path(p).resolve()) for p in args.impl_path)
    if args.impl_module:
        given["impl_modules"] = tuple(args.impl_module)
    if args.op_path:
        given["op_paths"] = operators.use_paths(args.op_path)
    if args.edge:
        given["edge"] = True
    if args.case_timeout is not None:
        given["case_timeout_s"] = parse_seconds(args.case_timeout, "--case-timeout")
    if args.import_timeout is not None:
        given["import_timeout_s"] = parse_seconds(args.import_timeout, "--import-timeout")
    if args.max_memory is not None:
        given["max_memory_bytes"] = parse_size(args.max_memory)
    if args.fail_fast:
        given["fail_fast"] = True
    if args.reprobe:
        given["reprobe"] = True
    if args.shard:
        from bench.shards import parse_shard

        given["shard"] = parse_shard(args.shard).text()
    if args.group:
        given["groups"] = tuple(args.group)
    if args.effective_cache is not None:
        given["effective_cache_bytes"] = parse_size(args.effective_cache, "--effective-cache")
    return given


# run options that only a submission (--executor) takes
CLUSTER_ONLY = ("folder", "partition", "constraint", "gpus_per_job", "time", "array_parallelism", "cpu_jobs")


def new_config(
    given: dict[str, Any], max_time: float | None, warm_cache: bool, devices: tuple[str, ...] | None = None
) -> Any:
    from dataclasses import replace

    from bench.environment import total_memory_bytes
    from bench.runner import RunConfig

    preset = given.get("preset", "quick")
    settings = preset_timing(preset_timing_name(preset))
    if warm_cache:
        settings = replace(settings, warm_cache=True)
    if max_time is not None:
        settings = replace(settings, max_time_s=max_time, min_time_s=min(settings.min_time_s, max_time))
    defaults = {
        "devices": devices or tuple(resolve_devices("auto")),
        "threads": os.cpu_count() or 1,
        "max_memory_bytes": int(0.8 * total_memory_bytes()),
        "settings": settings,
    }
    return RunConfig(**{**defaults, **given})


def cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bench.environment import new_run_id
    from bench.runner import ROOT, Run, config_differences, resume_config
    from bench.shards import SUPERVISION

    if args.executor or (args.resume and Path(args.resume).is_dir()):
        return cmd_run_cluster(args)
    for name in CLUSTER_ONLY:
        if getattr(args, name) is not None:
            raise BenchError(f"--{name.replace('_', '-')} needs --executor local|slurm")
    given = run_options(args)
    max_time = parse_seconds(args.max_time, "--max-time")
    resume_run = None
    if args.resume:
        out = Path(args.resume)
        if not out.is_file():
            raise BenchError(f"--resume {args.resume!r}: no such results file")
        if args.out and Path(args.out).resolve() != out.resolve():
            raise BenchError(
                f"--out {args.out!r} with --resume {args.resume!r}: a resume appends to its own file"
            )
        resume_run, stored = resume_config(out)
        say_imports(stored, out)
        what = {k: v for k, v in given.items() if k not in SUPERVISION}
        if max_time is not None:
            what["max_time_s"] = max_time
        if args.warm_cache:
            what["warm_cache"] = True
        diffs = config_differences(stored, what)
        if diffs:
            raise BenchError(
                f"--resume {args.resume!r}: options differ from that run's: {'; '.join(diffs)}; "
                "give none, or the same"
            )
        cfg = replace(stored, **{k: v for k, v in given.items() if k in SUPERVISION})
        check_out_path(out)
    else:
        cfg = new_config(given, max_time, args.warm_cache)
        run_id = new_run_id()
        out = Path(args.out) if args.out else ROOT / "results" / f"{run_id}.jsonl"
        check_out_path(out)
    command = " ".join(shlex.quote(a) for a in sys.argv)
    run = Run(
        cfg, out, resume_run=resume_run, run_id=None if resume_run else run_id, command=command,
        check_groups=bool(cfg.groups),
    )  # fmt: skip
    try:
        path = run.execute()
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        return 128 + int(signum)
    if args.report:
        code = report_after_run(path)
        if code:
            return code
    print(path)
    return 0


def parse_count(text: str, option: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BenchError(f"bad {option} {text!r}; expected a positive integer") from None
    if value < 1:
        raise BenchError(f"bad {option} {text!r}; expected a positive integer")
    return value


def cluster_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ClusterOptions fields the command line gave explicitly, validated."""
    from bench.cluster import EXECUTORS

    given: dict[str, Any] = {}
    if args.executor is not None:
        given["executor"] = check_choice("executor", args.executor, EXECUTORS)
    for name in ("partition", "constraint"):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    counts = {"gpus_per_job": "--gpus-per-job", "time": "--time", "array_parallelism": "--array-parallelism",
              "cpu_jobs": "--cpu-jobs"}  # fmt: skip
    for name, option in counts.items():
        if getattr(args, name) is not None:
            given["time_min" if name == "time" else name] = parse_count(getattr(args, name), option)
    return given


def cmd_run_cluster(args: argparse.Namespace) -> int:
    """`run --executor local|slurm` (or `run --resume FOLDER`): bench.cluster does the rest."""
    from dataclasses import replace

    from bench.cluster import ClusterOptions, ClusterRun, read_manifest
    from bench.environment import new_run_id
    from bench.runner import ROOT, config_differences
    from bench.shards import SUPERVISION
    from bench.stored import run_config, submission

    if args.shard:
        raise BenchError("--shard with --executor: a submission is already split, one job per worker group")
    if args.group:
        raise BenchError("--group with --executor: a submission is already split, one job per worker group")
    if args.device and args.device.startswith("cuda:") and args.device != "cuda:0":
        raise BenchError(
            f"--device {args.device!r} with --executor: each GPU job gets a GPU of its own; use --device "
            "cuda (choose the GPUs with CUDA_VISIBLE_DEVICES, or SLURM's options)"
        )
    wanted = cluster_options(args)
    if args.resume:
        folder = Path(args.resume)
        doc = read_manifest(folder)
        run_id, out = submission(doc, folder)  # its options and out, checked before they are used
        opts = replace(ClusterOptions.from_json(doc.get("options", {})), **wanted)
        if args.out and Path(args.out).resolve() != Path(doc["out"]).resolve():
            raise BenchError(
                f"--out {args.out!r} with --resume {args.resume!r}: a resume merges into {doc['out']}"
            )
        if args.folder:
            raise BenchError(
                f"--folder with --resume {args.resume!r}: the submission's folder is {args.resume}"
            )
        where = f"--resume {str(folder)!r}: the run configuration in submission.json"
        stored = run_config(doc.get("config"), where, gpus=None if opts.executor == "local" else 1)
        say_imports(stored, folder)
        given = run_options(args, gpus=None if opts.executor == "local" else 1)
        what = {k: v for k, v in given.items() if k not in SUPERVISION}
        if args.max_time is not None:
            what["max_time_s"] = parse_seconds(args.max_time, "--max-time")
        if args.warm_cache:
            what["warm_cache"] = True
        diffs = config_differences(stored, what)
        if diffs:
            raise BenchError(
                f"--resume {args.resume!r}: options differ from the submission's: {'; '.join(diffs)}; "
                "give none, or the same"
            )
        cfg = replace(stored, **{k: v for k, v in given.items() if k in SUPERVISION})
        resume = True
    else:
        opts = ClusterOptions(**wanted)
        local = opts.executor == "local"
        for name in ("partition", "constraint", "array_parallelism"):
            if not local:
                break
            if name in wanted:
                raise BenchError(f"--{name.replace('_', '-')} is a SLURM option; it needs --executor slurm")
        given = run_options(args, gpus=None if local else 1)
        max_time = parse_seconds(args.max_time, "--max-time")
        # a SLURM login node's GPUs say nothing of the nodes': CPU unless --device says otherwise
        cfg = new_config(given, max_time, args.warm_cache, devices=None if local else ("cpu",))
        run_id = new_run_id()
        folder = Path(args.folder) if args.folder else ROOT / "results" / f"{run_id}.jobs"
        out = Path(args.out) if args.out else ROOT / "results" / f"{run_id}.jsonl"
        if folder.is_dir() and any(folder.iterdir()):
            raise BenchError(
                f"--folder {str(folder)!r} is not empty; resume that submission with --resume {folder}, "
                "or choose another folder"
            )
        if out.exists():
            raise BenchError(f"--out {str(out)!r} exists; a submission merges into a new file")
        check_out_path(out)
        resume = False
    command = " ".join(shlex.quote(a) for a in sys.argv)
    cluster = ClusterRun(cfg, opts, folder, out, run_id, command=command, resume=resume)
    try:
        path = cluster.execute()
    except KeyboardInterrupt as exc:
        signum = exc.args[0] if exc.args and isinstance(exc.args[0], int) else signal.SIGINT
        return 128 + int(signum)
    if args.report:
        code = report_after_run(path)
        if code:
            return code
    print(path)
    return EXIT_INCOMPLETE if cluster.stopped else 0


def cmd_merge(args: argparse.Namespace) -> int:
    from bench.results import check_results_path
    from bench.shards import merge

    out = Path(args.out)
    if out.is_dir():
        raise BenchError(f"{args.out!r} is a directory; expected the merged .jsonl file's path")
    for name in args.inputs:
        check_results_path(Path(name))
    for m in merge([Path(p) for p in args.inputs], out):
        shards = f", shards {m.shards}" if m.shards else ""
        print(
            f"run {m.run_id}: {m.rows} rows measured on {m.machine or 'an unknown machine'} "
            f"({len(m.files)} file{'s' if len(m.files) > 1 else ''}{shards})",
            file=sys.stderr,
        )
    print(out)
    return 0


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def cmd_list(args: argparse.Namespace) -> int:
    from bench.registry import declared_names, describe_source, sources
    from bench.runner import select_impls
    from bench.workers import discover

    found = sources(args.impl_path, args.impl_module)
    only = set(select_impls(declared_names(found), tuple(args.impl))) if args.impl else None
    disc = discover(found, os.cpu_count() or 1, only=only, say=_warn)
    impls = {**disc.impls, **{f"{d.name} ({d.source})": d for d in disc.duplicates}}
    if only is not None:
        impls = {k: i for k, i in impls.items() if i.name in only}
    if args.op:
        ops = parse_ops(args.op)
        impls = {k: i for k, i in impls.items() if i.op in ops}
    header = ("name", "operator", "framework", "backends", "layouts", "semantics", "source", "status")
    table = [header]
    for name in sorted(impls):
        i = impls[name]
        status = f"unavailable: {i.unavailable}" if i.unavailable else "available"
        table.append(
            (
                i.name,
                i.op,
                i.framework or "-",
                ",".join(i.backends),
                ",".join(i.layouts) or "-",
                i.semantics if i.layouts else "-",
                describe_source(i.source) if i.source else "-",
                status,
            )
        )
    widths = [max(len(r[k]) for r in table) for k in range(len(header) - 1)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    available = sum(1 for i in impls.values() if not i.unavailable)
    print(
        f"\n{len(impls)} implementations, {available} available. Sources: built-in = implementations/; "
        "file = --impl-path; module = --impl-module; plugin = entry point in group normbench.implementations"
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from bench.check import check

    dtypes = [check_choice("dtype", d, DTYPES) for d in args.dtype] if args.dtype else None
    layouts = [check_choice("layout", v, LAYOUTS) for v in args.layout] if args.layout else None
    modes = [check_choice("mode", m, MODES) for m in args.mode] if args.mode else None
    shapes = [parse_shape(s) for s in args.shape] if args.shape else None
    eps = parse_eps(args.eps) or 1e-5
    check_impl_paths(args.impl_path)
    from bench.environment import total_memory_bytes
    from bench.workers import Limits

    limits = Limits(
        case_timeout_s=parse_seconds(args.case_timeout, "--case-timeout") or 300.0,
        import_timeout_s=parse_seconds(args.import_timeout, "--import-timeout") or 120.0,
        max_memory_bytes=parse_size(args.max_memory) if args.max_memory else int(0.8 * total_memory_bytes()),
    )
    return check(
        args.impl,
        resolve_devices(args.device),
        dtypes=dtypes,
        layouts=layouts,
        modes=modes,
        shapes=shapes,
        eps=eps,
        edge=not args.no_edge,
        ops=parse_ops(args.op) if args.op else None,
        params=param_options(args),
        impl_paths=args.impl_path,
        impl_modules=args.impl_module,
        limits=limits,
    )


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a step with no handler of its own (a report) as Ctrl-C does: with a line that
    says what was kept, not a silent death."""

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _signum(exc: KeyboardInterrupt) -> int:
    return int(exc.args[0]) if exc.args and isinstance(exc.args[0], int) else int(signal.SIGINT)


def report_after_run(path: Path) -> int:
    """`run --report`: the report of the rows just written; 0, or the exit code of a stop."""
    from bench.report import render

    try:
        with sigterm_as_interrupt():
            index = render([path], None)
    except KeyboardInterrupt as exc:
        name = signal.Signals(_signum(exc)).name
        print(f"report stopped by {name}: no report written; the rows are in {path}", file=sys.stderr)
        return 128 + _signum(exc)
    print(f"report: {index}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    try:
        with sigterm_as_interrupt():
            from bench.report import newest_results, render
            from bench.results import check_results_path

            paths = [Path(p) for p in args.results] or [newest_results()]
            for p in paths:
                check_results_path(p)
            index = render(paths, Path(args.out) if args.out else None, baseline=args.baseline)
    except KeyboardInterrupt as exc:
        print(f"report stopped by {signal.Signals(_signum(exc)).name}: nothing written", file=sys.stderr)
        return 128 + _signum(exc)
    print(index)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare_files, parse_run_noise, parse_threshold

    threshold, noise = parse_threshold(args.threshold), parse_run_noise(args.run_noise)
    try:
        return compare_files(Path(args.base), Path(args.new), threshold, args.json, noise)
    except KeyboardInterrupt:
        print("compare interrupted", file=sys.stderr)
        return 130


def cmd_repro(args: argparse.Namespace, run_args: list[str]) -> int:
    from bench.environment import new_run_id
    from bench.repro import noise_floor, print_table, run_many, spreads
    from bench.runner import ROOT

    if not 2 <= args.runs <= 100:
        raise BenchError(f"bad --runs {args.runs}; expected 2..100")
    if any(a in ("--out", "--resume", "--report") or a.startswith(("--out=", "--resume=")) for a in run_args):
        raise BenchError(
            "repro writes its own results files: give --out-dir, not --out, --resume or --report"
        )
    parsed = build_parser().parse_args(["run", *run_args])  # bad run options fail before any run
    run_options(parsed)
    parse_seconds(parsed.max_time, "--max-time")
    if parsed.executor or any(getattr(parsed, name) is not None for name in CLUSTER_ONLY):
        raise BenchError("repro runs each process on this machine: no --executor or cluster options")
    out_dir = Path(args.out_dir) if args.out_dir else ROOT / "results" / f"repro-{new_run_id()}"
    if out_dir.exists() and not out_dir.is_dir():
        raise BenchError(f"--out-dir {str(out_dir)!r} is a file; expected a folder for the runs")
    earlier = sorted(p.name for p in out_dir.glob("*")) if out_dir.is_dir() else []
    if earlier:  # its runs' files would gain a second run each, and the table mix the two
        raise BenchError(
            f"--out-dir {str(out_dir)!r} is not empty ({', '.join(earlier[:3])}"
            f"{', ...' if len(earlier) > 3 else ''}); choose a new folder for this repro"
        )
    paths = run_many(args.runs, run_args, out_dir)
    print_table(spreads(paths), noise_floor(paths), out_dir)
    return 0


def op_paths_given(argv: list[str]) -> list[str]:
    """The --op-path values in a command line, read before the parser is built: the operators they
    hold add their parameters' options (--num-groups is GroupNorm's)."""
    found = []
    for i, arg in enumerate(argv):
        if arg == "--op-path" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--op-path="):
            found.append(arg.split("=", 1)[1])
    return found


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        operators.use_paths(op_paths_given(argv))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "repro":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command == "repro":
            return cmd_repro(args, rest)
        command = {
            "list": cmd_list,
            "run": cmd_run,
            "check": cmd_check,
            "report": cmd_report,
            "compare": cmd_compare,
            "merge": cmd_merge,
        }[args.command]
        return command(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
