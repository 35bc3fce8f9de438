"""Rows -> typed records: the headline answer, verdicts, caveats, break-even, robustness, semantics,
per-configuration results and runs side by side. No formatting and no framework imports: the
records hold names and numbers; bench/plots.py draws them and bench/report.py renders them.

Facts about implementations come from the rows (`roles`, `compiled_from`, `framework`), never from
names in this file. The one product-level fact here is the question normbench answers, "PyTorch
or Keras?": the frameworks "torch" and "keras" are named for it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench import operators
from bench.cases import DTYPES, LAYOUTS, Shape
from bench.compare import Change, compare_rows
from bench.errors import BenchError
from bench.memory import cache_state
from bench.reference import UNSAFE_ABS_ERR
from bench.results import Row, read_envs, read_rows
from bench.stats import CACHE_RESIDENT_SOL, FAULTING_PER_CALL, copy_gbps_samples, ratio_ci, sol_fraction

NOISY_REL_IQR = 0.10  # IQR/median above this: the cell is marked noisy
SMALL_PLANE = 32 * 32  # planes below this are "small" in the verdict's regimes
FIRST_CALL_NOISE = 0.25  # a first call is one sample: less than 25 % over the eager one is not a cost
QUESTION = ("torch", "keras")  # the product's question: PyTorch or Keras
NATIVE_LAYOUT = {"torch": "NCHW"}  # an article snippet "as written"; every other framework is NHWC
HEADLINE_DTYPE = "float32"
MODE_ORDER = ("forward", "train", "backward")
COMPARE_THRESHOLD = 0.10  # runs side by side: a change smaller than this is "same"


# ---- loading: rows grouped into runs ---------------------------------------------------------


@dataclass(frozen=True)
class Results:
    """Rows of one or more results files, each with the label of the run it belongs to."""

    rows: tuple[Row, ...]
    labels: tuple[str, ...]  # run label of each row (run_label)
    envs: Mapping[str, Mapping[str, Any]]  # run id -> that run's env sidecar record
    files: tuple[str, ...]

    def pairs(self) -> Iterable[tuple[str, Row]]:
        return zip(self.labels, self.rows)

    @property
    def runs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.labels))


def run_label(row: Row, envs: Mapping[str, Mapping[str, Any]]) -> str:
    """The run a row is reported under: its run id. `bench merge` gives each kind of machine its
    own run id (and lists the run's hosts in its sidecar); rows of a run id from a host the run's
    sidecar does not list (files joined by hand, shards not merged) are the run `run_id@host`,
    never mixed with the others."""
    env = envs.get(row.run_id, {})
    hosts = env.get("hosts") or ([env["host"]] if env.get("host") else [])
    if row.machine and hosts and row.machine not in hosts:
        return f"{row.run_id}@{row.machine}"
    return row.run_id


def load(paths: Sequence[Path | str], warn: Callable[[str], None] | None = None) -> Results:
    """Every row of every file (migrated and validated by bench.results), grouped by run. A file
    that holds several runs gives several; rows without a run id take their file's name. Exactly
    repeated rows (a file passed twice) count once. BenchError when no file holds a usable row."""
    envs: dict[str, Mapping[str, Any]] = {}
    seen: dict[tuple[str, str, Any], int] = {}
    rows: list[Row] = []
    for path in map(Path, paths):
        file_envs = read_envs(path)
        envs.update(file_envs)
        for row in read_rows(path, warn):
            if not row.run_id:
                row = replace(row, run_id=path.stem)
            key = (row.run_id, row.machine, row.key())
            if key in seen:
                rows[seen[key]] = row  # the later row of a resumed or repeated case wins
                continue
            seen[key] = len(rows)
            rows.append(row)
    if not rows:
        raise BenchError(f"no usable rows in {', '.join(map(str, paths))}")
    labels = tuple(run_label(r, envs) for r in rows)
    return Results(tuple(rows), labels, envs, tuple(map(str, paths)))


# ---- per-row facts ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Config:
    """One run's operator x device x mode x dtype x layout: the unit of a verdict, a table and
    four plots. `op` is the operator's label with its parameters ("GroupNorm(32)")."""

    run: str
    device: str
    mode: str
    dtype: str
    layout: str
    op: str = ""

    def sort_key(self) -> tuple[Any, ...]:
        mode, dtype = _rank(MODE_ORDER, self.mode), _rank(DTYPES, self.dtype)
        return (self.run, self.device, operators.label_rank(self.op), mode, dtype, self.layout)


def _rank(order: Sequence[str], value: str) -> int:
    return order.index(value) if value in order else len(order)


def _config_order(device: str, mode: str, dtype: str, layout: str) -> tuple[Any, ...]:
    return (device, _rank(MODE_ORDER, mode), _rank(DTYPES, dtype), _rank(LAYOUTS, layout), layout)


@dataclass(frozen=True)
class Measurement:
    """One measured (ok, random-input) row, with what the report marks about it."""

    run: str
    variant: str
    impl: str
    framework: str
    backend: str
    device: str
    mode: str
    dtype: str
    layout: str
    shape: Shape
    roles: tuple[str, ...]
    time_median_s: float | None
    time_q1_s: float | None
    time_q3_s: float | None
    rel_iqr: float | None
    latency_s: float | None
    first_call_s: float | None
    achieved_gbps: float | None
    sol_fraction: float | None
    extra_mem_bytes: int | None
    max_rel_err: float | None
    tolerance: float | None
    canonical_rel_err: float | None
    semantics: str
    n_samples: int
    stop_reason: str
    faults_per_call: float | None
    samples_s: tuple[float, ...]
    wrong: bool  # measured, but outside the dtype's tolerance (or non-finite): never a winner
    noisy: bool
    cache_resident: bool
    faulting: bool
    concurrent: bool
    timer: str = ""  # "host" | "cuda_event" | "host_pipelined"
    cache_state: str = ""  # where its inputs came from: "cold" | "partly cached" | "warm" | "" (unknown)
    rotated_bytes: int = 0
    default_alloc_s: float | None = None  # the same call in a default process's allocator state
    default_alloc_faults: float | None = None
    op: str = ""  # the operator's label with its parameters (bench.operators.label)

    @property
    def elements(self) -> int:
        return math.prod(self.shape)

    @property
    def plane(self) -> int:
        return self.shape[2] * self.shape[3]

    @property
    def usable(self) -> bool:
        return not self.wrong and self.time_median_s is not None

    @property
    def config(self) -> Config:
        return Config(self.run, self.device, self.mode, self.dtype, self.layout, self.op)

    @property
    def flags(self) -> tuple[str, ...]:
        """What the flags column shows: wrong, cache-resident, page faults, concurrent."""
        out = []
        if self.wrong:
            out.append("wrong")
        if self.cache_resident:
            out.append("cache-resident")
        if self.faulting:
            out.append("page faults")
        if self.concurrent:
            out.append("concurrent")
        if self.cache_state in ("partly cached", "warm"):
            out.append(f"{self.cache_state} inputs")
        if self.default_alloc_s is not None:
            out.append("default process")
        return tuple(out)

    @property
    def default_alloc_factor(self) -> float | None:
        """How much longer the call takes in a default process (fresh pages for its output)."""
        if self.default_alloc_s and self.time_median_s:
            return self.default_alloc_s / self.time_median_s
        return None

    def timing_samples(self) -> tuple[float, ...]:
        if self.samples_s:
            return self.samples_s
        return (self.time_median_s,) if self.time_median_s else ()


def is_wrong(row: Row) -> bool:
    return row.status == "ok" and row.correct is not True


def measurement(run: str, row: Row, envs: Mapping[str, Mapping[str, Any]]) -> Measurement:
    samples = np.asarray(row.samples_s, dtype=float)
    q1, q3 = (float(v) for v in np.percentile(samples, [25, 75])) if samples.size else (None, None)
    achieved = row.achieved_gbps
    if achieved is None and row.ideal_bytes and row.time_median_s:
        achieved = row.ideal_bytes / row.time_median_s / 1e9
    env = envs.get(row.run_id)
    # rows from before per-case limits without their sidecar: the runner's provisional value
    sol = sol_fraction(achieved, row, env) if env or row.limit_how else row.sol_fraction
    rel_iqr = row.time_rel_iqr
    return Measurement(
        run=run, variant=row.variant, impl=row.impl, framework=row.framework, backend=row.backend,
        device=row.device, mode=row.mode, dtype=row.dtype, layout=row.layout, shape=row.shape,
        roles=row.roles, time_median_s=row.time_median_s, time_q1_s=q1, time_q3_s=q3, rel_iqr=rel_iqr,
        latency_s=row.latency_median_s, first_call_s=row.first_call_s, achieved_gbps=achieved,
        sol_fraction=sol, extra_mem_bytes=row.extra_mem_bytes, max_rel_err=row.max_rel_err,
        tolerance=row.tolerance, canonical_rel_err=row.canonical_rel_err, semantics=row.semantics,
        n_samples=row.n_samples, stop_reason=row.stop_reason, faults_per_call=row.faults_per_call,
        samples_s=row.samples_s, wrong=is_wrong(row),
        noisy=rel_iqr is not None and rel_iqr > NOISY_REL_IQR,
        cache_resident=sol is not None and sol > CACHE_RESIDENT_SOL,
        faulting=row.faults_per_call is not None and row.faults_per_call >= FAULTING_PER_CALL,
        concurrent=row.concurrent, timer=row.timer,
        cache_state=row.cache_state or row_cache_state(row, envs.get(row.run_id, {})),
        rotated_bytes=row.rotated_bytes, default_alloc_s=row.default_alloc_time_median_s,
        default_alloc_faults=row.default_alloc_faults_per_call, op=operators.label(row.op, row.op_params),
    )  # fmt: skip


def row_cache_state(row: Row, env: Mapping[str, Any]) -> str:
    """The cache state of a row written before rows carried it: its rotated bytes against its run's
    effective cache (sidecar), "" where either is unknown."""
    caches = env.get("effective_cache_bytes")
    effective = caches.get(row.device) if isinstance(caches, Mapping) else None
    if not isinstance(effective, int) or isinstance(effective, bool):
        return ""
    return cache_state(row.rotated_bytes, effective)


def measurements(results: Results) -> list[Measurement]:
    """Every timed row (status ok, random input), wrong ones included and marked."""
    return [
        measurement(run, r, results.envs)
        for run, r in results.pairs()
        if r.status == "ok" and r.input_kind == "random"
    ]


def semantics_mismatch(detected: str, declared: str, flagged: bool | None) -> bool:
    """Whether the detected semantics contradicts the declared one. A tie the detector could not
    break ("indistinguishable at ...", or "ambiguous: a | b" naming the declared one) is not."""
    if not flagged or not detected or not declared:
        return False
    if detected.startswith("indistinguishable"):
        return False
    if detected.startswith("ambiguous") and declared in detected:
        return False
    return detected != declared


# ---- verdicts: the fastest correct variant and head-to-heads, with bootstrap CIs ---------------


@dataclass(frozen=True)
class Comparison:
    """a against b over the shapes both ran: ratio = time(b) / time(a), so > 1 means a is faster."""

    a: str
    b: str
    ratio: float
    ci_low: float
    ci_high: float
    shapes: int

    @property
    def outcome(self) -> str:
        """Which is faster, "a" or "b" (the whole CI on its side of 1), or "tie"."""
        if self.ci_low > 1:
            return "a"
        if self.ci_high < 1:
            return "b"
        return "tie"

    @property
    def factor(self) -> float:
        """How many times faster the faster one is (>= 1)."""
        return self.ratio if self.ratio >= 1 else 1 / self.ratio

    @property
    def factor_ci(self) -> tuple[float, float]:
        return (self.ci_low, self.ci_high) if self.ratio >= 1 else (1 / self.ci_high, 1 / self.ci_low)


def compare(
    a_name: str, a: Sequence[Measurement], b_name: str, b: Sequence[Measurement]
) -> Comparison | None:
    """Geometric mean over the shared (logical) shapes of time(b)/time(a), bootstrapped from samples."""
    b_by_shape = {m.shape: m for m in b}
    pairs = [
        (b_by_shape[m.shape].timing_samples(), m.timing_samples())
        for m in sorted(a, key=lambda m: m.shape)
        if m.shape in b_by_shape and m.timing_samples() and b_by_shape[m.shape].timing_samples()
    ]
    if not pairs:
        return None
    ratio, lo, hi = ratio_ci(pairs)
    return Comparison(a_name, b_name, ratio, lo, hi, len(pairs))


def best_variant(ms: Sequence[Measurement]) -> str | None:
    """The usable variant with the lowest geometric-mean median time over the shapes every variant
    ran (over all its shapes when no shape is shared)."""
    ok = [m for m in ms if m.usable]
    if not ok:
        return None
    by_variant: dict[str, dict[Shape, float]] = defaultdict(dict)
    for m in ok:
        assert m.time_median_s is not None
        by_variant[m.variant][m.shape] = m.time_median_s
    shared = set.intersection(*(set(t) for t in by_variant.values()))

    def score(v: str) -> float:
        times = [t for s, t in by_variant[v].items() if s in shared or not shared]
        return float(np.mean(np.log(times)))

    return min(sorted(by_variant), key=score)


@dataclass(frozen=True)
class Verdict:
    """One run x device x mode x dtype x layout: who wins, from the correct rows alone."""

    config: Config
    fastest: str
    per_framework: tuple[tuple[str, str], ...]  # (framework, its fastest library variant)
    torch_vs_keras: Comparison | None  # a = PyTorch's best, b = Keras's best
    small_planes: str | None  # fastest on planes < SMALL_PLANE
    large_planes: str | None
    left_out: tuple[str, ...]  # variants measured here whose output was wrong somewhere in it
    variants: int


def _of(ms: Iterable[Measurement], **where: Any) -> list[Measurement]:
    return [m for m in ms if all(getattr(m, k) == v for k, v in where.items())]


def _by_config(ms: Iterable[Measurement]) -> dict[Config, list[Measurement]]:
    groups: dict[Config, list[Measurement]] = defaultdict(list)
    for m in ms:
        groups[m.config].append(m)
    return dict(sorted(groups.items(), key=lambda kv: kv[0].sort_key()))


def verdict(config: Config, ms: Sequence[Measurement]) -> Verdict | None:
    fastest = best_variant(ms)
    if fastest is None:
        return None
    per_fw = {}
    for fw in sorted({m.framework for m in ms}):
        best = best_variant(_library(_of(ms, framework=fw)))
        if best:
            per_fw[fw] = best
    tvk = None
    torch, keras = (per_fw.get(fw) for fw in QUESTION)
    if torch and keras:
        tvk = compare(
            torch, [m for m in ms if m.variant == torch and m.usable],
            keras, [m for m in ms if m.variant == keras and m.usable],
        )  # fmt: skip
    return Verdict(
        config=config,
        fastest=fastest,
        per_framework=tuple(per_fw.items()),
        torch_vs_keras=tvk,
        small_planes=best_variant([m for m in ms if m.plane < SMALL_PLANE]),
        large_planes=best_variant([m for m in ms if m.plane >= SMALL_PLANE]),
        left_out=tuple(sorted({m.variant for m in ms if m.wrong})),
        variants=len({m.variant for m in ms if m.usable}),
    )


def verdicts(ms: Sequence[Measurement]) -> list[Verdict]:
    """One verdict per run x device x mode x dtype x layout; forward float32 first."""
    return [v for c, g in _by_config(ms).items() if (v := verdict(c, g)) is not None]


# ---- the headline: PyTorch vs Keras per device, in sentences a reader can quote ----------------


@dataclass(frozen=True)
class Best:
    """A framework's fastest correct variant in one layout, and how near the speed of light it runs."""

    framework: str
    variant: str
    sol_fraction: float | None  # at sol_shape: the largest shape it ran
    sol_shape: Shape | None
    cache_resident: bool
    timer: str = ""  # how its rows were timed (a comparison between two timers is said to be one)


@dataclass(frozen=True)
class LayoutAnswer:
    layout: str
    torch: Best | None  # PyTorch's best library implementation (no "own" kernel)
    keras: Best | None
    comparison: Comparison | None  # a = PyTorch's best, b = Keras's best
    own: Best | None = None  # the best kernel written for normbench ("own" role), any framework
    own_vs_torch: Comparison | None = None  # a = that kernel, b = PyTorch's best
    timed: tuple[str, ...] = ()  # the question's frameworks with any timed row here, wrong ones too


@dataclass(frozen=True)
class ArticleMatch:
    """Two of the article's snippets, each in the layout it was written for."""

    torch: str
    torch_layout: str
    keras: str
    keras_layout: str
    comparison: Comparison | None
    torch_semantics: str
    keras_semantics: str
    torch_canonical_rel_err: float | None  # worst distance from InstanceNorm over the shapes
    keras_canonical_rel_err: float | None


@dataclass(frozen=True)
class Answer:
    run: str
    device: str
    mode: str
    dtype: str
    copy_gbps: float | None  # the speed of light the fractions refer to
    layouts: tuple[LayoutAnswer, ...]
    article: tuple[ArticleMatch, ...]
    op: str = ""  # the operator's label ("GroupNorm(32)"); "" when the answer spans every row


@dataclass(frozen=True)
class EdgeFailure:
    variant: str
    layout: str
    input_kind: str
    nonfinite: int
    max_abs_err: float | None


@dataclass(frozen=True)
class Headline:
    """Per run and device: forward float32 (the question people ask), train float32 if measured,
    and the article's snippets that fail an edge case."""

    run: str
    device: str
    main: Answer | None
    train: Answer | None
    article_edge_failures: tuple[EdgeFailure, ...]
    op: str = ""  # the operator's label ("GroupNorm(32)")


def _library(ms: Iterable[Measurement]) -> list[Measurement]:
    """Rows of the libraries' own implementations: the question is which library, so a kernel
    written for normbench (role "own") never answers for the framework it is called from."""
    return [m for m in ms if "own" not in m.roles]


def _best(framework: str | None, ms: Sequence[Measurement]) -> Best | None:
    """The fastest correct library variant of `framework`; with None, the fastest "own" kernel."""
    mine = _library(_of(ms, framework=framework)) if framework else [m for m in ms if "own" in m.roles]
    variant = best_variant(mine)
    if variant is None:
        return None
    largest = max((m for m in mine if m.variant == variant and m.usable), key=lambda m: m.elements)
    return Best(
        largest.framework, variant, largest.sol_fraction, largest.shape, largest.cache_resident, largest.timer
    )


def _versus(a: Best | None, b: Best | None, ms: Sequence[Measurement]) -> Comparison | None:
    if not (a and b):
        return None
    return compare(
        a.variant, [m for m in ms if m.variant == a.variant and m.usable],
        b.variant, [m for m in ms if m.variant == b.variant and m.usable],
    )  # fmt: skip


def _worst(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return max(found) if found else None


def _as_written(ms: Sequence[Measurement], variant: str, framework: str) -> tuple[str, list[Measurement]]:
    """A snippet's usable rows in the layout it was written for (else the layout it ran most in)."""
    mine = [m for m in ms if m.variant == variant and m.usable]
    native = NATIVE_LAYOUT.get(framework, "NHWC")
    in_native = [m for m in mine if m.layout == native]
    if in_native or not mine:
        return native, in_native
    counts = {lay: sum(m.layout == lay for m in mine) for lay in {m.layout for m in mine}}
    layout = max(sorted(counts), key=counts.__getitem__)
    return layout, [m for m in mine if m.layout == layout]


def answer(
    run: str, device: str, mode: str, dtype: str, ms: Sequence[Measurement], copy: float | None, op: str = ""
) -> Answer:
    """One operator's answer (`op`: its label; "": every row given) for one mode and dtype."""
    here = [m for m in ms if (m.run, m.device, m.mode, m.dtype) == (run, device, mode, dtype)]
    here = [m for m in here if m.op == op] if op else here
    layouts = []
    for layout in [lay for lay in LAYOUTS if any(m.layout == lay for m in here)]:
        g = _of(here, layout=layout)
        torch, keras = (_best(fw, g) for fw in QUESTION)
        own = _best(None, g)
        timed = tuple(fw for fw in QUESTION if _of(_library(g), framework=fw))
        layouts.append(
            LayoutAnswer(layout, torch, keras, _versus(torch, keras, g), own, _versus(own, torch, g), timed)
        )
    snippets = {
        fw: sorted({m.variant for m in here if "article" in m.roles and m.framework == fw}) for fw in QUESTION
    }
    article = []
    for t in snippets[QUESTION[0]]:
        t_layout, t_rows = _as_written(here, t, QUESTION[0])
        for k in snippets[QUESTION[1]]:
            k_layout, k_rows = _as_written(here, k, QUESTION[1])
            article.append(
                ArticleMatch(
                    torch=t, torch_layout=t_layout, keras=k, keras_layout=k_layout,
                    comparison=compare(t, t_rows, k, k_rows),
                    torch_semantics=_semantics_of(here, t), keras_semantics=_semantics_of(here, k),
                    torch_canonical_rel_err=_worst(m.canonical_rel_err for m in here if m.variant == t),
                    keras_canonical_rel_err=_worst(m.canonical_rel_err for m in here if m.variant == k),
                )
            )  # fmt: skip
    return Answer(run, device, mode, dtype, copy, tuple(layouts), tuple(article), op)


def _semantics_of(ms: Sequence[Measurement], variant: str) -> str:
    found = sorted({m.semantics for m in ms if m.variant == variant and m.semantics})
    return " / ".join(found)


def headlines(results: Results, ms: Sequence[Measurement]) -> list[Headline]:
    out = []
    keys = sorted(
        {(m.run, m.device, m.op) for m in ms}, key=lambda k: (k[0], k[1], operators.label_rank(k[2]))
    )
    for run, device, op in keys:
        here = [m for m in ms if (m.run, m.device, m.op) == (run, device, op)]
        present = {(m.mode, m.dtype) for m in here}
        main_key = ("forward", HEADLINE_DTYPE)
        if main_key not in present:
            main_key = min(present, key=lambda md: (_rank(MODE_ORDER, md[0]), _rank(DTYPES, md[1])))
        copy = _copy_median(results, run, device)
        main = answer(run, device, *main_key, here, copy, op)
        train = None
        if ("train", HEADLINE_DTYPE) in present and main_key != ("train", HEADLINE_DTYPE):
            train = answer(run, device, "train", HEADLINE_DTYPE, here, copy, op)
        failures = [
            EdgeFailure(r.variant, r.layout, r.input_kind, r.nonfinite_outputs or 0, r.max_abs_err)
            for lab, r in results.pairs()
            if lab == run and r.device == device and r.input_kind != "random" and "article" in r.roles
            and _edge_verdict(r) == "unsafe" and operators.label(r.op, r.op_params) == op
        ]  # fmt: skip
        out.append(Headline(run, device, main, train, tuple(sorted(set(failures), key=_edge_order)), op))
    return out


def _edge_order(f: EdgeFailure) -> tuple[Any, ...]:
    return (f.variant, _rank(operators.edge_kinds(), f.input_kind), f.layout)


def _copy_median(results: Results, run: str, device: str) -> float | None:
    """The one copy bandwidth the fractions refer to; None where each case has its own limit."""
    ids = {r.run_id for lab, r in results.pairs() if lab == run}
    if any(r.limit_how for lab, r in results.pairs() if lab == run and r.device == device):
        return None
    samples = [s for i in sorted(ids) for s in copy_gbps_samples(results.envs.get(i, {}), device)]
    return float(np.median(samples)) if samples else None


# ---- caveats: each names its rows -----------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """A compact reference to rows: one configuration (and input kind) and its shapes."""

    device: str
    mode: str
    dtype: str
    layout: str
    input_kind: str
    shapes: tuple[Shape, ...]


def where(rows: Iterable[Row | Measurement]) -> tuple[Where, ...]:
    groups: dict[tuple[str, ...], set[Shape]] = defaultdict(set)
    for r in rows:
        kind = getattr(r, "input_kind", "random")
        groups[(r.device, r.mode, r.dtype, r.layout, kind)].add(r.shape)
    order = sorted(
        groups,
        key=lambda k: (
            k[0],
            _rank(MODE_ORDER, k[1]),
            _rank(DTYPES, k[2]),
            k[3],
            _rank(("random", *operators.edge_kinds()), k[4]),
        ),
    )
    return tuple(
        Where(device, mode, dtype, layout, kind, tuple(sorted(groups[k], key=math.prod)))
        for k in order
        for device, mode, dtype, layout, kind in [k]
    )


# Variants joined in one caveat (a kind that is the case's or the machine's, not the implementation's:
# every implementation of a case rotates the same inputs) are listed with this between them.
VARIANTS_JOIN = ", "


@dataclass(frozen=True)
class Caveat:
    """kind: non_canonical | semantics_mismatch | wrong | failed | first_call | cache_resident |
    page_faults | concurrent | host_timed | not_cold (value: the most bytes rotated) | default_alloc
    (value: the largest factor). `value` is the kind's number (worst distance, error,
    seconds, ...); `detail` for host_timed: the timer."""

    kind: str
    run: str
    variant: str
    where: tuple[Where, ...]
    value: float | None = None
    detail: str = ""  # semantics, status or tolerance, as data

    def variants(self) -> tuple[str, ...]:
        """The variants it is said of (more than one where _merged joined them)."""
        return tuple(self.variant.split(VARIANTS_JOIN))


SLOW_FIRST_CALL_S = 0.5


def caveats(results: Results, ms: Sequence[Measurement]) -> list[Caveat]:
    out: list[Caveat] = []
    timed = [(lab, r) for lab, r in results.pairs() if r.input_kind == "random"]
    for run in results.runs:
        mine = [m for m in ms if m.run == run]
        rows = [r for lab, r in timed if lab == run]
        declared_by_variant: dict[str, set[str]] = defaultdict(set)
        for r in rows:
            off_canonical = r.semantics_declared != operators.canonical(r.op)
            if r.status == "ok" and r.semantics_declared and off_canonical:
                declared_by_variant[r.variant].add(r.semantics_declared)
        for variant, declared in sorted(declared_by_variant.items()):
            off = sorted(declared)
            if off:
                vm = [m for m in mine if m.variant == variant]
                out.append(
                    Caveat(
                        "non_canonical",
                        run,
                        variant,
                        where(vm),
                        _worst(m.canonical_rel_err for m in vm),
                        off[0],
                    )
                )
        groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for r in rows:
            if r.status == "ok" and semantics_mismatch(
                r.semantics, r.semantics_declared, r.semantics_mismatch
            ):
                groups[("semantics_mismatch", r.variant)].append(r)
            if is_wrong(r):
                groups[("wrong", r.variant)].append(r)
            if r.status in ("error", "crashed", "timeout", "oom"):
                groups[("failed", r.variant)].append(r)
        for (kind, variant), g in sorted(groups.items()):
            value = _worst(r.max_rel_err for r in g) if kind == "wrong" else None
            detail = {
                "semantics_mismatch": " / ".join(
                    sorted({f"{r.semantics_declared} -> {r.semantics}" for r in g})
                ),
                "wrong": " / ".join(sorted({f"{r.tolerance:g}" for r in g if r.tolerance is not None})),
                "failed": ", ".join(sorted({r.status for r in g})),
            }[kind]
            out.append(Caveat(kind, run, variant, where(g), value, detail))
        for kind, test in (
            ("first_call", lambda m: m.first_call_s is not None and m.first_call_s > SLOW_FIRST_CALL_S),
            ("cache_resident", lambda m: m.cache_resident),
            ("page_faults", lambda m: m.faulting),
            ("concurrent", lambda m: m.concurrent),
            ("not_cold", lambda m: m.cache_state in ("partly cached", "warm")),
            ("default_alloc", lambda m: m.default_alloc_s is not None),
        ):
            flagged: dict[str, list[Measurement]] = defaultdict(list)
            for m in mine:
                if test(m):
                    flagged[m.variant].append(m)
            for variant, fm in sorted(flagged.items()):
                value = {
                    "first_call": _worst(m.first_call_s for m in fm),
                    "cache_resident": _worst(m.sol_fraction for m in fm),
                    "page_faults": _worst(m.faults_per_call for m in fm),
                    "concurrent": None,
                    "not_cold": _worst(m.rotated_bytes for m in fm),
                    "default_alloc": _worst(m.default_alloc_factor for m in fm),
                }[kind]
                out.append(Caveat(kind, run, variant, where(fm), value))
        out += _host_timed(run, mine)
    out = _merged(out, ("not_cold", "concurrent"))
    order = (
        "wrong",
        "semantics_mismatch",
        "failed",
        "non_canonical",
        "cache_resident",
        "page_faults",
        "concurrent",
        "not_cold",
        "default_alloc",
        "host_timed",
        "first_call",
    )
    return sorted(out, key=lambda c: (c.run, _rank(order, c.kind), c.variant))


def _merged(caveats: list[Caveat], kinds: tuple[str, ...]) -> list[Caveat]:
    """One caveat of each of `kinds` for the variants of a run that share it on the same rows (a
    run of three implementations said "inputs not cold" three times over the same cases)."""
    out: list[Caveat] = []
    joined: dict[tuple[str, str, tuple[Where, ...]], list[Caveat]] = defaultdict(list)
    for c in caveats:
        if c.kind in kinds:
            joined[(c.run, c.kind, c.where)].append(c)
        else:
            out.append(c)
    for (run, kind, at), same in joined.items():
        values = [c.value for c in same if c.value is not None]
        variants = VARIANTS_JOIN.join(c.variant for c in same)
        out.append(Caveat(kind, run, variants, at, max(values) if values else None, same[0].detail))
    return out


def _host_timed(run: str, mine: Sequence[Measurement]) -> list[Caveat]:
    """On a device where some rows time the GPU alone (CUDA events), the rows timed on the host
    clock (JAX has no device events) include dispatch wherever it is slower than the GPU: their
    comparisons with the others are upper bounds, said once per variant."""
    on_device: dict[str, list[Measurement]] = defaultdict(list)
    for m in mine:
        on_device[m.device].append(m)
    out = []
    for group in on_device.values():
        if not any(m.timer == "cuda_event" for m in group):
            continue
        flagged: dict[str, list[Measurement]] = defaultdict(list)
        for m in group:
            if m.timer and m.timer != "cuda_event":
                flagged[m.variant].append(m)
        for variant, fm in sorted(flagged.items()):
            out.append(Caveat("host_timed", run, variant, where(fm), None, fm[0].timer))
    return out


# ---- per configuration: table rows and what the four plots draw --------------------------------


@dataclass(frozen=True)
class SpeedupCell:
    variant: str
    shape: Shape
    speedup: float | None  # baseline time / this time: > 1 is faster than the baseline
    wrong: bool
    cache_resident: bool
    faults_per_call: float | None  # set when the row's time includes page faults


@dataclass(frozen=True)
class Speedups:
    baseline: str
    baseline_wrong: bool
    variants: tuple[str, ...]
    shapes: tuple[Shape, ...]
    cells: tuple[SpeedupCell, ...]

    def cell(self, variant: str, shape: Shape) -> SpeedupCell | None:
        return next((c for c in self.cells if c.variant == variant and c.shape == shape), None)


@dataclass(frozen=True)
class FirstCall:
    variant: str
    median_s: float  # over the shapes
    wrong_shapes: int  # shapes where its output was wrong
    shapes: int


@dataclass(frozen=True)
class ConfigResults:
    config: Config
    measurements: tuple[Measurement, ...]  # by shape, then time
    baseline: str | None  # the heatmap's reference, when it ran here
    speedups: Speedups | None
    roofline: tuple[Measurement, ...]  # the largest shape, highest fraction of the speed of light first
    first_calls: tuple[FirstCall, ...]

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(sorted({m.variant for m in self.measurements}))


def choose_baseline(ms: Sequence[Measurement], override: str | None) -> str | None:
    """The variant rows declare "baseline" (or `--baseline NAME`: an implementation or variant)."""
    names = sorted({m.variant for m in ms})
    if override:
        for name in names:
            if override in (name, name.split("[", 1)[0]):
                return name
        known = sorted({m.impl for m in ms})
        raise BenchError(f"unknown --baseline {override!r}; measured implementations: {', '.join(known)}")
    declared = sorted({m.variant for m in ms if "baseline" in m.roles})
    return declared[0] if declared else None


def config_results(config: Config, ms: Sequence[Measurement], baseline: str | None) -> ConfigResults:
    rows = sorted(ms, key=lambda m: (m.elements, m.shape, m.time_median_s or math.inf, m.variant))
    speedups = None
    base_variant = baseline if baseline is not None and any(m.variant == baseline for m in rows) else None
    if base_variant is not None:
        base = {m.shape: m for m in rows if m.variant == base_variant and m.time_median_s}
        shapes = tuple(sorted(base, key=lambda s: (math.prod(s), s)))
        variants = tuple(sorted({m.variant for m in rows}))
        cells = []
        for m in rows:
            if m.shape in base and m.time_median_s:
                bt = base[m.shape].time_median_s
                assert bt is not None
                cells.append(
                    SpeedupCell(
                        m.variant, m.shape, bt / m.time_median_s, m.wrong, m.cache_resident,
                        m.faults_per_call if m.faulting else None,
                    )
                )  # fmt: skip
        speedups = Speedups(base_variant, any(base[s].wrong for s in shapes), variants, shapes, tuple(cells))
    timed = [m for m in rows if m.time_median_s is not None]
    roofline: tuple[Measurement, ...] = ()
    if timed:
        largest = max(m.elements for m in timed)
        roofline = tuple(
            sorted(
                (m for m in timed if m.elements == largest),
                key=lambda m: (-(m.sol_fraction or 0.0), m.variant),
            )
        )
    firsts = []
    for variant in sorted({m.variant for m in rows}):
        vm = [m for m in rows if m.variant == variant and m.first_call_s is not None]
        if vm:
            firsts.append(
                FirstCall(
                    variant, float(np.median([m.first_call_s for m in vm])),
                    sum(m.wrong for m in vm), len(vm),
                )
            )  # fmt: skip
    firsts.sort(key=lambda f: (f.median_s, f.variant))
    return ConfigResults(config, tuple(rows), base_variant, speedups, roofline, tuple(firsts))


# ---- compile cost and break-even, paired by the rows' compiled_from ----------------------------


@dataclass(frozen=True)
class BreakEven:
    """A compiled variant against its eager counterpart (row.compiled_from) on the same case.

    outcome: "calls" (pays back after `calls` calls), "no_cost" (first call not measurably slower
    than the eager one's), "never" (not measurably faster per call), "no_counterpart" (the eager
    implementation has no measured row in this run, device, mode, dtype, layout and shape)."""

    config: Config
    shape: Shape
    compiled: str
    eager: str  # the eager implementation's name (a variant when it was measured)
    outcome: str
    eager_status: str  # why there is no counterpart: "absent" or the eager row's status
    eager_message: str
    compiled_first_s: float | None
    eager_first_s: float | None
    compile_cost_s: float | None  # None unless measurably positive
    speedup: Comparison | None  # a = compiled, b = eager: > 1 means compiled is faster per call
    saving_s: float | None  # per call, when measurably faster
    calls: int | None


def _case_of(x: Row | Measurement) -> tuple[Any, ...]:
    """(device, mode, dtype, layout, shape) of a row or a measurement."""
    return (x.device, x.mode, x.dtype, x.layout, x.shape)


def break_even(results: Results, ms: Sequence[Measurement]) -> list[BreakEven]:
    """Each compiled variant against its eager one, per run, operator (with its parameters) and case."""
    out = []
    by_case: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for lab, r in results.pairs():
        if r.input_kind == "random":
            by_case[(lab, operators.label(r.op, r.op_params), r.impl, *_case_of(r))].append(r)
    meas = {(m.run, m.op, m.variant, *_case_of(m)): m for m in ms}
    for c in ms:
        compiled_from = next((r.compiled_from for r in by_case[(c.run, c.op, c.impl, *_case_of(c))]), "")
        if not compiled_from:
            continue
        eager_rows = by_case.get((c.run, c.op, compiled_from, *_case_of(c)), [])
        ok_rows = [r for r in eager_rows if r.status == "ok"]
        same_backend = [r for r in ok_rows if r.backend == c.backend]
        for e_row in same_backend or ok_rows or [None]:  # type: ignore[list-item]
            base = dict(config=c.config, shape=c.shape, compiled=c.variant, compiled_first_s=c.first_call_s)
            if e_row is None:
                status = eager_rows[0].status if eager_rows else "absent"
                message = eager_rows[0].message if eager_rows else ""
                out.append(
                    BreakEven(
                        **base, eager=compiled_from, outcome="no_counterpart", eager_status=status,  # type: ignore[arg-type]
                        eager_message=message, eager_first_s=None, compile_cost_s=None, speedup=None,
                        saving_s=None, calls=None,
                    )
                )  # fmt: skip
                continue
            e = meas[(c.run, c.op, e_row.variant, *_case_of(c))]
            out.append(_pay_back(base, c, e))
    return sorted(out, key=lambda b: (b.config.sort_key(), b.compiled, math.prod(b.shape), b.eager))


def _pay_back(base: dict[str, Any], c: Measurement, e: Measurement) -> BreakEven:
    cost = None
    if c.first_call_s is not None and e.first_call_s is not None:
        extra = c.first_call_s - e.first_call_s
        if extra > FIRST_CALL_NOISE * e.first_call_s and extra > 0:
            cost = extra
    speed = compare(c.variant, [c], e.variant, [e])
    faster = speed is not None and speed.outcome == "a"
    saving = (e.time_median_s - c.time_median_s) if faster and e.time_median_s and c.time_median_s else None
    if cost is None:
        outcome, calls = "no_cost", None
    elif faster and saving and saving > 0:
        outcome, calls = "calls", math.ceil(cost / saving)
    else:
        outcome, calls = "never", None
    return BreakEven(
        **base, eager=e.variant, outcome=outcome, eager_status="ok", eager_message="",
        eager_first_s=e.first_call_s, compile_cost_s=cost, speedup=speed, saving_s=saving, calls=calls,
    )  # fmt: skip


# ---- robustness: edge cases, one column per input kind and layout ------------------------------


@dataclass(frozen=True)
class EdgeCell:
    verdict: str  # safe | inexact | unsafe, or the row's status (error, unavailable, ...)
    nonfinite: int
    max_abs_err: float | None
    message: str


@dataclass(frozen=True)
class RobustnessRow:
    variant: str
    article: bool
    cells: tuple[EdgeCell | None, ...]  # aligned with Robustness.columns


@dataclass(frozen=True)
class Robustness:
    run: str
    device: str
    op: str  # the operator's label (GroupNorm(32)): other parameter values are another table
    columns: tuple[tuple[str, str], ...]  # (input kind, layout)
    rows: tuple[RobustnessRow, ...]

    @property
    def kinds(self) -> tuple[tuple[str, int], ...]:
        """Each input kind with its number of layout columns, in column order."""
        counts: dict[str, int] = {}
        for kind, _ in self.columns:
            counts[kind] = counts.get(kind, 0) + 1
        return tuple(counts.items())


def _edge_verdict(r: Row) -> str:
    if r.status != "ok":
        return r.status
    if r.nonfinite_outputs or r.max_abs_err is None or r.max_abs_err > UNSAFE_ABS_ERR:
        return "unsafe"
    return "safe" if r.correct else "inexact"


_CELL_PREFERENCE = ("ok", "error", "crashed", "timeout", "oom", "unavailable", "stopped")


def robustness(results: Results) -> list[Robustness]:
    """A measured cell is never hidden by an unavailable one: each (variant, input kind, layout) is
    its own cell, and where rows repeat, a measured one is shown first."""
    tables: dict[tuple[str, str, str], list[Row]] = defaultdict(list)  # (run, device, operator's label)
    for lab, r in results.pairs():
        if r.input_kind != "random":
            tables[(lab, r.device, operators.label(r.op, r.op_params))].append(r)
    out = []
    for (run, device, op), rows in sorted(
        tables.items(), key=lambda t: (*t[0][:2], operators.label_rank(t[0][2]))
    ):
        kinds = sorted({r.input_kind for r in rows}, key=lambda k: (_rank(operators.edge_kinds(), k), k))
        layouts = [
            lay
            for lay in (*LAYOUTS, *sorted({r.layout for r in rows} - set(LAYOUTS)))
            if any(r.layout == lay for r in rows)
        ]
        columns = tuple((k, lay) for k in kinds for lay in layouts)
        variants = sorted(
            {r.variant for r in rows},
            key=lambda v: (not any(r.variant == v and "article" in r.roles for r in rows), v),
        )
        table = []
        for v in variants:
            cells: list[EdgeCell | None] = []
            for kind, lay in columns:
                found = [r for r in rows if r.variant == v and r.input_kind == kind and r.layout == lay]
                if not found:
                    cells.append(None)
                    continue
                r = min(found, key=lambda r: _rank(_CELL_PREFERENCE, r.status))
                cells.append(EdgeCell(_edge_verdict(r), r.nonfinite_outputs or 0, r.max_abs_err, r.message))
            article = any(r.variant == v and "article" in r.roles for r in rows)
            table.append(RobustnessRow(v, article, tuple(cells)))
        out.append(Robustness(run, device, op, columns, tuple(table)))
    return out


# ---- semantics: declared, detected, and the distance from InstanceNorm in numbers --------------


@dataclass(frozen=True)
class SemanticsRow:
    run: str
    op: str  # the operator's label: a variant run at two num_groups has a row for each
    variant: str
    declared: str
    detected: tuple[str, ...]
    mismatch: bool  # detected contradicts declared (ties the detector could not break excluded)
    max_rel_err: float | None  # worst, against its own declared semantics
    max_rel_err_shape: Shape | None
    canonical_rel_err: float | None  # worst distance from canonical InstanceNorm, same inputs
    canonical_rel_err_shape: Shape | None
    all_correct: bool
    layout_copy: tuple[str, ...]  # layouts in which it copies its input internally
    nonfinite: int


def _argworst(ms: Sequence[Measurement], attr: str) -> tuple[float | None, Shape | None]:
    found = [(getattr(m, attr), m.shape) for m in ms if getattr(m, attr) is not None]
    if not found:
        return None, None
    value, shape = max(found, key=lambda vs: (vs[0], -math.prod(vs[1])))
    return value, shape


def semantics(results: Results, ms: Sequence[Measurement]) -> list[SemanticsRow]:
    rows_by: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for lab, r in results.pairs():
        if r.input_kind == "random" and r.status == "ok":
            rows_by[(lab, operators.label(r.op, r.op_params), r.variant)].append(r)
    out = []
    for (run, op, variant), rows in sorted(
        rows_by.items(), key=lambda kv: (kv[0][0], operators.label_rank(kv[0][1]), kv[0][2])
    ):
        vm = [m for m in ms if m.run == run and m.op == op and m.variant == variant]
        err, err_shape = _argworst(vm, "max_rel_err")
        can, can_shape = _argworst(vm, "canonical_rel_err")
        out.append(
            SemanticsRow(
                run=run, op=op, variant=variant,
                declared=" / ".join(sorted({r.semantics_declared for r in rows} - {""})),
                detected=tuple(sorted({r.semantics for r in rows} - {""})),
                mismatch=any(
                    semantics_mismatch(r.semantics, r.semantics_declared, r.semantics_mismatch) for r in rows
                ),
                max_rel_err=err, max_rel_err_shape=err_shape,
                canonical_rel_err=can, canonical_rel_err_shape=can_shape,
                all_correct=all(r.correct is True for r in rows),
                layout_copy=tuple(sorted({r.layout for r in rows if r.layout_copy})),
                nonfinite=sum(r.nonfinite_outputs or 0 for r in rows),
            )
        )  # fmt: skip
    return out


# ---- errors, grouped by message ----------------------------------------------------------------


@dataclass(frozen=True)
class ErrorGroup:
    run: str
    variant: str
    status: str
    message: str
    where: tuple[Where, ...]
    count: int


def errors(results: Results) -> list[ErrorGroup]:
    groups: dict[tuple[str, str, str, str], list[Row]] = defaultdict(list)
    for lab, r in results.pairs():
        if r.status != "ok":
            groups[(lab, r.variant, r.status, r.message)].append(r)
    order = ("crashed", "oom", "timeout", "error", "unavailable", "stopped")
    return [
        ErrorGroup(run, variant, status, message, where(g), len(g))
        for (run, variant, status, message), g in sorted(
            groups.items(), key=lambda kv: (kv[0][0], _rank(order, kv[0][2]), kv[0][1], kv[0][3])
        )
    ]


# ---- the environment of each run ----------------------------------------------------------------


@dataclass(frozen=True)
class CopyBandwidth:
    device: str
    median_gbps: float
    low_gbps: float
    high_gbps: float
    samples: int


@dataclass(frozen=True)
class RunInfo:
    label: str
    run_ids: tuple[str, ...]
    rows: int
    host: str
    machine: str
    cpu: str
    cpu_cores: str
    threads: str
    gpus: tuple[str, ...]
    copy: tuple[CopyBandwidth, ...]
    # device, bytes, and when the sweep that found it ran when the run reused an earlier one ("")
    effective_cache_bytes: tuple[tuple[str, int, str], ...]
    # device, bytes the cold policy rotated through, and whether a copy under it stayed at DRAM speed
    cold_cache: tuple[tuple[str, int, bool, bool], ...]  # device, rotation, verified, short of 2x cache
    packages: tuple[tuple[str, str], ...]
    git_commit: str
    command: str
    started: str
    finished: str
    interrupted: bool
    shard: str
    timing: str


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def run_info(results: Results, label: str) -> RunInfo:
    rows = [r for lab, r in results.pairs() if lab == label]
    ids = tuple(sorted({r.run_id for r in rows}))
    env: Mapping[str, Any] = results.envs.get(ids[0], {}) if ids else {}
    devices = sorted({r.device for r in rows})
    copy = []
    for d in devices:
        samples = [s for i in ids for s in copy_gbps_samples(results.envs.get(i, {}), d)]
        if samples:
            copy.append(CopyBandwidth(d, float(np.median(samples)), min(samples), max(samples), len(samples)))
    cache = env.get("effective_cache_bytes")
    probes = env.get("cache")
    probes = probes if isinstance(probes, Mapping) else {}

    def reused_from(device: str) -> str:
        """How the effective cache was found, when not by this run's own sweep."""
        p = probes.get(device)
        if isinstance(p, Mapping) and p.get("given"):
            return "given with --effective-cache, not swept"
        if not (isinstance(p, Mapping) and p.get("sweep_reused")):
            return ""
        when = _text(p.get("swept_at")) or "an earlier run"
        return f"from this machine's sweep of {when}; the cold check below is this run's"

    caches = tuple(
        (str(d), int(v), reused_from(d))
        for d, v in (cache.items() if isinstance(cache, Mapping) else [])
        if isinstance(v, int) and not isinstance(v, bool)
    )
    cold = tuple(
        (str(d), int(p["rotation_bytes"]), bool(p.get("cold_verified")), bool(p.get("rotation_short")))
        for d, p in probes.items()
        if isinstance(p, Mapping) and isinstance(p.get("rotation_bytes"), int)
    )
    gpus = []
    for g in env.get("gpu_start") or []:
        if isinstance(g, Mapping):
            name, memory = _text(g.get("name")), _text(g.get("memory.total"))
            driver, clock = _text(g.get("driver_version")), _text(g.get("clocks.sm"))
            gpus.append(f"{name} {memory}, driver {driver}, SM clock {clock}")
    packages = env.get("packages")
    packages = packages if isinstance(packages, Mapping) else {}
    return RunInfo(
        label=label, run_ids=ids, rows=len(rows), host=_text(env.get("host")),
        machine=", ".join(sorted({r.machine for r in rows if r.machine})), cpu=_text(env.get("cpu_model")),
        cpu_cores=_text(env.get("cpu_cores")), threads=_text(env.get("threads")), gpus=tuple(gpus),
        copy=tuple(copy), effective_cache_bytes=caches, cold_cache=cold,
        packages=tuple((str(k), _text(v)) for k, v in packages.items()),
        git_commit=_text(env.get("git_commit")), command=_text(env.get("command")),
        started=_text(env.get("started")), finished=_text(env.get("finished")),
        interrupted=bool(env.get("interrupted")), shard=_text(env.get("shard")),
        timing=_text(env.get("timing_settings")),
    )  # fmt: skip


# ---- runs side by side -------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossSummary:
    """One framework's (implementation, case) pairs both runs measured on one device ("all": every
    pair): the geometric mean of new/base time with its bootstrap CI (> 1: the new run is slower)."""

    device: str
    framework: str
    ratio: float
    ci_low: float
    ci_high: float
    pairs: int


@dataclass(frozen=True)
class CrossRun:
    base: str
    new: str
    differences: tuple[tuple[str, str, str], ...]  # (what, base's, new's): machine, versions, ...
    run_noise_sd: float
    threshold: float
    overall: CrossSummary | None
    summaries: tuple[CrossSummary, ...]
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class RunVerdicts:
    """One configuration's verdict in each run (None where that run did not measure it)."""

    device: str
    mode: str
    dtype: str
    layout: str
    by_run: tuple[tuple[str, Verdict | None], ...]


def _summary(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]], device: str, framework: str
) -> CrossSummary:
    ratio, lo, hi = ratio_ci(list(pairs))
    return CrossSummary(device, framework, ratio, lo, hi, len(pairs))


