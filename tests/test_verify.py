"""The parent's witness of a row's claimed time: the wall time it saw, or the time the worker's
threads ran or waited to run where that is less (a worker that slept is not called a cheat for it;
one that waited on a loaded machine's run queue is still held to its claim)."""

import os
import time
from types import SimpleNamespace

from bench.cases import CaseKey
from bench.memory import CLOCK_TICK_S, CpuReading, cpu_reading
from bench.timing import Sampler, TimingSettings
from bench.verify import Verifier, rounds_to_judge

KEY = CaseKey("cpu", "float32", "NCHW", "train", (1, 4096, 4, 4))


def judged(rounds, wall_s, cpu_s, claimed_s, cpu_known=True, late=None, waited_s=0.0):
    """A row of `rounds` sampling rounds, each `wall_s` long for the parent, `cpu_s` of CPU for the
    worker (one thread) and `waited_s` on a run queue, `claimed_s` claimed by the worker's clock;
    `late`: round -> (wall, cpu) of a round the parent read late (the worker ran on meanwhile)."""
    now = [0.0]
    verifier = Verifier(lambda: now[0], {"impl": "population/eps@sqrt"})
    cpu = waited = 0.0

    def reading():
        return CpuReading(cpu, {"1": cpu}, {"1": waited}) if cpu_known else None

    for i in range(rounds):
        verifier.round_begins(KEY, "impl", reading())
        seen_wall, seen_cpu = (late or {}).get(i, (wall_s, cpu_s))
        now[0] += seen_wall
        cpu += seen_cpu
        waited += waited_s
        event = SimpleNamespace(when="claim", claimed_s=claimed_s)
        verifier.sample(KEY, "impl", event, reading())
    return verifier.judge(KEY, "impl")


def test_a_short_honest_row_whose_worker_slept_is_not_called_a_cheat():
    # 2 rounds of 0.7 ms of calls in 39 ms of wall time each, the worker on a CPU for 3 ms of each
    # and asleep the rest (as one blocked on a full pipe to a late parent): sleeping is no claim.
    assert judged(2, 0.039, 0.003, 0.0007) is None
    status, message = judged(2, 0.039, 0.003, 0.0007, cpu_known=False)  # the wall time alone
    assert (
        status == "error"
        and "1 sampling round (1 of 2 left out" in message
        and "in 39 ms the parent saw" in message
    )


def test_a_clock_that_reports_a_fiftieth_is_caught_by_the_cpu_time_too():
    status, message = judged(5, 0.02, 0.02, 0.02 / 50)
    assert status == "error" and "its clock disagrees with the parent's: 4 sampling rounds (1 of 5" in message
    status, message = judged(5, 0.05, 0.02, 0.02 / 50)  # waiting too: the CPU time is the witness
    assert status == "error" and "ms the worker ran or waited to run (200 ms wall)" in message
    # A loaded machine (3 test processes and two busy loops on 2 cores): a cheat's rounds of one
    # 10 ms call each, on a CPU for 2.5 ms of them and waiting for one the rest. Its CPU time alone
    # would let it through; the waiting is the witness.
    assert judged(4, 0.010, 0.0025, 0.010 / 50) is None
    status, message = judged(4, 0.010, 0.0025, 0.010 / 50, waited_s=0.0075)
    assert status == "error" and "0.6 ms of calls in 30 ms the parent saw" in message
    status, message = judged(1, 0.02, 0.02, 0.02 / 50)  # one round: nothing is left out
    assert status == "error" and "parent's: 1 sampling round claimed 0.4 ms of calls in 20 ms" in message


class FiftiethClock:
    """Claims a fiftieth of what each sample took."""

    kind = "host"

    def measure(self, run, k):
        t0 = time.perf_counter()
        run(k, True)
        took = (time.perf_counter() - t0) / k / 50
        return took, took


def test_a_row_that_converges_at_once_still_gives_its_parent_enough_rounds_to_judge_its_clock():
    # A smoke run at --max-time 0.05 (rounds of 10 ms, 20 ms at least): a clock reporting a fiftieth
    # claims steady times, which converged after 2 rounds, one of them left out, and 10 ms of
    # evidence convicts no clock: cheat_own_sampler's row went through, in CI's train mode.
    smoke = TimingSettings(warmup_s=0, min_time_s=0.02, max_time_s=0.05, min_samples=5, round_s=0.01)
    for settings in (smoke, TimingSettings(round_s=0.02, min_time_s=0.02)):
        sampler = Sampler(lambda k, sync: time.sleep(2e-4 * k), settings, FiftiethClock(),
                          min_rounds=rounds_to_judge(settings.round_s))  # fmt: skip
        verifier = Verifier(time.perf_counter, {"impl": "population/eps@sqrt"})
        while not sampler.stop_reason:
            verifier.round_begins(KEY, "impl", None)
            before = sampler.sampled_s
            sampler.round()
            claimed = SimpleNamespace(when="claim", claimed_s=sampler.sampled_s - before)
            verifier.sample(KEY, "impl", claimed, None)
        assert sampler.stop_reason == "converged", sampler.stop_reason
        status, message = verifier.judge(KEY, "impl")
        assert status == "error" and "its clock disagrees with the parent's" in message, sampler.rounds


