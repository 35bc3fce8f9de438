"""Operators: what is computed and how an answer is checked, one file each; never how it is run.

An operator file (`bench/operators/<name>.py`, not starting with "_") defines `OPERATOR`, an
`Operator`: its name, the semantics an implementation may declare and the canonical one, its
inputs and upstream gradients, its edge cases, its float64 reference (output, input gradient,
semantics detection) and its tolerances. The harness plans, runs, checks, times and formats; it
asks the case's operator (`get(case.op)`) for everything that is the operator's, and names none.

Lifecycle: `reference(x, case, g)` is built once per case from the inputs as the implementations
see them (rounded to the dtype) and shared by every implementation checked on that case.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import BenchError
from bench.reference import COPY, Detected

if TYPE_CHECKING:
    from bench.cases import Case

# The operator of an implementation that names none, and of rows written before rows named one.
DEFAULT = "instance_norm"


class Reference:
    """The float64 answers for one case's input (and upstream gradient): per semantics, computed
    when first asked for. A calibration's semantics (bench.reference.COPY) answers with the input
    and the upstream gradient themselves, for every operator."""

    def __init__(self, x: np.ndarray, g: np.ndarray | None) -> None:
        self.x, self.g = x, g

    def output(self, semantics: str) -> np.ndarray:
        return self.x if semantics == COPY else self._output(semantics)

    def grad(self, semantics: str) -> np.ndarray:
        if self.g is None:
            raise ValueError("no upstream gradient: a forward case has no input gradient")
        return self.g if semantics == COPY else self._grad(semantics)

    def _output(self, semantics: str) -> np.ndarray:
        raise NotImplementedError

    def _grad(self, semantics: str) -> np.ndarray:
        raise NotImplementedError

    def detect(self, y: np.ndarray, dtype: str) -> Detected:
        """Which of the operator's semantics the output y really computed."""
        raise NotImplementedError


class Operator:
    """What one operator is (see the module docstring). Subclasses set the class attributes and
    write the methods; nothing here runs, times or formats anything. Instances hold no state of
    their own (`__slots__ = ()` in every subclass too): what checks an answer lives on classes and
    modules, which the worker's guard watches, never on an instance a measured call could patch."""

    __slots__ = ()

    name: str = ""
    title: str = ""  # what people call it: "InstanceNorm"
    semantics: tuple[str, ...] = ()  # what an implementation may declare (@register std=, eps_at=)
    canonical: str = ""  # the operator's definition; distance from it is reported for every row
    # Normwise relative tolerance, max|out - ref| / max|ref|, per dtype.
    tolerance: dict[str, float] = {}
    # Inputs that break implementations: kind -> (shape, dtype); judged for finiteness and error
    # (edge_tolerance), never timed.
    edge_cases: dict[str, tuple[tuple[int, int, int, int], str]] = {}
    # Parameters besides eps, positive integers, by name: their defaults, in the order a case's
    # op_params text lists them. Each is a repeatable `run` option (`num_groups`: --num-groups).
    params: dict[str, int] = {}
    # What `bench check` runs an implementation on unless told otherwise. H != W and C differs from
    # both: an implementation that reduces over the wrong axes, or mixes up NCHW and NHWC, gets a
    # different answer; 48-pixel planes keep biased and unbiased std 1 % apart.
    check_shapes: tuple[tuple[int, int, int, int], ...] = ((2, 3, 6, 8),)

    def variants(self, given: Mapping[str, tuple[int, ...]]) -> list[dict[str, int]]:
        """Every combination of parameter values `given` asks for (the default where it gives
        none): [{}] for an operator without parameters."""
        values = [given.get(name, (default,)) for name, default in self.params.items()]
        return [dict(zip(self.params, combo)) for combo in itertools.product(*values)]

    def unplannable(self, shape: tuple[int, int, int, int], values: dict[str, int]) -> str:
        """Why a case of this shape cannot be measured with these parameter values ("" if it can)."""
        return ""

    def support(self, case: Case, plane: int) -> tuple[np.ndarray, Case]:
        """The (N*C) planes of the input that output plane `plane` depends on, and a case for them
        alone (shape (1, len, H, W)): what the parent needs to check sampled output values of a
        timed call without the whole tensor's reference (bench.verify)."""
        raise NotImplementedError

    def make_input(self, case: Case) -> np.ndarray:
        """The case's input, float64 in logical NCHW order, seeded by case.seed."""
        raise NotImplementedError

    def make_upstream_grad(self, case: Case) -> np.ndarray:
        return np.random.default_rng(case.seed + 1).standard_normal(case.shape)

    def make_edge_input(self, kind: str, case: Case) -> np.ndarray:
        raise NotImplementedError

    def edge_tolerance(self, kind: str, dtype: str) -> float:
        """Max abs error for "safe" on an edge case."""
        raise NotImplementedError

    def reference(self, x: np.ndarray, case: Case, g: np.ndarray | None = None) -> Reference:
        raise NotImplementedError

    def edge_reference(self, x: np.ndarray, case: Case, semantics: str) -> np.ndarray:
        """The declared semantics' answer where it is defined, else the canonical one (what a safe
        implementation returns where the declared formula divides by zero)."""
        ref = self.reference(x, case)
        out = ref.output(semantics)
        return out if np.all(np.isfinite(out)) else ref.output(self.canonical)


def operators() -> Mapping[str, Operator]:
    """The operators in bench/operators/, by name (read-only)."""
    return MappingProxyType(_found())


@cache
def _found() -> dict[str, Operator]:
    found: dict[str, Operator] = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        op = importlib.import_module(f"{__name__}.{path.stem}").OPERATOR
        found[op.name] = op
    return found


def get(name: str) -> Operator:
    known = operators()
    if name not in known:
        raise BenchError(f"unknown operator {name!r}; expected one of: {', '.join(known)}")
    return known[name]


def edge_kinds() -> tuple[str, ...]:
    """Every operator's edge-case kinds, in operator order: the order reports list them in."""
    return tuple(dict.fromkeys(kind for op in operators().values() for kind in op.edge_cases))


def canonical(op: str) -> str:
    """Operator `op`'s canonical semantics ("" for an operator this normbench does not have: a
    results file from elsewhere is read, never refused for it)."""
    known = operators().get(op)
    return known.canonical if known else ""


def params_text(values: Mapping[str, int]) -> str:
    """An operator's parameters as a case and a row hold them: `num_groups=32` ("" for none)."""
    return ",".join(f"{k}={v}" for k, v in values.items())


def parse_params(text: str) -> dict[str, int]:
    """params_text's inverse."""
    if not text:
        return {}
    return {k: int(v) for k, v in (item.split("=", 1) for item in text.split(","))}


def label(op: str, params: str) -> str:
    """What a report calls an operator with its parameters: `InstanceNorm`, `GroupNorm(32)` (the
    parameter values in the operator's order; an operator this normbench lacks: its name)."""
    known = operators().get(op)
    title = known.title if known else op
    values = [str(v) for v in parse_params(params).values()]
    return f"{title}({', '.join(values)})" if values else title


def default_label() -> str:
    """The label of the default operator (rows from before rows named one)."""
    return operators()[DEFAULT].title


def label_rank(text: str) -> tuple[int, str]:
    """Reports list operators in bench/operators/ order (the default one first), then by label."""
    titles = [default_label(), *(op.title for op in operators().values())]
    base = text.split("(", 1)[0]
    return (titles.index(base) if base in titles else len(titles), text)
