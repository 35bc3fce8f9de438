"""InstanceNorm's float64 reference through its operator (bench/operators/instance_norm.py), as
the tests call it: plain functions of arrays and eps."""

from __future__ import annotations

import numpy as np

from bench import operators
from bench.cases import Case
from bench.operators._normalization import CANONICAL, SEMANTICS, TOLERANCE
from bench.reference import Detected

__all__ = ["CANONICAL", "EDGE_CASES", "OP", "SEMANTICS", "TOLERANCE"]

OP = operators.get("instance_norm")
EDGE_CASES = OP.edge_cases


def _case(x: np.ndarray, eps: float) -> Case:
    return Case(shape=tuple(x.shape), eps=eps)  # type: ignore[arg-type]


def make_input(case: Case) -> np.ndarray:
    return OP.make_input(case)


def make_upstream_grad(case: Case) -> np.ndarray:
    return OP.make_upstream_grad(case)


def make_edge_input(kind: str, case: Case) -> np.ndarray:
    return OP.make_edge_input(kind, case)


def edge_tolerance(kind: str, dtype: str) -> float:
    return OP.edge_tolerance(kind, dtype)


def normalize(x: np.ndarray, eps: float, semantics: str = CANONICAL) -> np.ndarray:
    return OP.reference(x, _case(x, eps)).output(semantics)


def normalize_grad(x: np.ndarray, g: np.ndarray, eps: float, semantics: str = CANONICAL) -> np.ndarray:
    return OP.reference(x, _case(x, eps), g).grad(semantics)


def detect_semantics(x: np.ndarray, y: np.ndarray, eps: float, dtype: str = "float32") -> Detected:
    return OP.reference(x, _case(x, eps)).detect(y, dtype)


def edge_reference(x: np.ndarray, eps: float, semantics: str) -> np.ndarray:
    return OP.edge_reference(x, _case(x, eps), semantics)
