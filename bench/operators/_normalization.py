"""What the normalizations share: y = (x - mean) / s(var) over groups of each sample's elements,
the semantics an implementation may have (population or unbiased variance; eps inside the sqrt
or added to the std), the float64 output and input gradient, and semantics detection."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from bench.operators import Operator, Reference
from bench.reference import RESOLUTION, Detected

if TYPE_CHECKING:
    from bench.cases import Case

SEMANTICS = tuple(f"{std}/eps@{at}" for std in ("population", "unbiased") for at in ("sqrt", "std"))
CANONICAL = "population/eps@sqrt"  # InstanceNorm, GroupNorm, LayerNorm over (H, W)
# Normwise relative tolerance, max|out - ref| / max|ref|, per dtype: about 100x each format's
# rounding unit, so accumulation order passes and a wrong formula (>= 1e-3 at these inputs) fails
# in float32.
TOLERANCE = {"float32": 2e-4, "float16": 1e-2, "bfloat16": 5e-2}
DECISIVE_RATIO = 4.0  # the best semantics must fit this many times better than the runner-up


def _scale(ss: np.ndarray, count: int, eps: float, semantics: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(variance, the divisor s, degrees of freedom) of each group under `semantics`."""
    std, at = semantics.split("/eps@")
    dof = count - (1 if std == "unbiased" else 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = ss / dof
        s = np.sqrt(var + eps) if at == "sqrt" else np.sqrt(var) + eps
    return var, s, dof


class GroupReference(Reference):
    """The float64 reference of one case's input, normalized over `groups` groups of each sample
    (x viewed as (N, groups, elements)): the centred input and its group statistics computed once,
    each semantics' output and gradient as first asked for. A large case's check is then one
    conversion and a few passes per implementation instead of a dozen full-size float64 passes."""

    def __init__(self, x: np.ndarray, eps: float, groups: int, g: np.ndarray | None = None) -> None:
        super().__init__(x, g)
        self.eps, self.shape = eps, x.shape
        self.xg = x.reshape(x.shape[0], groups, -1)
        self.d = self.xg - self.xg.mean(axis=2, keepdims=True)
        self.ss = (self.d * self.d).sum(axis=2, keepdims=True)
        self.count = self.xg.shape[2]
        self._outputs: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}

    def scale(self, semantics: str) -> tuple[np.ndarray, np.ndarray, int]:
        return _scale(self.ss, self.count, self.eps, semantics)

    def _output(self, semantics: str) -> np.ndarray:
        if semantics not in self._outputs:
            with np.errstate(divide="ignore", invalid="ignore"):
                self._outputs[semantics] = (self.d / self.scale(semantics)[1]).reshape(self.shape)
        return self._outputs[semantics]

    def _grad(self, semantics: str) -> np.ndarray:
        """dL/dx for y = d / s(var), d = x - mean, given dL/dy = g (derivation in notes/gradient.md)."""
        if semantics not in self._grads:
            var, s, dof = self.scale(semantics)
            at = semantics.split("/eps@")[1]
            g = np.asarray(self.g).reshape(self.xg.shape)
            with np.errstate(divide="ignore", invalid="ignore"):
                r = 1.0 / s
                ds_dvar = 0.5 / np.sqrt(var + self.eps) if at == "sqrt" else 0.5 / np.sqrt(var)
                dr_dvar = -(r * r) * ds_dvar
                g_centered = g - g.mean(axis=2, keepdims=True)
                gd = (g * self.d).sum(axis=2, keepdims=True)
                dx = r * g_centered + gd * dr_dvar * 2.0 * self.d / dof
            self._grads[semantics] = dx.reshape(self.shape)
        return self._grads[semantics]

    def detect(self, y: np.ndarray, dtype: str = "float32") -> Detected:
        """Which std and eps placement the output y really computed, judged per group.

        y ~ d / s with one s per group; the least-squares s_hat = sum(d^2) / sum(d*y) is compared
        with each candidate's s. Candidates whose scales differ from the best one's by less than
        the dtype's rounding unit (RMS over groups) cannot be told apart at this dtype and group
        size: that is "indistinguishable", not a mismatch. Otherwise: the best candidate,
        "ambiguous: a | b" when the runner-up fits almost as well, or "other" when nothing fits (a
        wrong formula, or garbage).
        """
        y = np.asarray(y, dtype=np.float64).reshape(self.xg.shape)
        dd = self.ss[:, :, 0]
        dy = (self.d * y).sum(axis=2)
        valid = np.isfinite(dy) & (np.abs(dy) > 0) & (dd > 0)
        if not valid.any():
            return Detected("other", ())
        s_hat = dd[valid] / dy[valid]
        scales = {sem: self.scale(sem)[1][:, :, 0][valid] for sem in SEMANTICS}
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
            label = f"indistinguishable at {dtype}, {self.count}-element planes: {' | '.join(tied)}"
            return Detected(label, tied)
        if scores[second] < DECISIVE_RATIO * scores[best]:
            return Detected(f"ambiguous: {best} | {second}", (best, second))
        return Detected(best, (best,))


class Normalization(Operator):
    """The normalizations' shared semantics, tolerance and reference; a subclass says how many
    groups a case's samples are normalized over (`groups`), its inputs and its edge cases."""

    __slots__ = ()

    semantics = SEMANTICS
    canonical = CANONICAL
    semantics_help = "population or unbiased variance; eps inside the sqrt or added to the std"
    tolerance = TOLERANCE
    edge_help = {
        "one_pixel": "1x1 planes: the unbiased std divides by zero where a group is one element",
        "constant": "std 0: eps decides",
        "large_offset": "1e4 + 0.01·noise: one-pass variance cancels",
        "fp16_range": "float16 values near its maximum: squares overflow",
    }

    def groups(self, shape: tuple[int, ...], case: Case) -> int:
        """How many groups each sample of an input of `shape` (logical NCHW) is normalized over."""
        raise NotImplementedError

    def reference(self, x: np.ndarray, case: Case, g: np.ndarray | None = None) -> Reference:
        return GroupReference(x, case.eps, self.groups(x.shape, case), g)

    def one_group(self) -> str:
        """The op_params of a case whose channels all form one group (see support)."""
        raise NotImplementedError

    def support(self, case: Case, plane: int) -> tuple[np.ndarray, Case]:
        """The planes of `plane`'s group, normalized as one group."""
        n, c, h, w = case.shape
        size = c // self.groups(case.shape, case)
        first = plane - plane % size
        return np.arange(first, first + size), replace(
            case, shape=(1, size, h, w), op_params=self.one_group()
        )
