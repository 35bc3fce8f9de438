"""Array helpers shared by the adapters: NCHW <-> physical layout, input fingerprints."""

from __future__ import annotations

import numpy as np

from bench.cases import Case
from bench.frameworks import OutputError


def to_nchw(arr: np.ndarray, case: Case, physical: bool, what: str = "output") -> np.ndarray:
    """Float64 NCHW copy of an output; `physical` when the framework's shape follows the layout."""
    expected = case.physical_shape if physical else case.shape
    if tuple(arr.shape) != tuple(expected):
        raise OutputError(f"{what} has shape {tuple(arr.shape)}; expected {tuple(expected)}")
    if physical and case.layout == "NHWC":
        arr = arr.transpose(0, 3, 1, 2)
    return np.asarray(arr, dtype=np.float64)


def check_shape(shape: tuple[int, ...], case: Case, physical: bool, what: str = "output") -> None:
    expected = case.physical_shape if physical else case.shape
    if tuple(shape) != tuple(expected):
        raise OutputError(f"{what} has shape {tuple(shape)}; expected {tuple(expected)}")


def physical_index(idx: tuple[np.ndarray, ...], case: Case, physical: bool) -> tuple[np.ndarray, ...]:
    """Logical (n, c, h, w) positions in the order the framework's array is indexed."""
    n, c, h, w = idx
    return (n, h, w, c) if physical and case.layout == "NHWC" else (n, c, h, w)


def from_nchw(x64: np.ndarray, case: Case, physical: bool) -> np.ndarray:
    return np.ascontiguousarray(x64.transpose(0, 2, 3, 1)) if physical and case.layout == "NHWC" else x64


def fingerprint_positions(numel: int, count: int = 4096) -> slice:
    """A strided sample of a flat buffer: cheap to compare every round, catches in-place writes."""
    return slice(0, numel, max(1, numel // count))
