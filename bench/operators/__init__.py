"""Operators: what is computed and how an answer is checked, one file each; never how it is run.

An operator file defines `OPERATOR`, an `Operator`: its name, its parameters, the semantics an
implementation may declare and the canonical one, its inputs and upstream gradients, its edge
cases and presets, its float64 reference (output, input gradient, semantics detection), its
tolerances and the bytes a call moves. The harness plans, runs, checks, times and formats; it asks
the case's operator (`get(case.op)`) for everything that is the operator's, and names none.

Where operators come from, in this order (a name defined twice is an error naming both places):
1. the files of bench/operators/ (not starting with "_");
2. folders and files given with `--op-path` (`use_paths`), kept in $NORMBENCH_OP_PATH so that every
   process the command starts (its workers, a cluster's jobs) finds the same ones;
3. entry points in the group `normbench.operators` of installed packages: a module that defines
   OPERATOR, or `module:NAME` naming an Operator.

Lifecycle: `reference(x, case, g)` is built once per case from the inputs as the implementations
see them (rounded to the dtype) and shared by every implementation checked on that case.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import re
import sys
from collections.abc import Mapping
from functools import cache
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from bench.errors import BenchError
from bench.folders import python_files
from bench.reference import COPY, Detected

if TYPE_CHECKING:
    from bench.cases import Case

# The operator of an implementation that names none, and of rows written before rows named one.
DEFAULT = "instance_norm"
PATH_ENV = "NORMBENCH_OP_PATH"  # os.pathsep-separated operator folders and files (--op-path)
ENTRY_POINT_GROUP = "normbench.operators"


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
    semantics_help: str = ""  # what its semantics tell apart, for the report's readers
    # Normwise relative tolerance, max|out - ref| / max|ref|, per dtype.
    tolerance: dict[str, float] = {}
    # Inputs that break implementations: kind -> (shape, dtype); judged for finiteness and error
    # (edge_tolerance), never timed.
    edge_cases: dict[str, tuple[tuple[int, int, int, int], str]] = {}
    edge_help: dict[str, str] = {}  # what each edge case breaks, for the report's readers
    # Parameters besides eps, positive integers, by name: their defaults, in the order a case's
    # op_params text lists them. Each is a repeatable `run` option (`num_groups`: --num-groups).
    params: dict[str, int] = {}
    # What `bench check` runs an implementation on unless told otherwise. H != W and C differs from
    # both: an implementation that reduces over the wrong axes, or mixes up NCHW and NHWC, gets a
    # different answer; 48-pixel planes keep biased and unbiased std 1 % apart.
    check_shapes: tuple[tuple[int, int, int, int], ...] = ((2, 3, 6, 8),)
    # Its own presets, {name: {"cpu": shapes, "cuda": shapes}}: a name of its own (every operator
    # of a run can take it), or its shapes for a shared one (bench.cases.PRESETS).
    presets: dict[str, dict[str, list[tuple[int, int, int, int]]]] = {}
    # How long a run of each of its own presets samples a case: the timing of a shared preset
    # ("smoke", "quick" or "full"; bench.timing.PRESET_TIMING), "full" where it says nothing.
    preset_timing: dict[str, str] = {}
    # Ideal bytes per element a call moves, per mode: forward reads x and writes y; backward reads x
    # and dy and writes dx; train does both. The speed of light is these bytes at copy bandwidth.
    bytes_per_element: dict[str, int] = {"forward": 2, "backward": 3, "train": 5}

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
    """Every operator, by name (read-only): bench/operators/, --op-path, entry points."""
    return MappingProxyType(_found(os.environ.get(PATH_ENV, "")))


def use_paths(paths: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Add operator folders or .py files (`--op-path`) for this process and the ones it starts; every
    operator is loaded now, so a bad path, a broken operator file or plugin is an error before
    anything runs.
    Returns the resolved paths, as a run's configuration stores them."""
    python_files(paths, "--op-path")
    resolved = tuple(str(Path(p).resolve()) for p in paths)
    current = [p for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]
    text = os.pathsep.join(dict.fromkeys([*current, *resolved]))
    _found(text)  # a bad one fails here, before the environment names it
    if resolved:
        os.environ[PATH_ENV] = text
    return resolved


