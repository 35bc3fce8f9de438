"""Runs in a child process: one framework/backend/device group, case by case.

It reads one JSON spec on stdin and writes JSON events, one per line, to the file descriptor
named by NORMBENCH_EVENT_FD: "hello", "begin" (before every phase that could crash or hang, so the
parent knows whom to blame), "row", "probe", "copy", "fatal" and "done".
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench import memory, reference
from bench.cases import Case
from bench.frameworks import OutputError, buffer_count
from bench.registry import TENSOR_FRAMEWORK, Impl, Source, format_exception, load
from bench.results import Row
from bench.timing import HostClock, Sampler, TimingSettings, summarize, timer_overhead_s

_FD = int(os.environ.get("NORMBENCH_EVENT_FD", "1"))
START = time.monotonic()
START_CPU = time.process_time()  # all threads; interpreter start-up before this is not counted


def emit(event: dict[str, Any]) -> None:
    os.write(
        _FD, (json.dumps(event, default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n").encode()
    )


def tensor_framework(framework: str, keras_backend: str | None) -> str:
    if framework == "keras" and keras_backend:
        return keras_backend
    return TENSOR_FRAMEWORK.get(framework, framework)


def framework_versions(framework: str, keras_backend: str | None, adapter: Any) -> dict[str, str]:
    versions = {adapter.NAME: adapter.version()} if adapter else {}
    if framework != (adapter.NAME if adapter else None):
        try:
            module = __import__(framework)
            versions[framework] = getattr(module, "__version__", "?")
        except ImportError:
            pass
    return versions


@dataclass
class Prepared:
    impl: Impl
    base: dict[str, Any]
    sampler: Sampler | None  # None: checked, not timed (task "check", or wrong under require_correct)
    fields: dict[str, Any]


def _sig(val: float | None) -> float | None:
    return None if val is None else float(f"{val:.5g}")


class GroupWorker:
    def __init__(self, spec: dict[str, Any], adapter: Any, impls: dict[str, Impl]) -> None:
        self.spec = spec
        self.adapter = adapter
        self.impls = impls
        self.device = spec["device"]
        self.settings = TimingSettings(**spec["settings"])
        self.keras_backend = spec.get("keras_backend")
        self.device_name = adapter.device_name(self.device)
        self.clock = adapter.clock(self.device) or HostClock()
        self.min_sample_s = max(1e-4, 1000 * timer_overhead_s())
        self.cpu_memory_unsupported = memory.supported()
        memory.steady_allocator()
        # "check": correctness, semantics and edge cases only. require_correct: a wrong output is
        # never timed, so a fast wrong answer cannot produce a time at all.
        self.check_only = spec["task"] == "check"
        self.require_correct = bool(spec.get("require_correct", False))

    def base(self, impl: Impl, case: Case) -> dict[str, Any]:
        return {
            "impl": impl.name,
            "framework": impl.framework,
            "backend": self.keras_backend if impl.framework == "keras" else impl.backends[0],
            "device": case.device,
            "device_name": self.device_name,
            "dtype": case.dtype,
            "layout": case.layout,
            "mode": case.mode,
            "shape": list(case.shape),
            "eps": case.eps,
            "semantics_declared": impl.semantics,
            "layout_copy": case.layout in impl.layout_copy,
            "source": impl.source,
            "ideal_bytes": case.ideal_bytes,
        }

    def run_edge(self, case: Case, names: list[str]) -> None:
        """One call per implementation on an input that breaks implementations: finite? how wrong?"""
        ad = self.adapter
        x64 = reference.make_edge_input(case.input_kind, case)
        for name in names:
            impl = self.impls[name]
            fields = {**self.base(impl, case), "input_kind": case.input_kind}
            try:
                self.begin(impl, case, "edge")
                x = ad.to_tensor(x64, case)
                x_seen = ad.to_numpy(x, case, "input")
                y64 = ad.to_numpy(ad.finish(ad.forward_once(impl.builder(case), x), self.device), case)  # type: ignore[misc]
                acc = reference.accuracy(y64, reference.edge_reference(x_seen, case.eps, impl.semantics))
                tol = reference.edge_tolerance(case.input_kind, case.dtype)
                err = acc.max_abs_err
                if acc.nonfinite_outputs or err is None or err > reference.UNSAFE_ABS_ERR:
                    verdict = "unsafe"
                else:
                    verdict = "safe" if err <= tol else "inexact"
                self.emit_row(
                    {
                        **fields,
                        "status": "ok",
                        "max_abs_err": _sig(err),
                        "max_rel_err": _sig(acc.max_rel_err),
                        "nonfinite_outputs": acc.nonfinite_outputs,
                        "tolerance": tol,
                        "correct": verdict == "safe",
                        "message": f"{case.input_kind}: {verdict}"
                        + (
                            f", {acc.nonfinite_outputs} non-finite values"
                            if acc.nonfinite_outputs
                            else f", max abs err {_sig(err)}"
                        ),
                    }
                )
            except Exception as exc:
                status = "oom" if ad.is_oom(exc) else "error"
                self.emit_row({**fields, "status": status, "message": format_exception(exc)})

    def run_case(self, case: Case, names: list[str]) -> None:
        if case.input_kind != "random":
            self.run_edge(case, names)
            return
        ad = self.adapter
        x64 = reference.make_input(case)
        g64 = reference.make_upstream_grad(case) if case.mode != "forward" else None
        nbuf = buffer_count(case, ad.cache_bytes(self.device), self.settings.warm_cache)
        prepared: list[Prepared] = []
        try:
            xs = [ad.to_tensor(x64, case) for _ in range(nbuf)]
            # The reference sees what the implementation sees: the input after rounding to dtype.
            x_seen = ad.to_numpy(xs[0], case, "input")
            g_seen = ad.to_numpy(ad.to_tensor(g64, case), case, "gradient") if g64 is not None else None
        except Exception as exc:
            for name in names:
                self.emit_row(
                    {
                        **self.base(self.impls[name], case),
                        "status": "error",
                        "message": f"input conversion failed: {format_exception(exc)}",
                    }
                )
            return
        for name in names:
            impl = self.impls[name]
            base = self.base(impl, case)
            try:
                prepared.append(self.prepare(impl, case, base, xs, x_seen, g_seen))
            except Exception as exc:
                status = "oom" if ad.is_oom(exc) else "error"
                self.emit_row({**base, "status": status, "message": format_exception(exc)})
        # Interleaved rounds: slow drift of the machine spreads over every implementation.
        active = [p for p in prepared if p.sampler is not None]
        while active:
            for p in list(active):
                assert p.sampler is not None
                emit({"event": "begin", "impl": p.impl.name, "case": case.key().to_json(), "phase": "sample"})
                try:
                    p.sampler.round()
                except Exception as exc:
                    status = "oom" if ad.is_oom(exc) else "error"
                    self.emit_row({**p.base, **p.fields, "status": status, "message": format_exception(exc)})
                    prepared.remove(p)
                    active.remove(p)
                    continue
                if p.sampler.stop_reason:
                    active.remove(p)
        for p in prepared:
            timing = self.timing_fields(p.sampler) if p.sampler is not None else {}
            self.emit_row({**p.base, **p.fields, **timing, "status": "ok"})
        del prepared, active, xs
        gc.collect()

    def prepare(
        self,
        impl: Impl,
        case: Case,
        base: dict[str, Any],
        xs: list[Any],
        x64: np.ndarray,
        g64: np.ndarray | None,
    ) -> Prepared:
        ad, dev = self.adapter, self.device
        self.begin(impl, case, "build")
        assert impl.builder is not None
        fn = impl.builder(case)
        call = ad.make_call(fn, case, xs, g64)
        self.begin(impl, case, "first_call")
        t0 = time.perf_counter()
        out = ad.finish(call(0), dev)
        first_call_s = time.perf_counter() - t0
        self.begin(impl, case, "check")
        fields = {"first_call_s": _sig(first_call_s), **self.check(impl, fn, case, xs, x64, g64, out)}
        del out
        if self.check_only or (self.require_correct and not fields["correct"]):
            return Prepared(impl, base, None, fields)
        state: dict[str, Any] = {"i": 0, "out": None}
        nbuf = len(xs)

        def run(k: int, sync_each: bool) -> None:
            i = state["i"]
            # Each output is freed before the next call, as timeit and torch.utils.benchmark do: the
            # allocator can hand the same (warm) buffer back. Only the last one is kept, for the sync.
            state["out"] = out = None
            for _ in range(k):
                out = None
                out = call(i)
                i = (i + 1) % nbuf
                if sync_each:
                    ad.finish(out, dev)
            state["i"] = i
            state["out"] = out

        sampler = Sampler(run, self.settings, self.clock, self.min_sample_s)
        self.begin(impl, case, "warmup")
        sampler.warm_up()
        self.begin(impl, case, "memory")
        state["out"] = None
        fields.update(self.memory_fields(call, case, xs))
        fields.update({"cache_policy": "warm" if self.settings.warm_cache else "cold", "buffers": nbuf})
        return Prepared(impl, base, sampler, fields)

    def check(
        self,
        impl: Impl,
        fn: Callable[[Any], Any],
        case: Case,
        xs: list[Any],
        x64: np.ndarray,
        g64: np.ndarray | None,
        out: Any,
    ) -> dict[str, Any]:
        """Errors against the float64 reference of the declared semantics, and what it really computes."""
        ad, eps, declared = self.adapter, case.eps, impl.semantics
        if case.mode == "train":
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise OutputError(f"train call returned {type(out).__name__}; expected (output, gradient)")
            y, dx = out
        elif case.mode == "backward":
            y, dx = ad.finish(ad.forward_once(fn, xs[0]), self.device), out
        else:
            y, dx = out, None
        y64 = ad.to_numpy(y, case, "output")
        detected = reference.detect_semantics(x64, y64, eps)
        accs = []
        if case.mode in ("forward", "train"):
            accs.append(reference.accuracy(y64, reference.normalize(x64, eps, declared)))
        if dx is not None:
            dx64 = ad.to_numpy(dx, case, "gradient")
            assert g64 is not None
            accs.append(reference.accuracy(dx64, reference.normalize_grad(x64, g64, eps, declared)))
        abs_errs = [a.max_abs_err for a in accs if a.max_abs_err is not None]
        rel_errs = [a.max_rel_err for a in accs if a.max_rel_err is not None]
        nonfinite = sum(a.nonfinite_outputs for a in accs)
        tol = reference.TOLERANCE[case.dtype]
        max_rel = max(rel_errs) if len(rel_errs) == len(accs) else None
        correct = nonfinite == 0 and max_rel is not None and max_rel <= tol
        message = ""
        if nonfinite:
            message = f"wrong: {nonfinite} non-finite values in the {case.mode} output"
        elif not correct:
            message = f"wrong: max_rel_err {max_rel:.3g} over the {case.dtype} tolerance {tol:g}"
        return {
            "max_abs_err": _sig(max(abs_errs)) if abs_errs else None,
            "max_rel_err": _sig(max_rel),
            "nonfinite_outputs": nonfinite,
            "tolerance": tol,
            "correct": correct,
            "semantics": detected,
            # Low precision can leave two candidates tied: a mismatch only if declared is not among them.
            "semantics_mismatch": detected != declared
            and not (detected.startswith("ambiguous") and declared in detected),
            "message": message,
        }

    def memory_fields(self, call: Callable[[int], Any], case: Case, xs: list[Any]) -> dict[str, Any]:
        ad = self.adapter
        if not case.device.startswith("cuda") and self.cpu_memory_unsupported:
            return {"message": f"memory not measured: {self.cpu_memory_unsupported}"}
        delta, out = ad.measure_memory(lambda: ad.finish(call(0), self.device), self.device)
        inputs = ad.nbytes(xs[0]) * (1 if case.mode == "forward" else 2)
        return {"peak_mem_bytes": int(inputs + delta), "extra_mem_bytes": int(max(0, delta - ad.nbytes(out)))}

    def timing_fields(self, sampler: Sampler) -> dict[str, Any]:
        return {
            "timer": self.clock.kind,
            **summarize(sampler.device_samples).row_fields(),
            "samples_s": [_sig(s) for s in sampler.device_samples],
            "calls_per_sample": sampler.calls_per_sample,
            "stop_reason": sampler.stop_reason,
            "latency_median_s": summarize(sampler.latency_samples).median,
        }

    def begin(self, impl: Impl, case: Case, phase: str) -> None:
        emit({"event": "begin", "impl": impl.name, "case": case.key().to_json(), "phase": phase})

    def emit_row(self, fields: dict[str, Any]) -> None:
        emit({"event": "row", "row": Row(**{**fields, "shape": tuple(fields["shape"])}).__dict__})


def set_threads(threads: int) -> None:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:threads])
    except (AttributeError, OSError):
        pass


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a worker stops
    spec = json.loads(sys.stdin.read())
    framework, backend = spec["framework"], spec.get("keras_backend")
    if backend:
        os.environ["KERAS_BACKEND"] = backend
    set_threads(spec["threads"])
    sources = [Source(*s) for s in spec["sources"]]
    if spec["task"] == "probe":
        impls = load(sources, frameworks=(framework,))
        emit({"event": "probe", "impls": [i.info() for i in impls]})
        return 0
    tf_name = tensor_framework(framework, backend)
    try:
        from bench import frameworks

        adapter = frameworks.load(tf_name)
        adapter.setup(spec["threads"], spec["device"])
        if framework == "keras" and hasattr(adapter, "use_physical_shapes"):
            adapter.use_physical_shapes(True)
    except Exception as exc:
        emit(
            {
                "event": "fatal",
                "message": f"{tf_name} unavailable on {spec['device']}: {format_exception(exc)}",
            }
        )
        return 3
    if spec["task"] == "copy":
        emit(
            {
                "event": "copy",
                "gbps": adapter.copy_bandwidth_gbps(spec["device"], spec["copy_bytes"]),
                "framework": adapter.NAME,
                "device_name": adapter.device_name(spec["device"]),
            }
        )
        return 0
    loaded = {i.name: i for i in load(sources, frameworks=(framework,)) if not i.unavailable}
    worker = GroupWorker(spec, adapter, loaded)
    emit(
        {
            "event": "hello",
            "pid": os.getpid(),
            "versions": framework_versions(framework, backend, adapter),
            "device_name": worker.device_name,
        }
    )
    for job in spec["jobs"]:
        case = Case(**{**job["case"], "shape": tuple(job["case"]["shape"])})
        for name in job["impls"]:
            if name not in loaded:  # imported in the probe but not here: say so rather than drop it
                emit({"event": "missing", "impl": name, "case": case.key().to_json()})
        worker.run_case(case, [n for n in job["impls"] if n in loaded])
    emit({"event": "done", "cpu_s": time.process_time() - START_CPU, "wall_s": time.monotonic() - START})
    return 0


if __name__ == "__main__":
    sys.exit(main())
