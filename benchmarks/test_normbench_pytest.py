"""pytest-benchmark front end: every registered implementation x a few small cases, timed by the harness.

    make bench-pytest                                  # autosaved in .benchmarks/, raw samples kept
    make bench-pytest ARGS="--benchmark-compare"       # against the previous saved run
    make bench-pytest ARGS="-k torch --benchmark-json out.json"; python -m bench report out.json

Why the harness's workers and not in-process calls: implementations cannot share one process.
Keras fixes its backend at import, TensorFlow and Triton crash together, and a suite of only the
frameworks that coexist would leave Keras and TensorFlow out. So the timing is exactly `python -m
bench run`'s: one worker process per (framework, Keras backend, device), started once per session
for the tests selected, with its sync-aware clock (CUDA events on GPU, block_until_ready for JAX),
inputs rotating past the cache and calls batched above the timer's resolution. pytest-benchmark's
own loop around a Python call would time none of that correctly for an asynchronous device.

Correctness comes first. Each worker compares the first call with the float64 reference of the
declared semantics before it samples anything and, asked with `require_correct`, never times a
wrong output; each test then fails unless its row is ok, correct and of the declared semantics, so
a fast wrong answer fails and gets no time. Only then are the harness's per-call samples replayed
through `benchmark.pedantic`, one round per sample, with a replay clock as the marker's `timer`
(public pytest-benchmark API): its statistics, `--benchmark-compare`, histograms and JSON see
exactly the harness's samples. The row's fields go into `extra_info`, which is how `python -m bench
report` and `compare` read a `--benchmark-json` file or a saved run as normbench rows.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import pytest

from bench import frameworks, operators
from bench.cases import Case, MeasurementKey, Shape, device_kind
from bench.registry import Impl, sources
from bench.results import Row
from bench.timing import PRESET_TIMING
from bench.workers import Limits, discover, run_jobs

# (shape, mode) per device kind: a small and a mid-size plane forward, and the mid-size one in train.
CASES: dict[str, list[tuple[Shape, str]]] = {
    "cpu": [((8, 3, 32, 32), "forward"), ((8, 64, 28, 28), "forward"), ((8, 64, 28, 28), "train")],
    "cuda": [((32, 64, 56, 56), "forward"), ((32, 256, 28, 28), "forward"), ((32, 256, 28, 28), "train")],
}
# Recomputed from the samples by whoever reads them: not worth a second copy in extra_info.
NOT_IN_EXTRA_INFO = {"samples_s", "time_median_s", "time_iqr_s", "time_min_s", "time_rel_iqr", "time_rel_ci"}


@dataclass(frozen=True)
class Variant:
    impl: Impl
    group_backend: str | None  # the worker group's backend (Keras: one group per backend)

    @property
    def backend(self) -> str:
        return frameworks.get(self.impl.framework).row_backend(self.impl.backends, self.group_backend)

    @property
    def id(self) -> str:
        return self.impl.name + (f"-{self.group_backend}" if self.group_backend else "")


def _sources(config: pytest.Config) -> list[Any]:
    return sources(config.getoption("normbench_impl_path"), config.getoption("normbench_impl_module"))


def _registry(config: pytest.Config) -> dict[str, Impl]:
    """Implementation metadata, probed once per session in the framework workers (none imported here)."""
    if not hasattr(config, "_normbench_impls"):
        disc = discover(_sources(config), os.cpu_count() or 1, _limits(config))
        config._normbench_impls = disc.impls  # type: ignore[attr-defined]
    return config._normbench_impls  # type: ignore[attr-defined,no-any-return]


def _limits(config: pytest.Config) -> Limits:
    return Limits(
        case_timeout_s=config.getoption("normbench_case_timeout"),
        max_memory_bytes=int(config.getoption("normbench_max_memory_gib") * 2**30),
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "variant" not in metafunc.fixturenames:
        return
    device = metafunc.config.getoption("normbench_device")
    params = []
    for impl in sorted(_registry(metafunc.config).values(), key=lambda i: i.name):
        # NCHW where it is declared, else the layout the implementation takes (keras_lambda: NHWC).
        layout = "NCHW" if "NCHW" in impl.layouts or not impl.layouts else impl.layouts[0]
        # Its own operator at that operator's default parameters (GroupNorm: 32 groups).
        op = operators.get(impl.op)
        (values,) = op.variants({})
        op_params = operators.params_text(values)
        cases = [
            Case(shape=s, mode=m, layout=layout, device=device, op=impl.op, op_params=op_params)
            for s, m in CASES[device_kind(device)]
        ]
        named = (
            ""
            if impl.op == operators.DEFAULT
            else "-".join(["", impl.op, *(f"{k}{v}" for k, v in values.items())])
        )
        fw = frameworks.frameworks().get(impl.framework)
        for backend in fw.expand(impl.backends) if fw and not impl.unavailable else (None,):
            variant = Variant(impl, backend)
            for case in cases:
                reason = (
                    impl.unavailable or op.unplannable(case.shape, values) or impl.unsupported_reason(case)
                )
                if not reason and fw and case.mode != "forward" and fw.no_autograd:
                    reason = fw.no_autograd
                if not reason and fw:
                    reason = fw.missing(backend)
                shape = "x".join(map(str, case.shape))
                params.append(
                    pytest.param(
                        variant,
                        case,
                        id=f"{variant.id}{named}-{device}-{case.mode}-{case.dtype}-{case.layout}-{shape}",
                        marks=[pytest.mark.skip(reason=reason)] if reason else [],
                    )
                )
    metafunc.parametrize(("variant", "case"), params)


@pytest.fixture(scope="session")
def harness(request: pytest.FixtureRequest) -> dict[MeasurementKey, tuple[Row, dict[str, str]]]:
    """Rows of every selected (variant, case), measured by the harness's workers in one go."""
    jobs: dict[MeasurementKey, tuple[Impl, str | None, Case]] = {}
    for item in request.session.items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if not params or "variant" not in params or item.get_closest_marker("skip"):
            continue
        v, case = params["variant"], params["case"]
        jobs[MeasurementKey(v.impl.name, v.backend, case.key())] = (v.impl, v.group_backend, case)
    max_time_s = request.config.getoption("normbench_max_time")
    settings = replace(
        PRESET_TIMING["smoke"], max_time_s=max_time_s, min_time_s=min(0.05, max_time_s), min_samples=10
    )
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")

    def say(msg: str) -> None:  # progress while the workers run, past pytest's output capture
        if reporter and capture:
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"normbench worker {msg}")

    result = run_jobs(
        list(jobs.values()),
        _sources(request.config),
        task="run",
        threads=os.cpu_count() or 1,
        settings=settings,
        require_correct=True,
        limits=_limits(request.config),
        say=say,
    )
    rows_file = request.config.getoption("normbench_rows")
    if rows_file:
        with open(rows_file, "w") as f:
            f.writelines(r.to_json() + "\n" for r in result.rows)
    return {r.key(): (r, result.versions) for r in result.rows}


