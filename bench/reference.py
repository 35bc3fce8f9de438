"""What every operator's checking shares: accuracy of an output against a float64 reference, the
detection record, the calibration semantics. Each operator's own reference, inputs, semantics and
tolerances live in its file under bench/operators/."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A calibration implementation's semantics (role "calibration", std "copy"): its answer is its
# input (forward) and the upstream gradient (backward), checked as strictly as the operator.
COPY = "copy"
UNSAFE_ABS_ERR = 1.0  # beyond this (or non-finite) an output is unusable, not just inexact


@dataclass(frozen=True)
class Accuracy:
    max_abs_err: float | None
    max_rel_err: float | None
    nonfinite_outputs: int


def accuracy(out: np.ndarray, ref: np.ndarray) -> Accuracy:
    """Errors over the finite elements; non-finite outputs are counted, not averaged in."""
    out = np.asarray(out, dtype=np.float64)
    out_finite = np.isfinite(out)
    nonfinite = int(out.size - np.count_nonzero(out_finite))
    ok = out_finite & np.isfinite(ref)
    if not ok.any():
        return Accuracy(None, None, nonfinite)
    if ok.all():  # the usual case: no masked copies of two full-size arrays
        abs_err = float(np.max(np.abs(out - ref)))
        scale = float(np.max(np.abs(ref)))
    else:
        abs_err = float(np.max(np.abs(out[ok] - ref[ok])))
        scale = float(np.max(np.abs(ref[ok])))
    return Accuracy(abs_err, abs_err / scale if scale > 0 else None, nonfinite)


# Unit roundoff of each dtype: two candidate scales closer than this cannot be told apart.
RESOLUTION = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


@dataclass(frozen=True)
class Detected:
    """What an output really computes. `candidates`: the semantics it is consistent with (one when
    decisive, several when a tie or indistinguishable at this dtype, none for "other")."""

    label: str
    candidates: tuple[str, ...]

    def mismatches(self, declared: str) -> bool:
        return declared not in self.candidates
