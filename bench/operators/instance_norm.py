"""InstanceNorm without affine: each (sample, channel) plane of H*W elements minus its mean,
divided by its standard deviation (population variance, eps inside the sqrt)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bench.operators._normalization import Normalization

if TYPE_CHECKING:
    from bench.cases import Case


class InstanceNorm(Normalization):
    """One group per channel: each plane normalized on its own."""

    __slots__ = ()

    name = "instance_norm"
    title = "InstanceNorm"
    edge_cases = {
        "one_pixel": ((2, 3, 1, 1), "float32"),  # a 1x1 plane: the unbiased std divides by zero
        "constant": ((2, 4, 8, 8), "float32"),  # std 0: eps alone decides
        "large_offset": ((2, 4, 16, 16), "float32"),  # 1e4 + 0.01*noise: one-pass variance cancels
        "fp16_range": ((2, 4, 16, 16), "float16"),  # values near float16's max: squares overflow
    }

    def groups(self, shape: tuple[int, ...], case: Case) -> int:
        return shape[1]  # one plane per channel

    def one_group(self) -> str:
        return ""  # one plane: one channel

    def make_input(self, case: Case) -> np.ndarray:
        """Per-plane offsets and scales, never zeros, seeded.

        Scales span 0.1..4 so that eps placement and biased/unbiased std both change the output by
        far more than float32 rounding; offsets (|mean| 0.5..2) make one-pass variance visible.
        """
        rng = np.random.default_rng(case.seed)
        n, c, h, w = case.shape
        offset = rng.uniform(0.5, 2.0, (n, c, 1, 1)) * rng.choice([-1.0, 1.0], (n, c, 1, 1))
        scale = np.exp(rng.uniform(np.log(0.1), np.log(4.0), (n, c, 1, 1)))
        return offset + scale * rng.standard_normal((n, c, h, w))

    def make_edge_input(self, kind: str, case: Case) -> np.ndarray:
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
        raise ValueError(f"unknown edge case {kind!r}; expected one of: {', '.join(self.edge_cases)}")

    def edge_tolerance(self, kind: str, dtype: str) -> float:
        """At a 1e4 offset float32 cannot hold the mean closer than ~5 % of the 0.01 std, so even
        an exact two-pass method is off by ~0.1; one-pass variance is off by far more (or NaN).
        Elsewhere: 10x the dtype's tolerance."""
        return 0.5 if kind == "large_offset" else 10 * self.tolerance[dtype]


OPERATOR = InstanceNorm()
