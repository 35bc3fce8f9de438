"""The child side of a worker process: one framework/backend/device group, case by case.

It reads one `WorkerSpec` (bench/workers.py) as JSON on stdin and writes typed events, one JSON
line each, to the file descriptor named by NORMBENCH_EVENT_FD. It sends `Begin` before every
phase that could crash or hang, so the parent can blame the right unit and restart for the rest.
"""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np

from bench import environment, memory, operators, reference, verify
from bench.cases import Case, device_kind
from bench.frameworks import Adapter, OutputError, make_adapter
from bench.guard import Guard, Tampered
from bench.registry import Impl, format_exception, load_one
from bench.timing import HostClock, Sampler, read_clock, summarize, timer_overhead_s
from bench.workers import (
    EVENT_MESSAGE_BYTES,
    Begin,
    CopyResult,
    Done,
    Event,
    Fatal,
    Hello,
    Probed,
    RowEvent,
    Sample,
    Unloaded,
    WorkerSpec,
    encode,
)

_FD = int(os.environ.get("NORMBENCH_EVENT_FD", "1"))
START = time.monotonic()
START_CPU = time.process_time()  # all threads; interpreter start-up before this is not counted


def emit(event: Event) -> None:
    """One event to the parent, in messages of at most EVENT_MESSAGE_BYTES (see bench/workers.py)."""
    data = encode(event)
    for start in range(0, len(data), EVENT_MESSAGE_BYTES):
        os.write(_FD, data[start : start + EVENT_MESSAGE_BYTES])


def _sig(val: float | None) -> float | None:
    return None if val is None else float(f"{val:.5g}")


class MutatedInput(Exception):
    """The implementation changed its input in place: its numbers would be of other data."""


# What each mode's speed-of-light call does (`Adapter.copy_op`), as the rows say it.
LIMIT_CALLS = {"forward": "copy of the input", "backward": "dx = dy * x", "train": "copy, then dx = dy * x"}


@dataclass
class Prepared:
    impl: Impl
    base: dict[str, Any]
    sampler: Sampler | None  # None: checked, not timed (task "check", or wrong under require_correct)
    fields: dict[str, Any]
    run: Rotation | None = None
    rounds: int = 0  # sampling rounds so far: which positions the next sample for the parent holds
    held: tuple[Any, int, int] | None = None  # last round's output, its layout and round, to check again