_clock = [0.0]


def harness_clock() -> float:
    """pytest-benchmark's timer here: reads the replayed harness sample, not the wall clock."""
    return _clock[0]


def replay(benchmark: Any, samples: tuple[float, ...]) -> None:
    """One pedantic round per harness sample: timer() reads 0 before the round and the sample after."""
    it = iter(samples)

    def reset() -> None:
        _clock[0] = 0.0

    def one_sample() -> None:
        _clock[0] = next(it)

    benchmark.pedantic(one_sample, setup=reset, rounds=len(samples), iterations=1, warmup_rounds=0)


@pytest.mark.benchmark(timer=harness_clock)
def test_normbench(benchmark: Any, harness: Any, variant: Variant, case: Case) -> None:
    row, versions = harness[MeasurementKey(variant.impl.name, variant.backend, case.key())]
    what = f"{variant.id} {case.label()}"
    assert row.status == "ok", f"{what}: {row.status}: {row.message}"
    assert row.correct, (
        f"{what}: {row.message} (max_rel_err {row.max_rel_err}, tolerance {row.tolerance}); not timed"
    )
    assert not row.semantics_mismatch, (
        f"{what}: declared {row.semantics_declared} but the output computes {row.semantics}"
    )
    assert row.samples_s, f"{what}: no samples"
    benchmark.group = f"{case.key().text()} {case.device}"  # one operator's rows per group
    benchmark.extra_info.update(
        {k: v for k, v in asdict(row).items() if k not in NOT_IN_EXTRA_INFO} | {"versions": versions}
    )
    replay(benchmark, row.samples_s)