def test_a_round_or_two_with_a_scheduler_slice_between_their_calls_convict_no_one():
    # Smoke runs beside a test suite and two busy loops on 2 cores: an honest round claimed 0.55 ms
    # in 10.1 ms (one of two; the other was as short). Under 20 ms of evidence nothing is judged.
    assert judged(2, 0.0101, 0.0101, 0.00055) is None
    status, message = judged(5, 0.0101, 0.0101, 0.00055)  # the same in every round of five is
    assert status == "error" and "4 sampling rounds (1 of 5 left out" in message


def test_a_round_the_parent_read_late_does_not_make_an_honest_row_a_cheat():
    # CI beside a test suite on 2 cores: the parent read one of two rounds of 8.5 ms of calls
    # (12 ms wall, 24 ms of CPU on 2 threads) after 400 ms, the worker having timed three other
    # implementations meanwhile.
    assert judged(2, 0.012, 0.024, 0.0085, late={1: (0.4, 0.11)}) is None
    assert judged(8, 0.012, 0.024, 0.0085, late={1: (0.4, 0.11), 6: (0.3, 0.1)}) is None
    # A clock that lies in every round but one is still caught; one honest round is not enough.
    status, message = judged(8, 0.012, 0.024, 0.0085 / 50, late={3: (0.012, 0.024)})
    assert status == "error" and "6 sampling rounds (2 of 8 left out" in message


def test_cpu_time_counts_threads_that_ended_from_the_coarse_total():
    before = CpuReading(1.0, {"1": 0.5, "2": 0.5})
    after = CpuReading(1.2, {"1": 0.51})  # thread 2 ended after working
    assert abs(after.since(before) - (0.2 - CLOCK_TICK_S)) < 1e-12
    assert abs(CpuReading(1.0, {"1": 0.55}).since(CpuReading(1.0, {"1": 0.5})) - 0.05) < 1e-12
    # waiting for a CPU counts where the thread lived through both readings
    later = CpuReading(1.0, {"1": 0.55, "3": 0.1}, {"1": 0.3, "3": 0.2})
    assert abs(later.wanted_since(CpuReading(1.0, {"1": 0.5}, {"1": 0.1})) - 0.25) < 1e-12


def test_cpu_reading_of_a_real_process_follows_its_work():
    first = cpu_reading(os.getpid())
    assert first is not None and str(os.getpid()) in first.threads
    deadline = time.thread_time() + 0.05
    while time.thread_time() < deadline:
        pass
    later = cpu_reading(os.getpid())
    assert later is not None and later.since(first) >= 0.04
    assert later.wanted_since(first) >= later.since(first) and set(later.waited) == set(later.threads)


def test_the_kernels_send_stamps_are_the_witness_when_the_parent_reads_late():
    """A parent that read each round's start and end at once (behind a loaded machine) saw rounds
    of no time, and the worker's CPU none either; the stamps say how long the rounds took."""
    now = [0.0]
    verifier = Verifier(lambda: now[0], {"impl": "population/eps@sqrt"})
    still = CpuReading(1.0, {"1": 1.0}, {"1": 0.0})
    for i in range(4):
        verifier.round_begins(KEY, "impl", still, sent=100.0 + i * 0.02)
        fiftieth = SimpleNamespace(when="claim", claimed_s=0.015 / 50)
        verifier.sample(KEY, "impl", fiftieth, still, sent=100.0 + i * 0.02 + 0.015)
    status, message = verifier.judge(KEY, "impl")
    assert status == "error" and "claimed 0.9 ms of calls in 45 ms the parent saw" in message
    for i in range(4):  # the same honest: claims its 15 ms rounds
        verifier.round_begins(KEY, "impl", still, sent=200.0 + i * 0.02)
        verifier.sample(
            KEY, "impl", SimpleNamespace(when="claim", claimed_s=0.0149), still, sent=200.0 + i * 0.02 + 0.015
        )
    assert verifier.judge(KEY, "impl") is None