class ChildMeasurer:
    """Inside the worker process: measures the jobs of one worker group. The contract:

    per case: make the inputs once (float64 reference input, rotating device buffers, a pristine
    snapshot where inputs are mutable); per implementation: build, first call (timed alone),
    check against the float64 reference and for input mutation, memory of one call; then every
    implementation warms up (after all memory measurements, so the allocator is at its high-water
    mark); then interleaved sampling rounds, with page faults counted; a final mutation check; one
    row per implementation. An implementation's failure is its own row; the case goes on.
    """

    def __init__(
        self, spec: WorkerSpec, adapter: Adapter, impls: dict[str, Impl], guard: Guard | None = None
    ) -> None:
        self.spec = spec
        self.guard = guard or Guard(adapter.guarded(), adapter.global_state, adapter.set_global_state)
        self.adapter = adapter
        self.impls = impls
        self.device = spec.device
        self.settings = spec.settings
        self.device_name = adapter.device_name(self.device)
        self.clock = adapter.clock(self.device) or HostClock()
        self.min_sample_s = max(1e-4, 1000 * timer_overhead_s())
        self.cpu_memory_unsupported = memory.supported()
        self.rotation_bytes = spec.rotation_bytes or 2 * adapter.cache_bytes(self.device)
        self.effective_cache_bytes = spec.effective_cache_bytes or self.rotation_bytes // 2
        self.cache_fields: dict[str, Any] = {}  # the current case's buffers and cache state
        self.layouts: list[int] = []
        self.fresh_layouts = 0
        self.x64: np.ndarray | None = None
        self.pristine: Any = None
        # "check": correctness, semantics and edge cases only. require_correct: a wrong output is
        # never timed, so a fast wrong answer cannot produce a time at all.
        self.rounds = 0  # sampling rounds so far: which buffer the next cheap input check samples
        self.check_only = spec.task == "check"
        self.limit_failure = ""  # why the current case has no speed of light
        self.require_correct = spec.require_correct

    def base(self, impl: Impl, case: Case) -> dict[str, Any]:
        return {
            "impl": impl.name,
            "framework": impl.framework,
            "backend": self.spec.backend if self.spec.backend else impl.backends[0],
            "device": case.device,
            "device_name": self.device_name,
            "dtype": case.dtype,
            "layout": case.layout,
            "mode": case.mode,
            "shape": list(case.shape),
            "eps": case.eps,
            "input_kind": case.input_kind,
            "op": case.op,
            "op_params": case.op_params,
            "roles": list(impl.roles),
            "compiled_from": impl.compiled_from or "",
            "semantics_declared": impl.semantics,
            "layout_copy": case.layout in impl.layout_copy,
            "source": impl.source,
            "ideal_bytes": case.ideal_bytes,
            "threads": self.spec.threads,
            "settings": self.settings.key(),
        }

    def failed(self, base: dict[str, Any], exc: BaseException, extra: dict[str, Any] | None = None) -> None:
        status = "oom" if self.adapter.is_oom(exc) else "error"
        message = str(exc) if isinstance(exc, (MutatedInput, Tampered)) else format_exception(exc)
        self.emit_row({**base, **(extra or {}), "status": status, "message": message})

    def run_case(self, case: Case, names: list[str]) -> None:
        if case.input_kind != "random":
            self.run_edge(case, names)
            return
        ad = self.adapter
        emit(Begin("inputs", case=case.key()))
        try:
            op = operators.get(case.op)
            x64 = op.make_input(case)
            g64 = op.make_upstream_grad(case) if case.mode != "forward" else None
            buffers = memory.plan_buffers(
                case.numel, case.itemsize, case.mode, device_kind(case.device) == "cpu", self.rotation_bytes,
                self.settings.warm_cache, self.spec.max_memory_bytes,
            ) or memory.Buffers(1, case.numel * case.itemsize, 0)  # fmt: skip
            # Each buffer holds other values (bench.verify): an answer kept from an earlier call is wrong.
            xs = [ad.to_tensor(verify.buffer_input(x64, i), case) for i in range(buffers.count)]
            self.cache_fields = {
                "cache_policy": "warm" if self.settings.warm_cache else "cold",
                "buffers": buffers.count,
                "rotated_bytes": buffers.rotated_bytes,
                "cache_state": memory.cache_state(buffers.rotated_bytes, self.effective_cache_bytes),
            }
            # The reference sees what the implementation sees: the input after rounding to dtype.
            x_seen = ad.to_numpy(xs[0], case, "input")
            g_seen = ad.to_numpy(ad.to_tensor(g64, case), case, "gradient") if g64 is not None else None
            pristine = ad.snapshot(xs) if ad.mutable_inputs else None
            self.layouts = list(range(len(xs)))  # which of bench.verify's layouts each buffer holds
            self.fresh_layouts = 0
            self.x64, self.pristine = x64, pristine
            ref = op.reference(x_seen, case, g_seen)  # shared by every implementation
        except BaseException as exc:  # noqa: BLE001  MemoryError included: a row, not a crash
            for name in names:
                base = self.base(self.impls[name], case)
                self.failed(base, exc)
            return
        prepared: list[Prepared] = []
        for name in names:
            impl = self.impls[name]
            base = self.base(impl, case)
            try:
                prepared.append(self.prepare(impl, case, base, xs, ref, g_seen, pristine))
            except BaseException as exc:  # noqa: BLE001  an implementation's failure is its row
                self.failed(base, exc)
                self.restore(xs, pristine)
        del ref  # checked: its float64 arrays are not held through the timing
        active = [p for p in prepared if p.sampler is not None]
        self.limit_failure = ""
        limit = self.prepare_limit(case, xs, g_seen) if active else None
        for p in list(active):  # after every memory measurement: the heap at its high-water mark
            assert p.sampler is not None
            self.begin(p.impl, case, "warmup")
            try:
                p.sampler.warm_up()
                self.guard.raise_if_changed("while warming up")
                self.check_inputs(xs, pristine, full=True, when="warm-up")
            except BaseException as exc:  # noqa: BLE001
                self.failed(p.base, exc, p.fields)
                self.restore(xs, pristine)
                prepared.remove(p)
                active.remove(p)
        if limit is not None:
            emit(Begin("limit", case=case.key()))
            limit.warm_up()
        # Interleaved rounds: slow drift of the machine spreads over every implementation, and over
        # the case's limit, sampled for as long as any of them is.
        while active:
            if limit is not None:
                emit(Begin("limit", case=case.key()))
                limit.round()
            for p in list(active):
                assert p.sampler is not None
                self.begin(p.impl, case, "sample")
                try:
                    before = len(p.sampler.latency_samples)
                    p.sampler.round(after_first=partial(self.timing_starts, p, case))
                    # The round's claim goes to the parent at once, so that its witness of the
                    # round holds the timed calls and no bookkeeping of normbench's (the guard's
                    # ~0.6 ms, which also catches a clock changed in the calls, comes after)
                    self.sampled_round(p, case, before)
                    self.guard.raise_if_changed("while being timed")
                    if p.sampler.stop_reason:  # the held output's later call: here, not a round's
                        if case.mode != "backward":
                            self.fresh_call(p, case, xs)
                        elif p.run is not None:
                            p.run(1, True)
                        self.send_held(p, case)
                    self.check_inputs(xs, pristine, full=bool(p.sampler.stop_reason), when="timing")
                except BaseException as exc:  # noqa: BLE001
                    self.failed(p.base, exc, p.fields)
                    self.restore(xs, pristine)
                    prepared.remove(p)
                    active.remove(p)
                    continue
                if p.sampler.stop_reason:
                    active.remove(p)
        limit_fields = self.limit_fields(limit, case)
        for p in prepared:
            timing = {**self.timing_fields(p.sampler), **limit_fields} if p.sampler is not None else {}
            if p.sampler is not None and self.pays_fresh_pages(case):
                self.begin(p.impl, case, "default allocator")
                timing.update(self.default_alloc_fields(p.sampler, case))
            self.emit_row({**p.base, **p.fields, **timing, "status": "ok"})
        del prepared, active, xs, pristine
        self.x64 = self.pristine = None
        collect_and_freeze()

    def check_inputs(self, xs: list[Any], pristine: Any, full: bool, when: str) -> None:
        """Compare the inputs with their pristine copy: all of them (`full`), or, between sampling
        rounds, a strided sample of one buffer, a different one each round (microseconds)."""
        if pristine is None:
            return
        if not full:
            k = self.rounds % len(xs)
            self.rounds += 1
            xs, pristine = xs[k : k + 1], pristine[k : k + 1]
        changed = self.adapter.changed(xs, pristine, full)
        if changed:
            raise MutatedInput(
                f"mutates its input: {changed} input values changed during {when} (in-place writes to "
                "the input: every later call would run on other data)"
            )

    def restore(self, xs: list[Any], pristine: Any) -> None:
        if pristine is not None:
            self.adapter.restore(xs, pristine)

    def prepare(
        self,
        impl: Impl,
        case: Case,
        base: dict[str, Any],
        xs: list[Any],
        ref: operators.Reference,
        g64: np.ndarray | None,
        pristine: Any,
    ) -> Prepared:
        ad, dev = self.adapter, self.device
        self.begin(impl, case, "build")
        assert impl.builder is not None
        fn = impl.builder(case)
        self.guard.raise_if_changed("when built", threads_allowed=True)
        call = ad.make_call(fn, case, xs, g64)
        self.begin(impl, case, "first_call")
        t0 = read_clock()
        out = ad.finish(call(0), dev)
        first_call_s = read_clock() - t0
        self.guard.raise_if_changed("in its first call", threads_allowed=True)
        self.begin(impl, case, "check")
        fields: dict[str, Any] = {"first_call_s": _sig(first_call_s)}
        self.check_inputs(xs, pristine, full=True, when="the first call")
        fields.update(self.check(impl, fn, case, xs, ref, out))
        self.send_sample(impl, case, out, "first", self.layouts[0], 0)
        del out
        if self.check_only:  # untimed, but later calls are checked as a timed one's would be
            unchecked = Prepared(impl, base, None, fields, Rotation(call, len(xs), ad, dev))
            self.verify_later_calls(unchecked, case, xs)
            return unchecked
        if self.require_correct and not fields["correct"]:
            return Prepared(impl, base, None, fields)
        nbuf = len(xs)
        run = Rotation(call, nbuf, ad, dev)
        # Enough rounds for the parent to hold its claimed time to the wall clock (bench/verify.py)
        witness = verify.rounds_to_judge(self.settings.round_s)
        sampler = Sampler(
            run, self.settings, self.clock, self.min_sample_s, min_warmup_calls=nbuf, min_rounds=witness
        )
        self.begin(impl, case, "memory")
        fields.update(self.memory_fields(call, case, xs))
        self.guard.raise_if_changed("while its memory was measured")
        self.check_inputs(xs, pristine, full=True, when="the memory measurement")
        fields.update(self.cache_fields)
        return Prepared(impl, base, sampler, fields, run)

    def send_sample(self, impl: Impl, case: Case, out: Any, when: str, buffer: int, round_no: int) -> None:
        """Sampled values of an output, for the parent to check against its own reference."""
        idx = verify.sample_index(case.shape, round_no)
        if case.mode == "train":
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise OutputError(f"train call returned {type(out).__name__}; expected (output, gradient)")
            y, dx = out
        else:
            y, dx = (None, out) if case.mode == "backward" else (out, None)
        ad = self.adapter
        emit(
            Sample(
                impl.name, case.key(), when, buffer, round_no,
                y=ad.gather(y, case, idx) if y is not None else None,
                dx=ad.gather(dx, case, idx, "gradient") if dx is not None else None,
            )
        )  # fmt: skip

    def sampled_round(self, p: Prepared, case: Case, samples_before: int) -> None:
        """After a sampling round: the time the round claimed, then its last timed output go to the
        parent at once (an answer finished later, by a thread, is caught here). The output
        is held (as the rotation holds it anyway) until the next round's untimed first call, and
        then sent again (one that a later call overwrote, a view of a persistent buffer, is caught
        there): the check costs no call of its own."""
        assert p.sampler is not None and p.run is not None
        p.rounds += 1
        s = p.sampler
        claimed = sum(s.latency_samples[samples_before:]) * s.calls_per_sample
        emit(Sample(p.impl.name, case.key(), "claim", -1, p.rounds, claimed_s=claimed))  # before the gather
        layout = self.layouts[p.run.last_buffer]
        self.send_sample(p.impl, case, p.run.out, "timed", layout, p.rounds)
        p.held = (p.run.out, layout, p.rounds)

    def timing_starts(self, p: Prepared, case: Case) -> None:
        """After a round's untimed first call: the held output goes to the parent, then the
        parent's witness of the round's time starts (that call is the implementation's switch
        from its neighbours, a scheduler slice on a busy machine, and claims nothing)."""
        self.send_held(p, case)
        self.begin(p.impl, case, "timing")

    def send_held(self, p: Prepared, case: Case) -> None:
        if p.held is not None:
            out, layout, round_no = p.held
            p.held = None
            self.send_sample(p.impl, case, out, "held", layout, round_no)

    def verify_later_calls(self, p: Prepared, case: Case, xs: list[Any]) -> None:
        """`check`: the calls after the first, as a sampling round's are checked (an answer right
        only on the first call is wrong here too)."""
        assert p.run is not None
        p.run(min(3, len(xs)), True)
        p.rounds += 1
        held, layout = p.run.out, self.layouts[p.run.last_buffer]
        self.send_sample(p.impl, case, held, "timed", layout, p.rounds)
        p.run(1, True)
        self.send_sample(p.impl, case, held, "held", layout, p.rounds)
        del held
        if case.mode != "backward":
            self.fresh_call(p, case, xs)
        self.guard.raise_if_changed("in its later calls")

    def fresh_call(self, p: Prepared, case: Case, xs: list[Any]) -> None:
        """After a row's last round: the next buffer gets values no call has seen (a new layout,
        written in place where the framework's arrays are mutable), and the next call's answer goes
        to the parent. An answer kept per input address, or any answer not computed from the input
        the call was given, is caught. (Backward's graphs hold their inputs' forward: not there.)"""
        assert p.run is not None
        i = p.run.i = p.run.last_buffer  # a buffer it was called on: new values at a known address
        self.fresh_layouts += 1
        layout = len(xs) + self.fresh_layouts  # one no buffer has held
        assert self.x64 is not None
        new = self.adapter.to_tensor(verify.buffer_input(self.x64, layout), case)
        if self.adapter.mutable_inputs:
            self.adapter.restore([xs[i]], [new])
            self.pristine[i] = self.adapter.snapshot([xs[i]])[0]
        else:
            xs[i] = new
        self.layouts[i] = layout
        p.run(1, True)
        self.send_sample(p.impl, case, p.run.out, "fresh", layout, p.rounds)

    def check(
        self,
        impl: Impl,
        fn: Callable[[Any], Any],
        case: Case,
        xs: list[Any],
        ref: operators.Reference,
        out: Any,
    ) -> dict[str, Any]:
        """Errors against the float64 reference of the declared semantics, what it really computes,
        and how far that is from the operator's canonical definition."""
        ad, declared, op = self.adapter, impl.semantics, operators.get(case.op)
        if case.mode == "train":
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise OutputError(f"train call returned {type(out).__name__}; expected (output, gradient)")
            y, dx = out
        elif case.mode == "backward":
            y, dx = ad.finish(ad.forward_once(fn, xs[0]), self.device), out
        else:
            y, dx = out, None
        y64 = ad.to_numpy(y, case, "output")
        if declared == reference.COPY:  # a calibration: its answer is its input, nothing to detect
            same = reference.accuracy(y64, ref.output(declared)).max_rel_err
            ok = same is not None and same <= op.tolerance[case.dtype]
            detected = reference.Detected("copy", ("copy",)) if ok else reference.Detected("other", ())
        else:
            detected = ref.detect(y64, case.dtype)
        accs = []
        if case.mode in ("forward", "train"):
            accs.append(reference.accuracy(y64, ref.output(declared)))
        dtypes = [ad.dtype_name(y)]
        if dx is not None:
            dx64 = ad.to_numpy(dx, case, "gradient")
            accs.append(reference.accuracy(dx64, ref.grad(declared)))
            dtypes.append(ad.dtype_name(dx))
        canonical = reference.accuracy(y64, ref.output(op.canonical))
        abs_errs = [a.max_abs_err for a in accs if a.max_abs_err is not None]
        rel_errs = [a.max_rel_err for a in accs if a.max_rel_err is not None]
        nonfinite = sum(a.nonfinite_outputs for a in accs)
        tol = op.tolerance[case.dtype]
        max_rel = max(rel_errs) if len(rel_errs) == len(accs) else None
        wrong_dtype = next((d for d in dtypes if d != case.dtype), None)
        correct = nonfinite == 0 and max_rel is not None and max_rel <= tol and wrong_dtype is None
        message = ""
        if wrong_dtype:
            message = f"wrong: returns {wrong_dtype} in a {case.dtype} case (its time is not comparable)"
        elif nonfinite:
            message = f"wrong: {nonfinite} non-finite values in the {case.mode} output"
        elif not correct:
            message = f"wrong: max_rel_err {max_rel:.3g} over the {case.dtype} tolerance {tol:g}"
        return {
            "max_abs_err": _sig(max(abs_errs)) if abs_errs else None,
            "max_rel_err": _sig(max_rel),
            "nonfinite_outputs": nonfinite,
            "tolerance": tol,
            "correct": correct,
            "output_dtype": dtypes[0],
            "canonical_rel_err": _sig(canonical.max_rel_err),
            "semantics": detected.label,
            "semantics_mismatch": detected.mismatches(declared),
            "message": message,
        }

    def run_edge(self, case: Case, names: list[str]) -> None:
        """One call per implementation on an input that breaks implementations: finite? how wrong?
        Each implementation gets its own tensor, so none sees another's in-place writes."""
        ad = self.adapter
        emit(Begin("inputs", case=case.key()))
        op = operators.get(case.op)
        x64 = op.make_edge_input(case.input_kind, case)
        for name in names:
            impl = self.impls[name]
            fields = self.base(impl, case)
            try:
                self.begin(impl, case, "edge")
                assert impl.builder is not None
                x = ad.to_tensor(x64, case)
                x_seen = ad.to_numpy(x, case, "input")
                y64 = ad.to_numpy(ad.finish(ad.forward_once(impl.builder(case), x), self.device), case)
                self.guard.raise_if_changed("on an edge case")
                acc = reference.accuracy(y64, op.edge_reference(x_seen, case, impl.semantics))
                tol = op.edge_tolerance(case.input_kind, case.dtype)
                err = acc.max_abs_err
                if acc.nonfinite_outputs or err is None or err > reference.UNSAFE_ABS_ERR:
                    verdict = "unsafe"
                else:
                    verdict = "safe" if err <= tol else "inexact"
                detail = (
                    f", {acc.nonfinite_outputs} non-finite values"
                    if acc.nonfinite_outputs
                    else f", max abs err {_sig(err)}"
                )
                self.emit_row(
                    {
                        **fields,
                        "status": "ok",
                        "max_abs_err": _sig(err),
                        "max_rel_err": _sig(acc.max_rel_err),
                        "nonfinite_outputs": acc.nonfinite_outputs,
                        "tolerance": tol,
                        "correct": verdict == "safe",
                        "message": f"{case.input_kind}: {verdict}{detail}",
                    }
                )
            except BaseException as exc:  # noqa: BLE001
                self.failed(fields, exc)

    def memory_fields(self, call: Callable[[int], Any], case: Case, xs: list[Any]) -> dict[str, Any]:
        ad = self.adapter
        if not case.device.startswith("cuda") and self.cpu_memory_unsupported:
            return {"message": f"memory not measured: {self.cpu_memory_unsupported}"}
        delta, out = ad.measure_memory(lambda: ad.finish(call(0), self.device), self.device)
        inputs = ad.nbytes(xs[0]) * (1 if case.mode == "forward" else 2)
        return {"peak_mem_bytes": int(inputs + delta), "extra_mem_bytes": int(max(0, delta - ad.nbytes(out)))}

    def pays_fresh_pages(self, case: Case) -> bool:
        """A CPU case whose output a default process would get fresh from the kernel every call."""
        return device_kind(case.device) == "cpu" and case.numel * case.itemsize >= memory.MMAP_CEILING_BYTES

    def default_alloc_fields(self, timed: Sampler, case: Case) -> dict[str, Any]:
        """The same calls in a default process's allocator state (see README, "The allocator's
        steady state"): what a user's own timing loop pays, beside the steady-state figure. Half the
        row's time budget, host clock, after its own sampling."""
        settings = replace(self.settings, max_time_s=max(self.settings.max_time_s / 2, 0.05), min_samples=3)
        timed.run(
            0, True
        )  # drops the last output it keeps: freed inside the block, it would serve every call
        with memory.default_allocator(case.numel * case.itemsize) as available:
            if not available:
                return {}
            sampler = Sampler(timed.run, settings, HostClock(), self.min_sample_s, min_warmup_calls=1)
            sampler.warm_up()
            while not sampler.stop_reason:
                sampler.round()
        minor, _ = sampler.faults.per_call()
        return {
            "default_alloc_time_median_s": summarize(sampler.device_samples).median,
            "default_alloc_faults_per_call": _sig(minor),
        }

    def prepare_limit(self, case: Case, xs: list[Any], g64: np.ndarray | None) -> Sampler | None:
        """The case's speed of light: the least work that moves its bytes (`Adapter.copy_op`: forward
        a copy of the input into a fresh output from the framework's allocator), called on the same
        rotating buffers with the same threads and sampled in the same interleaved rounds as the
        implementations, so that it has their memory pattern and the machine's drift (None where
        the framework cannot call it for this case)."""
        ad = self.adapter
        emit(Begin("limit", case=case.key()))
        try:
            call = ad.make_call(ad.copy_op(case.mode), case, xs, g64)
            ad.finish(call(0), self.device)
        except Exception as exc:  # noqa: BLE001  no limit here: the rows say why
            self.limit_failure = f"not measured: {format_exception(exc)[:200]}"
            return None
        # It samples for as long as any implementation does: only the sample cap stops it.
        endless = replace(self.settings, max_time_s=math.inf, target_rel_ci=0.0)
        return Sampler(Rotation(call, len(xs), ad, self.device), endless, self.clock, self.min_sample_s,
                       min_warmup_calls=len(xs))  # fmt: skip

    def limit_fields(self, limit: Sampler | None, case: Case) -> dict[str, Any]:
        stats = summarize(limit.device_samples) if limit is not None else None
        if limit is None or stats is None or not stats.median:
            return {"limit_how": self.limit_failure or "not measured: no samples"}
        moved = case.ideal_bytes  # the limit's call moves what a normalization's must
        return {
            "limit_how": f"{self.adapter.name} {LIMIT_CALLS[case.mode]} into fresh outputs, timed beside it",
            "limit_gbps": _sig(moved / stats.median / 1e9),
            "limit_rel_ci": _sig(stats.rel_ci),
            "limit_faults_per_call": _sig(limit.faults.per_call()[0]),
        }

    def timing_fields(self, sampler: Sampler) -> dict[str, Any]:
        minor, major = sampler.faults.per_call()
        return {
            "timer": self.clock.kind,
            **summarize(sampler.device_samples).row_fields(),
            "samples_s": [_sig(s) for s in sampler.device_samples],
            "calls_per_sample": sampler.calls_per_sample,
            "stop_reason": sampler.stop_reason,
            "latency_median_s": summarize(sampler.latency_samples).median,
            "faults_per_call": _sig(minor),
            "major_faults_per_call": _sig(major),
        }

    def begin(self, impl: Impl, case: Case, phase: str) -> None:
        emit(Begin(phase, impl=impl.name, case=case.key()))

    def emit_row(self, fields: dict[str, Any]) -> None:
        emit(RowEvent(fields))


