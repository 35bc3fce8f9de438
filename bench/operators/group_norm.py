"""GroupNorm without affine: each sample's channels in `num_groups` consecutive groups, each
group's C/G planes normalized together (population variance, eps inside the sqrt). One group is
LayerNorm over (C, H, W); C groups is InstanceNorm."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bench.operators._normalization import Normalization
from bench.operators.instance_norm import OPERATOR as INSTANCE_NORM

if TYPE_CHECKING:
    from bench.cases import Case


class GroupNorm(Normalization):
    """num_groups groups of C / num_groups channels per sample."""

    __slots__ = ()

    name = "group_norm"
    title = "GroupNorm"
    params = {"num_groups": 32}
    check_shapes = ((2, 64, 6, 8),)  # 64 channels: every G that divides 64
    # GroupNorm(32)'s home: diffusion UNet blocks, channels from 320 to 1280 (every C a multiple of
    # 32), sized for a CPU and, on a GPU, as Stable Diffusion's UNet runs them at 512x512.
    presets = {
        "unet": {
            "cpu": [(2, 320, 32, 32), (2, 640, 16, 16), (2, 1280, 8, 8)],
            "cuda": [(16, 320, 64, 64), (16, 640, 32, 32), (16, 1280, 16, 16), (16, 1280, 8, 8)],
        }
    }
    # The edge cases' shapes hold 64 channels: every G that divides 64 plans them (one_pixel with
    # G = 64 is InstanceNorm's 1x1 plane, where the unbiased std divides by zero).
    edge_cases = {
        "one_pixel": ((2, 64, 1, 1), "float32"),
        "constant": ((2, 64, 4, 4), "float32"),
        "large_offset": ((2, 64, 8, 8), "float32"),
        "fp16_range": ((2, 64, 8, 8), "float16"),
    }

    def groups(self, shape: tuple[int, ...], case: Case) -> int:
        return case.params()["num_groups"]

    def one_group(self) -> str:
        return "num_groups=1"

    def unplannable(self, shape: tuple[int, int, int, int], values: dict[str, int]) -> str:
        g, c = values["num_groups"], shape[1]
        return "" if c % g == 0 else f"C={c} is not divisible by num_groups={g}"

    def make_input(self, case: Case) -> np.ndarray:
        """InstanceNorm's inputs: per-plane offsets and scales, so a group's planes differ."""
        return INSTANCE_NORM.make_input(case)

    def make_edge_input(self, kind: str, case: Case) -> np.ndarray:
        return INSTANCE_NORM.make_edge_input(kind, case)

    def edge_tolerance(self, kind: str, dtype: str) -> float:
        return INSTANCE_NORM.edge_tolerance(kind, dtype)


OPERATOR = GroupNorm()
