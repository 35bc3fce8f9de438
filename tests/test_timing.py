"""Statistics and the stopping rule, with a fake clock: no wall-clock assertions."""

import numpy as np
import pytest

from bench.timing import Sampler, TimingSettings, median_ci, median_rel_ci, summarize


class FakeClock:
    kind = "fake"

    def __init__(self, values):
        self.values = iter(values)

    def measure(self, run, k):
        v = next(self.values)
        return v, v


def test_summarize_known_samples():
    st = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert st.median == 3.0
    assert st.iqr == 2.0
    assert st.min == 1.0
    assert st.rel_iqr == pytest.approx(2 / 3)
    assert st.n == 5


def test_median_ci_contains_median_and_shrinks():
    rng = np.random.default_rng(0)
    small = rng.normal(1.0, 0.1, 20)
    large = rng.normal(1.0, 0.1, 2000)
    lo_s, hi_s = median_ci(small)
    lo_l, hi_l = median_ci(large)
    assert lo_s <= np.median(small) <= hi_s
    assert hi_l - lo_l < (hi_s - lo_s) / 4


def test_the_stopping_rules_ci_is_summarizes_to_the_last_bit():
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 4, 5, 10, 11, 100, 1001):
        xs = list(rng.lognormal(-9, 0.3, n))
        assert median_rel_ci(sorted(xs)) == summarize(xs).rel_ci, n
    assert median_rel_ci([]) is None and median_rel_ci([0.0, 0.0]) is None


def _sampler(values, **kw):
    settings = TimingSettings(warmup_s=0, min_time_s=0, round_s=1e9, **kw)
    return Sampler(run=lambda k, s: None, settings=settings, clock=FakeClock(values))


def test_steady_samples_converge():
    s = _sampler([1e-3] * 100, min_samples=10, max_samples=100)
    s.round()
    assert s.stop_reason == "converged"
    assert len(s.device_samples) == 10


def test_noisy_samples_stop_at_max_samples():
    rng = np.random.default_rng(1)
    s = _sampler(list(rng.uniform(1e-3, 1e-2, 1000)), min_samples=5, max_samples=50, max_time_s=1e9)
    s.round()
    assert s.stop_reason == "max_samples"
    assert len(s.device_samples) == 50


def test_max_time_ends_a_slow_case():
    s = _sampler([1.0] * 10, min_samples=100, max_time_s=2.5)
    s.round()
    assert s.stop_reason == "max_time"
    assert len(s.device_samples) == 3


def test_calls_batched_when_faster_than_timer():
    settings = TimingSettings(warmup_s=0.01)
    s = Sampler(run=lambda k, sync: None, settings=settings, min_sample_s=1e-3)
    s.warm_up()
    assert s.calls_per_sample > 10


@pytest.mark.parametrize(("max_time_s", "calls"), [(2.0, 50), (0.02, 20)])
def test_the_pass_over_the_rotating_inputs_is_bounded_by_the_sampling_budget(monkeypatch, max_time_s, calls):
    """Warm-up touches every rotating buffer, for at most ten budgets, and never longer than the
    case may sample (1 ms calls, 256 buffers: neither bound lets the pass finish)."""
    import bench.timing

    now = [0.0]
    monkeypatch.setattr(bench.timing, "read_clock", lambda: now[0])
    made = []

    def run(k, sync):
        made.append(k)
        now[0] += 1e-3

    settings = TimingSettings(warmup_s=0.005, max_time_s=max_time_s)
    s = Sampler(run=run, settings=settings, min_warmup_calls=256)
    s.warm_up()
    assert len(made) == pytest.approx(calls, abs=1)