class Rotation:
    """What a clock times: run(k, sync_each) makes k calls on the next k of `nbuf` rotating input
    buffers, waiting for the device after each call when `sync_each` (call latency), else only
    as the clock does after the last (device time). Each output is freed before the next call,
    as timeit and torch.utils.benchmark do: the allocator can hand the same (warm) buffer back.
    Only the last one is kept (`out`, from buffer `last_buffer`): for the clock's sync, and for
    the parent to check what a timed call returned."""

    def __init__(self, call: Callable[[int], Any], nbuf: int, adapter: Adapter, device: str) -> None:
        self.call, self.nbuf, self.adapter, self.device = call, nbuf, adapter, device
        self.i = 0
        self.out: Any = None

    @property
    def last_buffer(self) -> int:
        return (self.i - 1) % self.nbuf

    def __call__(self, k: int, sync_each: bool) -> None:
        i = self.i
        self.out = out = None
        for _ in range(k):
            out = None
            out = self.call(i)
            i = (i + 1) % self.nbuf
            if sync_each:
                self.adapter.finish(out, self.device)
        self.i = i
        self.out = out


def set_affinity(threads: int) -> None:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:threads])
    except (AttributeError, OSError):
        pass


def watch_parent() -> None:
    """When the parent dies (even by SIGKILL), take this worker's whole process group down with it:
    no worker, and nothing a worker forked, outlives normbench."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="normbench-parent-watch", daemon=True).start()


def collect_and_freeze() -> None:
    """Collect, then move every survivor to the collector's permanent generation. A framework's
    modules (and what a case leaves for the next: compiled graphs, caches) stay for the worker's
    life; without this, each full collection before a memory measurement walked all of torch and
    dynamo again (0.18 s a time, half of a smoke sweep's worker). Garbage is still freed by
    reference counting; only cycles among frozen objects would wait for the worker's end."""
    gc.collect()
    gc.freeze()


def probe(spec: WorkerSpec) -> None:
    for source in spec.sources:
        emit(Begin("import", source=source.label()))
        impls = load_one(source, spec.framework)
        emit(Probed(source.label(), [i.info() for i in impls]))


def copy(spec: WorkerSpec, adapter: Adapter) -> None:
    """The copy service: the cache probe and the first speed-of-light copy, then one more copy per
    request on stdin. Each request's pieces are allocated for it and freed after it: between
    requests the implementations run, and a device's memory is theirs."""
    dev = spec.device
    allocate = partial(adapter.copy_pieces, dev)
    piece = memory.COPY_PIECE_BYTES if device_kind(dev) == "cpu" else memory.GPU_COPY_PIECE_BYTES

    def copy_figure(footprint: int) -> memory.CopyFigure:
        return memory.Copier(allocate, footprint, piece).figure(footprint)

    if spec.probe_cache and spec.effective_cache_bytes:
        copier = memory.Copier(allocate, spec.copy_bytes, piece)
        probed = memory.given_cache(
            copier.gbps, spec.effective_cache_bytes, spec.copy_bytes, spec.rotation_bytes,
            whole_plateau=device_kind(dev) != "cpu",
        )  # fmt: skip
        del copier
        emit(CopyResult(adapter.name, adapter.device_name(dev), probed.dram_gbps, probed.as_env()))
    elif spec.probe_cache:
        name, cache_bytes = adapter.device_name(dev), adapter.cache_bytes(dev)
        store = environment.SweepStore()
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        key = store.key(
            device=name, threads=spec.threads, affinity=cpus, copy=f"{adapter.name} {adapter.version()}",
            cache_bytes=cache_bytes, max_bytes=spec.copy_bytes, max_rotation_bytes=spec.rotation_bytes,
            piece_bytes=piece,
        )  # fmt: skip
        with store.turn():
            known = store.load(key) if spec.reuse_sweep else None
            copier = memory.Copier(allocate, spec.copy_bytes, piece)
            probed = memory.probe_cache(
                copier.gbps, cache_bytes, spec.copy_bytes, spec.rotation_bytes, known=known,
                whole_plateau=device_kind(dev) != "cpu",
            )  # fmt: skip
            del copier
            if not probed.sweep_reused and probed.cold_verified:  # one that failed its own check is not kept
                store.save(key, probed.sweep, probed.swept_at)
        emit(CopyResult(adapter.name, name, probed.dram_gbps, probed.as_env()))
    else:
        figure = copy_figure(spec.copy_bytes)
        emit(
            CopyResult(
                adapter.name, adapter.device_name(dev), figure.gbps, faults_per_mib=figure.faults_per_mib
            )
        )
    for line in sys.stdin:  # a copy service: one more copy per request, until the parent closes stdin
        request = json.loads(line)
        figure = copy_figure(request["copy_bytes"])
        emit(
            CopyResult(
                adapter.name, adapter.device_name(dev), figure.gbps, faults_per_mib=figure.faults_per_mib
            )
        )


def main() -> int:
    # The parent decides when a worker stops: a signal to every process at once (Ctrl-C, scancel, a
    # batch system's time limit or its SIGUSR2 warning, systemd stopping a unit) stops the run, and
    # blames no implementation.
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2):
        signal.signal(stop, signal.SIG_IGN)
    watch_parent()
    spec = WorkerSpec.from_json(sys.stdin.readline())
    set_affinity(spec.threads)
    memory.steady_allocator()
    if spec.task == "probe":
        probe(spec)
        return 0
    try:
        adapter = make_adapter(spec.framework, spec.backend)
        adapter.setup(spec.threads, spec.device)
    except Exception as exc:
        emit(Fatal(f"{spec.label} unavailable: {format_exception(exc)}"))
        return 3
    if spec.task == "copy":
        copy(spec, adapter)
        return 0
    loaded: dict[str, Impl] = {}
    guard = Guard(adapter.guarded(), adapter.global_state, adapter.set_global_state)
    for source in spec.sources:
        emit(Begin("import", source=source.label()))
        impls = load_one(source, spec.framework)
        changed = guard.check()
        if changed:  # put back; its implementations are not measured
            emit(
                Unloaded(source.label(), f"changes what other implementations run with, at import: {changed}")
            )
            continue
        loaded.update({i.name: i for i in impls if not i.unavailable})
        failed = [i for i in impls if i.unavailable]
        if failed:
            emit(Unloaded(source.label(), failed[0].unavailable or ""))
    versions = {adapter.name: adapter.version()}
    if spec.framework != adapter.name:
        versions[spec.framework] = getattr(sys.modules.get(spec.framework), "__version__", "?")
    collect_and_freeze()
    measurer = ChildMeasurer(spec, adapter, loaded, guard)
    emit(Hello(os.getpid(), versions, measurer.device_name))
    for job in spec.jobs:
        # A name the worker did not load is the parent's to report (see Unloaded).
        measurer.run_case(job.case, [name for name in job.impls if name in loaded])
    emit(Done(time.process_time() - START_CPU, time.monotonic() - START))
    return 0


if __name__ == "__main__":
    sys.exit(main())
