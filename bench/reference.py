"""Float64 NumPy reference (forward and gradient), the shared inputs, and semantics detection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.cases import Case

SEMANTICS = tuple(f"{std}/eps@{at}" for std in ("population", "unbiased") for at in ("sqrt", "std"))
CANONICAL = "population/eps@sqrt"  # InstanceNorm, GroupNorm(C groups), LayerNorm over (H, W)
# A calibration implementation's semantics (role "calibration", std "copy"): its answer is its
# input (forward) and the upstream gradient (backward), checked as strictly as a normalization.
COPY = "copy"
# Normwise relative tolerance, max|out - ref| / max|ref|, per dtype: about 100x each format's
# rounding unit, so accumulation order passes and a wrong formula (>= 1e-3 at these inputs) fails
# in float32.
TOLERANCE = {"float32": 2e-4, "float16": 1e-2, "bfloat16": 5e-2}
DECISIVE_RATIO = 4.0  # the best semantics must fit this many times better than the runner-up


def make_input(case: Case) -> np.ndarray:
    """The case's input as float64 NCHW: per-plane offsets and scales, never zeros, seeded.

    Scales span 0.1..4 so that eps placement and biased/unbiased std both change the output by
    far more than float32 rounding; offsets (|mean| 0.5..2) make one-pass variance visible.
    """
    rng = np.random.default_rng(case.seed)
    n, c, h, w = case.shape
    offset = rng.uniform(0.5, 2.0, (n, c, 1, 1)) * rng.choice([-1.0, 1.0], (n, c, 1, 1))
    scale = np.exp(rng.uniform(np.log(0.1), np.log(4.0), (n, c, 1, 1)))
    return offset + scale * rng.standard_normal((n, c, h, w))


# Inputs that break implementations; each is judged for finiteness and error, never timed.
EDGE_CASES = {
    "one_pixel": ((2, 3, 1, 1), "float32"),  # a 1x1 plane: the unbiased std divides by zero
    "constant": ((2, 4, 8, 8), "float32"),  # std 0: eps alone decides
    "large_offset": ((2, 4, 16, 16), "float32"),  # 1e4 + 0.01*noise: one-pass variance cancels
    "fp16_range": ((2, 4, 16, 16), "float16"),  # values near float16's max: squares overflow
}


def edge_cases(
    device: str, layouts: list[str] | tuple[str, ...], eps: float, dtypes: tuple[str, ...] | None = None
) -> list[Case]:
    """The edge-case inputs on `device` in each layout (forward); only those of `dtypes` if given."""
    return [
        Case(shape=shape, dtype=dtype, layout=lay, mode="forward", device=device, eps=eps, input_kind=kind)
        for kind, (shape, dtype) in EDGE_CASES.items()
        if dtypes is None or dtype in dtypes
        for lay in layouts
    ]


def edge_tolerance(kind: str, dtype: str) -> float:
    """Max abs error for "safe". At a 1e4 offset float32 cannot hold the mean closer than ~5 % of
    the 0.01 std, so even an exact two-pass method is off by ~0.1; one-pass variance is off by far
    more (or NaN). Elsewhere: 10x the dtype's tolerance."""
    return 0.5 if kind == "large_offset" else 10 * TOLERANCE[dtype]


UNSAFE_ABS_ERR = 1.0  # beyond this (or non-finite) an output is unusable, not just inexact


def make_edge_input(kind: str, case: Case) -> np.ndarray:
    rng = np.random.default_rng(case.seed)
    shape = case.shape
    if kind == "one_pixel":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "constant":
        return np.broadcast_to(rng.uniform(-3, 3, shape[:2] + (1, 1)), shape).copy()
    if kind == "large_offset":
        return 1e4 + 0.01 * rng.standard_normal(shape)
    if kind == "fp16_range":
        return 3.0e4 + 2.0e4 * rng.uniform(-1, 1, shape)
    raise ValueError(f"unknown edge case {kind!r}; expected one of: {', '.join(EDGE_CASES)}")


def edge_reference(x: np.ndarray, eps: float, semantics: str) -> np.ndarray:
    """The declared semantics' answer where it is defined, else the canonical one (what a safe
    implementation returns, e.g. 0 for a 1x1 plane)."""
    ref = normalize(x, eps, semantics)
    return ref if np.all(np.isfinite(ref)) else normalize(x, eps, CANONICAL)


def make_upstream_grad(case: Case) -> np.ndarray:
    return np.random.default_rng(case.seed + 1).standard_normal(case.shape)


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centred input and each plane's sum of squares about its mean."""
    d = x - x.mean(axis=(2, 3), keepdims=True)
    return d, (d * d).sum(axis=(2, 3), keepdims=True)