def _differences(a: RunInfo, b: RunInfo) -> tuple[tuple[str, str, str], ...]:
    out = []
    for what in ("host", "machine", "cpu", "cpu_cores", "threads", "git_commit"):
        va, vb = getattr(a, what), getattr(b, what)
        if va != vb:
            out.append((what, va, vb))
    if a.gpus != b.gpus:
        out.append(("gpus", "; ".join(a.gpus), "; ".join(b.gpus)))
    pa, pb = dict(a.packages), dict(b.packages)
    for k in sorted(set(pa) | set(pb)):
        if pa.get(k) != pb.get(k):
            out.append((k, pa.get(k, ""), pb.get(k, "")))
    return tuple(out)


def cross_runs(
    results: Results, infos: Mapping[str, RunInfo], threshold: float = COMPARE_THRESHOLD
) -> list[CrossRun]:
    """Each later run against the first: compare's per-row ratios, bootstrap CIs and run-to-run noise."""
    runs = results.runs
    if len(runs) < 2:
        return []
    by_run: dict[str, list[Row]] = defaultdict(list)
    for lab, r in results.pairs():
        by_run[lab].append(r)

    def sol(r: Row) -> float | None:
        return measurement(r.run_id, r, results.envs).sol_fraction

    out = []
    base = runs[0]
    for new in runs[1:]:
        changes, sigma = compare_rows(by_run[base], by_run[new], threshold, sol=sol)
        old = {r.key(): r for r in by_run[base]}
        cur = {r.key(): r for r in by_run[new]}
        groups: dict[tuple[str, str], list[tuple[Sequence[float], Sequence[float]]]] = defaultdict(list)
        for c in changes:
            groups[(c.device, c.framework)].append((_timing(cur[c.key()]), _timing(old[c.key()])))
        summaries = tuple(_summary(groups[k], *k) for k in sorted(groups))
        everything = [p for k in sorted(groups) for p in groups[k]]
        overall = _summary(everything, "all", "all") if everything else None
        changes.sort(key=_change_order)
        differences = _differences(infos[base], infos[new])
        out.append(CrossRun(base, new, differences, sigma, threshold, overall, summaries, tuple(changes)))
    return out