def _path_files(text: str) -> list[Path]:
    files = python_files((p for p in text.split(os.pathsep) if p), f"${PATH_ENV} entry")
    return [f for f in files if not f.stem.startswith("_")]


def _from_file(path: Path) -> Operator:
    """Import an operator file from a folder (as module normbench_op_<stem>) and take its OPERATOR."""
    if path.parent == Path(__file__).parent:
        module = importlib.import_module(f"{__name__}.{path.stem}")
    else:
        name = f"normbench_op_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001  a user's file: one line that names it
            del sys.modules[name]
            raise BenchError(f"operator file {path}: {type(exc).__name__}: {exc}") from None
    return _checked(getattr(module, "OPERATOR", None), f"operator file {path}")


def _from_entry_point(ep: metadata.EntryPoint) -> Operator:
    where = f"entry point {ep.name}={ep.value} (group {ENTRY_POINT_GROUP})"
    try:
        loaded = ep.load()
    except Exception as exc:  # noqa: BLE001  an installed plugin: one line that names it
        raise BenchError(f"{where}: {type(exc).__name__}: {exc}") from None
    return _checked(getattr(loaded, "OPERATOR", loaded), where)


def _checked(op: object, where: str) -> Operator:
    """An operator is a stateless Operator instance whose facts agree with each other."""
    if not isinstance(op, Operator):
        raise BenchError(f"{where}: defines no OPERATOR, an instance of bench.operators.Operator")
    if hasattr(op, "__dict__"):
        raise BenchError(f"{where}: {type(op).__name__} and each class it derives from must set "
                         "__slots__ = (): an operator holds no state a measured call can change")  # fmt: skip
    if not re.fullmatch(r"[a-z][a-z0-9_]*", op.name) or not op.title:
        raise BenchError(f"{where}: bad name {op.name!r} or title {op.title!r}; expected a lower-case "
                         "identifier and a non-empty title")  # fmt: skip
    if op.canonical not in op.semantics:
        raise BenchError(f"{where}: canonical {op.canonical!r} is not one of its semantics {op.semantics}")
    from bench.timing import PRESET_TIMING  # names only: an operator times nothing

    for preset, timing in op.preset_timing.items():
        if preset not in op.presets or timing not in PRESET_TIMING:
            own = ", ".join(op.presets) or "none"
            raise BenchError(f"{where}: bad preset_timing {preset!r}: {timing!r}; expected one of its "
                             f"presets ({own}) and one of: {', '.join(PRESET_TIMING)}")  # fmt: skip
    for name, default in op.params.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or not isinstance(default, int) or default < 1:
            raise BenchError(f"{where}: bad parameter {name}={default!r}; expected a lower-case "
                             "identifier with a positive integer default")  # fmt: skip
    return op


@cache
def _found(path_text: str) -> dict[str, Operator]:
    found: dict[str, Operator] = {}
    where: dict[str, str] = {}

    def add(op: Operator, place: str) -> None:
        if op.name in found:
            raise BenchError(f"operator {op.name!r} of {place} is already defined by {where[op.name]}")
        found[op.name], where[op.name] = op, place

    builtin = [p for p in sorted(Path(__file__).parent.glob("*.py")) if not p.stem.startswith("_")]
    for path in builtin + _path_files(path_text):
        add(_from_file(path), str(path))
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        add(_from_entry_point(ep), f"entry point {ep.name}={ep.value}")
    return found


def modules() -> list[tuple[str, object]]:
    """The modules that define operators outside bench/, and the classes each defines (its
    reference's too), for bench.guard, which watches them as it watches normbench's own: a measured
    call must not change how answers are checked."""
    names = {
        klass.__module__
        for op in operators().values()
        for klass in type(op).__mro__
        if klass.__module__.split(".")[0] not in ("bench", "builtins")
    }
    out: list[tuple[str, object]] = []
    for name in sorted(names):
        module = sys.modules.get(name)
        if module is None:
            continue
        out.append((f"operator:{name}", module))
        for attr, value in list(vars(module).items()):
            if isinstance(value, type) and value.__module__ == name:
                out.append((f"operator:{name}.{attr}", value))
    return out


def files() -> list[Path]:
    """The files of the operators defined outside bench/ (see modules)."""
    found = {getattr(m, "__file__", None) for _, m in modules()}
    return sorted(Path(f) for f in found if isinstance(f, str))


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