def _scale(ss: np.ndarray, count: int, eps: float, semantics: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(variance, the divisor s, degrees of freedom) of each plane under `semantics`."""
    std, at = semantics.split("/eps@")
    dof = count - (1 if std == "unbiased" else 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = ss / dof
        s = np.sqrt(var + eps) if at == "sqrt" else np.sqrt(var) + eps
    return var, s, dof


def _stats(x: np.ndarray, eps: float, semantics: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    d, ss = _moments(x)
    var, s, dof = _scale(ss, x.shape[2] * x.shape[3], eps, semantics)
    return d, var, s, dof


def _grad(
    d: np.ndarray, var: np.ndarray, s: np.ndarray, dof: int, g: np.ndarray, eps: float, semantics: str
) -> np.ndarray:
    """dL/dx for y = d / s(var), d = x - mean, given dL/dy = g (derivation in notes/gradient.md)."""
    at = semantics.split("/eps@")[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = 1.0 / s
        ds_dvar = 0.5 / np.sqrt(var + eps) if at == "sqrt" else 0.5 / np.sqrt(var)
        dr_dvar = -(r * r) * ds_dvar
        g_centered = g - g.mean(axis=(2, 3), keepdims=True)
        gd = (g * d).sum(axis=(2, 3), keepdims=True)
        return r * g_centered + gd * dr_dvar * 2.0 * d / dof


def normalize(x: np.ndarray, eps: float, semantics: str = CANONICAL) -> np.ndarray:
    if semantics == COPY:
        return np.array(x, dtype=np.float64)
    d, _, s, _ = _stats(x, eps, semantics)
    with np.errstate(divide="ignore", invalid="ignore"):
        return d / s


def normalize_grad(x: np.ndarray, g: np.ndarray, eps: float, semantics: str = CANONICAL) -> np.ndarray:
    """dL/dx for y = d / s(var), d = x - mean, given dL/dy = g."""
    if semantics == COPY:
        return np.array(g, dtype=np.float64)
    d, var, s, dof = _stats(x, eps, semantics)
    return _grad(d, var, s, dof, g, eps, semantics)


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


def detect_semantics(x: np.ndarray, y: np.ndarray, eps: float, dtype: str = "float32") -> Detected:
    """Which std and eps placement the output y really computed from x (see `CaseReference.detect`)."""
    return CaseReference(x, eps).detect(y, dtype)


class CaseReference:
    """The float64 reference of one case's input, computed once and shared by every implementation
    checked on it: the centred input and its plane statistics, and each semantics' output and
    gradient as first asked for. A large case's check is then one conversion and a few passes per
    implementation instead of a dozen full-size float64 passes."""

    def __init__(self, x: np.ndarray, eps: float, g: np.ndarray | None = None) -> None:
        self.x, self.eps, self.g = x, eps, g
        self.d, self.ss = _moments(x)
        self._outputs: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}

    def _scale(self, semantics: str) -> tuple[np.ndarray, np.ndarray, int]:
        return _scale(self.ss, self.x.shape[2] * self.x.shape[3], self.eps, semantics)

    def output(self, semantics: str = CANONICAL) -> np.ndarray:
        if semantics == COPY:
            return self.x
        if semantics not in self._outputs:
            with np.errstate(divide="ignore", invalid="ignore"):
                self._outputs[semantics] = self.d / self._scale(semantics)[1]
        return self._outputs[semantics]

    def grad(self, semantics: str = CANONICAL) -> np.ndarray:
        if self.g is None:
            raise ValueError("no upstream gradient: a forward case has no input gradient")
        if semantics == COPY:
            return self.g
        if semantics not in self._grads:
            var, s, dof = self._scale(semantics)
            self._grads[semantics] = _grad(self.d, var, s, dof, self.g, self.eps, semantics)
        return self._grads[semantics]

    def detect(self, y: np.ndarray, dtype: str = "float32") -> Detected:
        """Which std and eps placement the output y really computed, judged per plane.

        y ~ d / s with one s per plane; the least-squares s_hat = sum(d^2) / sum(d*y) is compared
        with each candidate's s. Candidates whose scales differ from the best one's by less than
        the dtype's rounding unit (RMS over planes) cannot be told apart at this dtype and plane
        size: that is "indistinguishable", not a mismatch. Otherwise: the best candidate,
        "ambiguous: a | b" when the runner-up fits almost as well, or "other" when nothing fits (a
        wrong formula, or garbage).
        """
        y = np.asarray(y, dtype=np.float64)
        dd = self.ss[:, :, 0, 0]
        dy = (self.d * y).sum(axis=(2, 3))
        valid = np.isfinite(dy) & (np.abs(dy) > 0) & (dd > 0)
        if not valid.any():
            return Detected("other", ())
        s_hat = dd[valid] / dy[valid]
        scales = {sem: self._scale(sem)[1][:, :, 0, 0][valid] for sem in SEMANTICS}
        scores = {}
        for sem, s in scales.items():
            rel = s_hat / s - 1.0
            scores[sem] = float(np.sqrt(np.mean(rel * rel))) if np.all(np.isfinite(rel)) else np.inf
        ranked = sorted(scores, key=scores.__getitem__)
        best, second = ranked[0], ranked[1]
        if not np.isfinite(scores[best]) or scores[best] > 0.05:
            return Detected("other", ())
        resolution = RESOLUTION.get(dtype, RESOLUTION["float32"])
        with np.errstate(divide="ignore", invalid="ignore"):
            alike = [
                sem
                for sem in ranked[1:]
                if np.isfinite(scores[sem])
                and float(np.sqrt(np.mean((scales[sem] / scales[best] - 1.0) ** 2))) < resolution
            ]
        if alike:
            tied = tuple(sorted((best, *alike)))
            plane = self.x.shape[2] * self.x.shape[3]
            return Detected(f"indistinguishable at {dtype}, {plane}-element planes: {' | '.join(tied)}", tied)
        if scores[second] < DECISIVE_RATIO * scores[best]:
            return Detected(f"ambiguous: {best} | {second}", (best, second))
        return Detected(best, (best,))