def _change_order(c: Change) -> tuple[Any, ...]:
    """Cross-run pairs in the report's configuration order, then by operator, variant and shape."""
    return (*_config_order(c.device, c.mode, c.dtype, c.layout), c.op, c.op_params, c.variant, c.shape)


def _timing(r: Row) -> tuple[float, ...]:
    return r.samples_s or ((r.time_median_s,) if r.time_median_s else ())


def verdicts_by_run(vs: Sequence[Verdict], runs: Sequence[str]) -> list[RunVerdicts]:
    keys = sorted(
        {(v.config.device, v.config.mode, v.config.dtype, v.config.layout) for v in vs},
        key=lambda k: (k[0], _rank(MODE_ORDER, k[1]), _rank(DTYPES, k[2]), k[3]),
    )
    index = {(v.config.run, v.config.device, v.config.mode, v.config.dtype, v.config.layout): v for v in vs}
    return [RunVerdicts(*k, by_run=tuple((run, index.get((run, *k))) for run in runs)) for k in keys]


# ---- everything the report shows -----------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    runs: tuple[RunInfo, ...]
    headlines: tuple[Headline, ...]
    verdicts: tuple[Verdict, ...]
    caveats: tuple[Caveat, ...]
    configs: tuple[ConfigResults, ...]
    semantics: tuple[SemanticsRow, ...]
    robustness: tuple[Robustness, ...]
    break_even: tuple[BreakEven, ...]
    errors: tuple[ErrorGroup, ...]
    cross: tuple[CrossRun, ...]
    verdicts_by_run: tuple[RunVerdicts, ...]
    baseline: str | None
    rows: int
    calibration: tuple[Calibration, ...] = ()
    per_case_limits: bool = False  # rows carry their case's own speed of light (limit_how)
    # the operators measured, by label ("InstanceNorm", "GroupNorm(32)"); the report names them
    # when there is more than one, or when the one is not the default operator
    op_labels: tuple[str, ...] = ()

    @property
    def show_op(self) -> bool:
        return len(self.op_labels) > 1 or any(op != operators.default_label() for op in self.op_labels)


