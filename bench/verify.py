"""Answers checked where no implementation runs: each rotating buffer holds different values, the
worker sends sampled values of timed outputs, and the parent compares them with its own float64
reference of the same planes; the parent also holds each row's claimed time against the wall time
it saw. Both sides use this module: the worker to build its buffers and pick what it samples, the
parent (`Verifier`) to judge."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench import operators
from bench.cases import Case, CaseKey
from bench.memory import CpuReading

PLANES_PER_SAMPLE = 4
POSITIONS_PER_PLANE = 64
# A row's timed calls claimed this share of the time the parent saw the worker take over the same
# sampling rounds, from the end of each round's untimed first call to its claim, at least. That
# time is the kernel's: the time between the two events' sending (bench/workers.py stamps them),
# which a parent that reads late does not move. Without stamps it is the time between their
# reading, or the time the worker's threads ran or waited to run in it where that is less (a
# worker blocked on a late parent sleeps). Honest rows claimed 44-74 % of the wall time on a quiet
# 2-core VM when the window also held the untimed call and the guard (a CUDA clock's stream hold
# makes it about a third lower); a clock made to report a fiftieth claims 2 %. The worker's CPU
# time read by a parent that was behind once let such a clock through on a loaded machine (three
# test processes and two busy loops on 2 cores), and once called honest rows cheats.
CLAIM_FLOOR = 1 / 10
# Per round, what the witness holds besides the timed calls: for the wall clock a message's delay
# and the parent's own scheduling; for the worker's time the sampler's bookkeeping and the
# gathered sample (~0.1 ms).
CLAIM_SLACK_S = 0.002
CLAIM_CPU_SLACK_S = 0.0005
# Without the kernel's stamps the parent reads a round's end when it gets to it: one that was
# descheduled, or busy with its own work, reads it late and sees the rounds the worker ran meanwhile
# (CI beside a test suite on 2 cores: an honest row of 2 rounds caught so, before the stamps). With
# them or without, a lying clock lies in every round: the rounds that claimed least of what the
# parent saw, one in four and at least one of two or more, are left out of the sums.
LATE_ROUNDS_LEFT_OUT = 4
# Less than this much of the rounds kept convicts no clock: a round lasts round_s of wall time, and
# one scheduler slice (~10 ms on a loaded machine) that falls between its timed calls leaves it
# little to claim (smoke runs beside a test suite and two busy loops on 2 cores: an honest round
# claimed 0.55 ms in 10.1 ms). A cheat's rows in a real run sample for 0.2 s and more.
MIN_EVIDENCE_S = 0.02


def rounds_left_out(rounds: int) -> int:
    """How many of a row's sampling rounds clock_disagrees leaves out (those that claimed least)."""
    return max(1, rounds // LATE_ROUNDS_LEFT_OUT) if rounds > 1 else 0


def rounds_to_judge(round_s: float) -> int:
    """The fewest sampling rounds of `round_s` whose kept ones hold MIN_EVIDENCE_S, with one round
    to spare (a row's last round ends early when its samples converge). A clock reporting a
    fiftieth once went through a smoke run at --max-time 0.05: its steady claims converged after 2
    rounds of 10 ms, one of them left out, and 10 ms convicts no clock."""
    rounds = 1
    while (rounds - 1 - rounds_left_out(rounds)) * round_s < MIN_EVIDENCE_S and rounds < 1000:
        rounds += 1
    return rounds


def buffer_layout(planes: int, plane: int, layout: int) -> tuple[int, float, int]:
    """Layout L of the case's input: its N*C planes rolled by L, negated for odd L, and each plane's
    values rolled by L // planes positions. Buffer i starts with layout i; layouts are distinct for
    every L below planes x plane, so each buffer's answer differs from the others', and a layout
    no call has seen (written over a buffer at the end of a row) has an answer no call computed."""
    return layout % planes, (-1.0 if layout % 2 else 1.0), (layout // planes) % plane


def _planes_of(flat: np.ndarray, plane_ids: np.ndarray | slice, layout: int) -> np.ndarray:
    """Planes `plane_ids` of layout `layout`, from the (N*C, H*W) planes of layout 0."""
    count, size = flat.shape
    roll, sign, shift = buffer_layout(count, size, layout)
    ids = np.arange(count)[plane_ids]
    planes = flat[(ids + roll) % count]
    return sign * (np.roll(planes, -shift, axis=1) if shift else planes)


def buffer_input(x64: np.ndarray, layout: int) -> np.ndarray:
    """The float64 NCHW input in layout `layout` (layout 0 is the case's input itself)."""
    if layout == 0:
        return x64
    n, c, h, w = x64.shape
    return _planes_of(x64.reshape(n * c, h * w), slice(None), layout).reshape(n, c, h, w)


def sample_index(shape: tuple[int, int, int, int], round_no: int) -> tuple[np.ndarray, ...]:
    """The logical (n, c, h, w) positions sampled in round `round_no`: PLANES_PER_SAMPLE planes spread
    over the tensor and POSITIONS_PER_PLANE strided positions in each, both moving from round to
    round, so that over a row's rounds every part of the output is looked at."""
    n, c, h, w = shape
    planes, plane = n * c, h * w
    k = min(PLANES_PER_SAMPLE, planes)
    spread = max(1, planes // k)
    chosen = (np.arange(k) * spread + round_no * 7919) % planes
    m = min(POSITIONS_PER_PLANE, plane)
    stride = max(1, plane // m)
    offsets = (np.arange(m) * stride + round_no * 104729) % plane
    p = np.repeat(chosen, m)
    q = np.tile(offsets, k)
    return p // c, p % c, q // w, q % w


def round_to(x64: np.ndarray, dtype: str) -> np.ndarray:
    """What a framework's tensor of `dtype` holds for these float64 values (round to nearest even;
    bfloat16 through float32, as torch converts)."""
    if dtype == "float32":
        return x64.astype(np.float32).astype(np.float64)
    if dtype == "float16":
        return x64.astype(np.float16).astype(np.float64)
    if dtype == "bfloat16":
        bits = x64.astype(np.float32).view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
        return rounded.astype(np.uint32).view(np.float32).astype(np.float64)
    raise ValueError(f"unknown dtype {dtype!r}")


class CaseTruth:
    """The parent's own inputs of one case (as the dtype rounds them) and the reference values at
    sampled positions, for any buffer and semantics, from the planes it needs alone."""

    def __init__(self, case: Case) -> None:
        self.case, self.op = case, operators.get(case.op)
        self.x = round_to(self.op.make_input(case), case.dtype)
        self.g = round_to(self.op.make_upstream_grad(case), case.dtype) if case.mode != "forward" else None

    def expected(self, semantics: str, buffer: int, round_no: int, what: str) -> np.ndarray:
        """Reference values of the output (`what` = "y") or input gradient ("dx") of `buffer`."""
        n, c, h, w = self.case.shape
        idx = sample_index(self.case.shape, round_no)
        flat = self.x.reshape(n * c, h * w)
        out = np.empty(len(idx[0]))
        plane_of = idx[0] * c + idx[1]
        for p in np.unique(plane_of):
            at = plane_of == p
            ids, part = self.op.support(self.case, int(p))
            z = _planes_of(flat, ids, buffer).reshape(1, len(ids), h, w)
            j = int(np.searchsorted(ids, p))
            if what == "y":
                ref = self.op.reference(z, part).output(semantics)[0, j]
            else:
                assert self.g is not None
                g = self.g.reshape(n * c, h, w)[ids][None]
                ref = self.op.reference(z, part, g).grad(semantics)[0, j]
            out[at] = ref[idx[2][at], idx[3][at]]
        return out


@dataclass(frozen=True)
class RoundSeen:
    """One sampling round: the time its calls claimed, the wall time the parent saw it take and the
    time the worker's threads were on a CPU or waiting for one in it (inf: unknown)."""

    claimed_s: float
    wall_s: float
    busy_s: float

    def margin(self) -> float:
        """Over zero where the claim stands against this round alone."""
        seen, slack, _ = _witness(self.wall_s, self.busy_s, 1)
        return self.claimed_s - CLAIM_FLOOR * (seen - slack)


def _witness(wall_s: float, busy_s: float, rounds: int) -> tuple[float, float, bool]:
    """Of the wall time and the worker's threads' time over `rounds` rounds, the one that is less
    after its slack: (its time, its slack, whether it is the wall time)."""
    if wall_s - CLAIM_SLACK_S * rounds <= busy_s - CLAIM_CPU_SLACK_S * rounds:
        return wall_s, CLAIM_SLACK_S * rounds, True
    return busy_s, CLAIM_CPU_SLACK_S * rounds, False


def clock_disagrees(rounds: list[RoundSeen]) -> str:
    """Why the claimed time of these rounds cannot be the worker's ("" where it can): the rounds
    that read late aside, their calls claimed under CLAIM_FLOOR of the wall time the parent saw, or
    of the time the worker's threads ran or waited to run where that is less."""
    if not rounds:
        return ""
    late = rounds_left_out(len(rounds))
    kept = sorted(rounds, key=RoundSeen.margin)[late:]
    claimed = sum(r.claimed_s for r in kept)
    wall = sum(r.wall_s for r in kept)
    seen, slack, by_wall = _witness(wall, sum(r.busy_s for r in kept), len(kept))
    if seen < MIN_EVIDENCE_S or claimed >= CLAIM_FLOOR * (seen - slack):
        return ""
    what = "the parent saw" if by_wall else f"the worker ran or waited to run ({wall * 1e3:.3g} ms wall)"
    aside = f" ({late} of {len(rounds)} left out: the parent may have read them late)" if late else ""
    plural = "s" * (len(kept) != 1)
    return (
        f"its clock disagrees with the parent's: {len(kept)} sampling round{plural}{aside} claimed "
        f"{claimed * 1e3:.3g} ms of calls in {seen * 1e3:.3g} ms {what} (under {CLAIM_FLOOR:.0%}); "
        "the time normbench reads was tampered with"
    )


@dataclass
class Judged:
    """What the parent learnt about one measurement from its samples and rounds."""

    wrong: str = ""  # the first failed comparison, for the row's message
    reused: bool = False  # an output changed after the next call: a reused output buffer
    rounds: list[RoundSeen] = field(default_factory=list)
    samples: int = 0
    round_started: float | None = None
    round_sent: float | None = None  # when the worker sent the round's start, by the kernel's stamp
    round_cpu: CpuReading | None = None


def compare(got: list[float] | None, want: np.ndarray, dtype: str) -> float | None:
    """Normwise relative error of sampled values (inf for non-finite or missing values)."""
    if got is None or len(got) != len(want):
        return math.inf
    a = np.asarray(got, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return math.inf
    finite = np.isfinite(want)
    scale = float(np.max(np.abs(want[finite]))) if finite.any() else 0.0
    if scale == 0.0:
        return None
    return float(np.max(np.abs(a[finite] - want[finite]))) / scale


class Verifier:
    """The parent's side: one per worker client. `inputs` when a case starts (the parent builds
    its own inputs while the worker builds its, so no timed call competes with it), `round_begins`
    as a round's timed calls start (after its untimed first call) and `sample` as events come,
    `judge` when the row arrives."""

    def __init__(self, clock: Any, semantics: dict[str, str]) -> None:
        self.clock = clock
        self.semantics = semantics  # implementation -> declared semantics
        self.truth: CaseTruth | None = None
        self.judged: dict[tuple[CaseKey, str], Judged] = {}

    def inputs(self, case: Case) -> None:
        if case.input_kind != "random":
            self.truth = None
            return
        if self.truth is None or self.truth.case != case:
            self.truth = None  # the old case's arrays go before the new ones are made
            self.truth = CaseTruth(case)

    def _of(self, key: CaseKey, impl: str) -> Judged:
        return self.judged.setdefault((key, impl), Judged())

    def round_begins(
        self, key: CaseKey, impl: str, cpu: CpuReading | None = None, sent: float | None = None
    ) -> None:
        """`sent`: when the worker sent the event, as the kernel stamped it (None: unknown)."""
        j = self._of(key, impl)
        j.round_started, j.round_sent, j.round_cpu = self.clock(), sent, cpu

    def sample(
        self, key: CaseKey, impl: str, event: Any, cpu: CpuReading | None = None, sent: float | None = None
    ) -> None:
        """`cpu`: the worker's CPU time as the event was read (None: unknown); `sent`: as in
        `round_begins`. Where the kernel stamped both events, the round is the time between their
        sending, and that alone: a parent that reads late, or reads both at once, moves neither.
        Otherwise it is the time between their reading, or the time the worker's threads ran or
        waited to run in it where that is less."""
        j = self._of(key, impl)
        if event.when == "claim":
            if j.round_started is None:
                return
            if sent is not None and j.round_sent is not None:
                wall, busy = sent - j.round_sent, math.inf
            else:
                wall = self.clock() - j.round_started
                busy = (
                    cpu.wanted_since(j.round_cpu) if cpu is not None and j.round_cpu is not None else math.inf
                )
            j.rounds.append(RoundSeen(event.claimed_s, max(0.0, wall), busy))
            j.round_started = j.round_sent = None
            return
        truth = self.truth
        if truth is None or truth.case.key() != key or impl not in self.semantics or j.wrong:
            return
        j.samples += 1
        checked = [("y", event.y)] if key.mode != "backward" else []
        checked += [("dx", event.dx)] if key.mode != "forward" else []
        for what, got in checked:
            want = truth.expected(self.semantics[impl], event.buffer, event.round_no, what)
            err = compare(got, want, key.dtype)
            tol = truth.op.tolerance[key.dtype]
            if err is not None and err > tol and event.when == "held":
                j.reused = True  # right when returned (its timed sample said so), overwritten since
                return
            if err is not None and err > tol:
                name = "output" if what == "y" else "input gradient"
                detail = "non-finite or missing values" if math.isinf(err) else f"max_rel_err {err:.3g}"
                j.wrong = (
                    f"wrong on a {event.when} call, checked by the parent: its {name} on input layout "
                    f"{event.buffer} ({detail}, over the {key.dtype} tolerance {tol:g})"
                )
                return

    def judge(self, key: CaseKey, impl: str) -> tuple[str, str] | None:
        """(status, message) that replaces an ok row's, or None when nothing was caught."""
        j = self.judged.pop((key, impl), None)
        if j is None:
            return None
        if j.wrong:
            return "wrong", j.wrong
        disagreement = clock_disagrees(j.rounds)
        if disagreement:
            return "error", disagreement
        if j.reused:
            return "note", "returns an output buffer that its next call overwrites (right when returned)"
        return None
