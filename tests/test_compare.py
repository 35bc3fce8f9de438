"""compare: run-to-run noise is absorbed, a real slowdown is still caught."""

import numpy as np
import pytest

from bench.compare import classify, compare_rows, estimate_run_noise, parse_run_noise, widen
from bench.errors import BenchError
from bench.results import Row


def _rows(factors, seed):
    """One row per factor: 40 samples around 1 ms x factor, with 1 % in-run noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, f in enumerate(factors):
        samples = tuple(float(s) for s in 1e-3 * f * (1 + 0.01 * rng.standard_normal(40)))
        rows.append(
            Row(
                impl=f"impl{i}", framework="torch", backend="eager", device="cpu", dtype="float32",
                layout="NCHW", mode="forward", shape=(1, 2, 3, 4), status="ok",
                time_median_s=float(np.median(samples)), samples_s=samples,
            )
        )  # fmt: skip
    return rows


def test_run_wide_noise_is_same_and_a_real_slowdown_is_slower():
    rng = np.random.default_rng(7)
    drift = np.exp(0.05 * rng.standard_normal(30))  # whole rows move by ~5 % between runs
    new_factors = drift.copy()
    new_factors[3] *= 1.5
    base, new = _rows(np.ones(30), 1), _rows(new_factors, 2)
    results, sigma = compare_rows(base, new, threshold=0.10)
    assert 0.02 < sigma < 0.10
    verdicts = {c["impl"]: c["verdict"] for c in results}
    assert verdicts.pop("impl3") == "slower"
    assert list(verdicts.values()).count("same") >= 0.8 * len(verdicts)
    assert "slower" not in verdicts.values()


def test_without_run_noise_the_in_run_interval_decides():
    base, new = _rows(np.ones(30), 1), _rows(np.full(30, 1.08), 2)
    results, sigma = compare_rows(base, new, threshold=0.05, run_noise=0.0)
    assert sigma == 0.0 and all(c["verdict"] == "slower" for c in results)
    # A change that moves every row alike is not noise: the estimate stays small and it is caught.
    results, sigma = compare_rows(base, new, threshold=0.05)
    assert sigma < 0.01 and all(c["verdict"] == "slower" for c in results)


def test_noise_estimate_needs_enough_rows_and_widening_is_symmetric_in_log_space():
    assert estimate_run_noise([0.1, -0.1, 0.2]) == 0.0
    lo, hi = widen(1.0, 1.0, 1.0, 0.05)
    assert lo == pytest.approx(np.exp(-1.96 * 0.05)) and hi == pytest.approx(np.exp(1.96 * 0.05))
    assert classify(1.02, 0.9, 1.15, 0.05) == "same"  # holds 1, estimate within the band
    assert classify(1.08, 0.97, 1.2, 0.05) == "ambiguous"
    assert classify(1.3, 1.1, 1.5, 0.05) == "slower" and classify(0.7, 0.6, 0.9, 0.05) == "faster"


@pytest.mark.parametrize("text", ["loud", "150%", "-1%"])
def test_bad_run_noise_is_a_clear_error(text):
    with pytest.raises(BenchError, match="--run-noise"):
        parse_run_noise(text)