@dataclass(frozen=True)
class Calibration:
    """A calibration row (role "calibration", a copy of its input) against its case's speed of
    light: the limit holds where it reads CALIBRATION_LOW to 1.0, within the row's own noise."""

    run: str
    variant: str
    device: str
    mode: str
    dtype: str
    layout: str
    shape: tuple[int, int, int, int]
    sol_fraction: float | None
    rel_iqr: float | None
    holds: bool | None  # None: no limit to judge (unknown, or not measured)


CALIBRATION_LOW = 0.9


def calibrations(ms: Sequence[Measurement]) -> list[Calibration]:
    out = []
    for m in sorted(ms, key=lambda m: (m.run, m.variant, m.device, m.mode, m.layout, math.prod(m.shape))):
        sol, noise = m.sol_fraction, m.rel_iqr or 0.0
        holds = None if sol is None else CALIBRATION_LOW * (1 - noise) <= sol <= 1.0 + noise
        out.append(Calibration(m.run, m.variant, m.device, m.mode, m.dtype, m.layout, m.shape, sol,
                               m.rel_iqr, holds))  # fmt: skip
    return out


def _calibration(row: Row) -> bool:
    return "calibration" in row.roles


def _kept(results: Results, keep: Callable[[Row], bool]) -> Results:
    pairs = [(lab, r) for lab, r in results.pairs() if keep(r)]
    return replace(results, rows=tuple(r for _, r in pairs), labels=tuple(lab for lab, _ in pairs))


def analyse(results: Results, baseline: str | None = None) -> Analysis:
    everything = results
    calibration = [(lab, r) for lab, r in results.pairs() if _calibration(r)]
    # timed and shown against the limit, never in an answer, a verdict or a caveat
    results = _kept(results, lambda r: not _calibration(r))
    calib = [measurement(lab, r, everything.envs) for lab, r in calibration if r.status == "ok"]
    ms = measurements(results)
    base = choose_baseline(ms, baseline)
    infos = {label: run_info(everything, label) for label in everything.runs}
    vs = verdicts(ms)
    return Analysis(
        runs=tuple(infos.values()),
        headlines=tuple(headlines(results, ms)),
        verdicts=tuple(vs),
        caveats=tuple(caveats(results, ms)),
        configs=tuple(config_results(c, g, base) for c, g in _by_config(ms).items()),
        semantics=tuple(semantics(results, ms)),
        robustness=tuple(robustness(results)),
        break_even=tuple(break_even(results, ms)),
        # a calibration's failures are errors; the modes it does not declare are not news
        errors=tuple(
            errors(_kept(everything, lambda r: not (_calibration(r) and r.status == "unavailable")))
        ),
        cross=tuple(cross_runs(results, infos)),
        verdicts_by_run=tuple(verdicts_by_run(vs, results.runs)) if len(results.runs) > 1 else (),
        baseline=base,
        rows=len(everything.rows),
        calibration=tuple(calibrations(calib)),
        per_case_limits=any(r.limit_how for r in everything.rows),
        op_labels=tuple(sorted({m.op for m in ms}, key=operators.label_rank)),
    )


def frame(results: Results) -> Any:
    """Every row as a pandas DataFrame (raw samples left out), with its run label: the CSV export."""
    import pandas as pd

    records = []
    for lab, r in results.pairs():
        d = asdict(r)
        d.pop("samples_s")
        d["shape"] = "x".join(map(str, r.shape))
        d["roles"] = ",".join(r.roles)
        records.append({"run": lab, "variant": r.variant, **d})
    return pd.DataFrame.from_records(records)
