"""Case (operator, shape, dtype, layout, device, mode, eps) and the presets that sweep them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench import operators
from bench.errors import BenchError
from bench.operators import params_text, parse_params

DTYPES = ("float32", "float16", "bfloat16")
LAYOUTS = ("NCHW", "NHWC")
MODES = ("forward", "backward", "train")
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
DEFAULT_EPS = 1e-5

Shape = tuple[int, int, int, int]


def shape_text(shape: Shape | tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def op_text(op: str, params: str) -> str:
    """`instance_norm`, or `group_norm(num_groups=32)`."""
    return f"{op}({params})" if params else op


@dataclass(frozen=True)
class Variant:
    """One combination of an operator's parameter values in a run or a check, and which of the
    asked-for shapes it can take."""

    op: str
    values: dict[str, int]
    shapes: tuple[Shape, ...]  # those it can take
    skipped: tuple[tuple[Shape, str], ...]  # (shape, why not)

    @property
    def text(self) -> str:
        return params_text(self.values)

    def skip_lines(self, what: str) -> list[str]:
        """One line per skipped shape: `group_norm(num_groups=4) 2x6x4x4: not planned (C=6 ...)`."""
        return [
            f"{op_text(self.op, self.text)} {shape_text(s)}: not {what} ({why})" for s, why in self.skipped
        ]


def unused_params(given: dict[str, tuple[int, ...]], ops: tuple[str, ...]) -> list[str]:
    """A line per parameter option given that none of `ops` takes (`--num-groups 4` where no operator
    of the run has groups): said once, not an error, since a run of several operators gives each its
    own."""
    return [
        f"--{name.replace('_', '-')} {' '.join(map(str, values))}: not used: no operator here takes {name} "
        f"(operators: {', '.join(ops) or 'none'})"
        for name, values in given.items()
        if not any(name in operators.get(op).params for op in ops)
    ]


def variants(op: str, given: dict[str, tuple[int, ...]], shapes: list[Shape]) -> list[Variant]:
    """Every combination of operator `op`'s parameter values `given` asks for (its defaults
    otherwise), each with the shapes it can take."""
    operator = operators.get(op)
    out = []
    for values in operator.variants(given):
        why = {s: operator.unplannable(s, values) for s in shapes}
        out.append(
            Variant(
                op, values, tuple(s for s in shapes if not why[s]), tuple((s, w) for s, w in why.items() if w)
            )
        )
    return out


@dataclass(frozen=True, order=True)
class CaseKey:
    """What identifies a case across processes and files: resume, worker blame, compare, progress.

    Everything that changes the measured work, nothing about how it was measured.
    """

    device: str
    dtype: str
    layout: str
    mode: str
    shape: Shape
    input_kind: str = "random"
    op: str = operators.DEFAULT
    op_params: str = ""

    def text(self) -> str:
        """`8x3x32x32 float32 NCHW forward` (and `edge:constant` for an edge case, the operator
        when it is not the default one), for people."""
        kind = "" if self.input_kind == "random" else f" edge:{self.input_kind}"
        plain = self.op == operators.DEFAULT and not self.op_params
        op = "" if plain else f"{op_text(self.op, self.op_params)} "
        return f"{op}{shape_text(self.shape)} {self.dtype} {self.layout} {self.mode}{kind}"

    def to_json(self) -> list[Any]:
        what = [self.device, self.dtype, self.layout, self.mode, list(self.shape)]
        return [*what, self.input_kind, self.op, self.op_params]

    @classmethod
    def from_json(cls, v: list[Any]) -> CaseKey:
        """From to_json's list; lists written before keys named an operator have six items."""
        device, dtype, layout, mode, shape, kind, *op = v
        dims = tuple(int(d) for d in shape)
        return cls(device, dtype, layout, mode, dims, kind, *op)  # type: ignore[arg-type]


@dataclass(frozen=True, order=True)
class MeasurementKey:
    """One implementation on one backend for one case: the unit a row records."""

    impl: str
    backend: str
    case: CaseKey

    def text(self) -> str:
        return f"{self.impl}[{self.backend}] {self.case.text()}"


@dataclass(frozen=True)
class Case:
    """One measurement point. `shape` is always the logical (N, C, H, W), whatever the layout."""

    shape: Shape
    dtype: str = "float32"
    layout: str = "NCHW"
    mode: str = "forward"
    device: str = "cpu"
    eps: float = DEFAULT_EPS
    seed: int = 0
    input_kind: str = "random"  # or an edge case name: then checked once, not timed
    op: str = operators.DEFAULT  # the operator computed (bench/operators/)
    # Its parameters besides eps, "name=value" joined by "," in the operator's order ("" for none):
    # text, so that a case and its key stay hashable and rows compare them as written.
    op_params: str = ""

    def params(self) -> dict[str, int]:
        """The operator's parameters besides eps, by name (e.g. {"num_groups": 32})."""
        return parse_params(self.op_params)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def plane(self) -> int:
        return self.shape[2] * self.shape[3]

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.dtype]

    @property
    def ideal_bytes(self) -> int:
        return operators.get(self.op).bytes_per_element[self.mode] * self.numel * self.itemsize

    @property
    def physical_shape(self) -> Shape:
        n, c, h, w = self.shape
        return (n, h, w, c) if self.layout == "NHWC" else (n, c, h, w)

    def label(self) -> str:
        return f"{shape_text(self.shape)} {self.dtype} {self.layout} {self.mode} {self.device}"

    def key(self) -> CaseKey:
        kind, op, params = self.input_kind, self.op, self.op_params
        return CaseKey(self.device, self.dtype, self.layout, self.mode, self.shape, kind, op, params)


# Shapes per preset and device kind, for every operator; an operator adds its own (Operator.presets).
# CPU shapes are sized so `make bench` fits a 2-core machine; GPU shapes come from real networks
# (ResNet-50 stages, diffusion UNet blocks, 7x7 planes).
PRESETS: dict[str, dict[str, list[Shape]]] = {
    "smoke": {
        "cpu": [(2, 3, 8, 8), (2, 4, 16, 16)],
        "cuda": [(2, 3, 8, 8), (4, 16, 32, 32)],
    },
    "quick": {
        "cpu": [(8, 3, 32, 32), (8, 64, 28, 28), (4, 64, 56, 56)],
        "cuda": [(8, 3, 32, 32), (32, 64, 56, 56), (32, 256, 28, 28)],
    },
    "full": {
        # Tiny planes, small planes with many channels, a mid-size case and one past the last-level
        # cache (4x64x128x128: 16 MiB per float32 tensor) but under glibc's 32 MiB mmap threshold,
        # above which every eager output costs fresh page faults (see README, "How normbench measures").
        "cpu": [(8, 3, 32, 32), (8, 512, 7, 7), (8, 64, 56, 56), (4, 64, 128, 128)],
        "cuda": [
            (256, 2048, 7, 7),  # ResNet-50 last stage
            (64, 64, 112, 112),  # ResNet-50 stem
            (64, 256, 56, 56),  # ResNet-50 stage 1
            (64, 512, 28, 28),  # ResNet-50 stage 2
            (64, 1024, 14, 14),  # ResNet-50 stage 3
            (16, 320, 64, 64),  # diffusion UNet block at 64x64
            (16, 640, 32, 32),  # diffusion UNet block at 32x32
            (8, 128, 128, 128),  # diffusion UNet/VAE block at 128x128
        ],
    },
}


def device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def presets() -> tuple[str, ...]:
    """Every preset's name: the shared ones, then the operators' own."""
    own = [name for op in operators.operators().values() for name in op.presets]
    return tuple(dict.fromkeys([*PRESETS, *own]))


def preset_timing_name(preset: str) -> str:
    """The shared preset whose timing `preset` samples with: itself where it is one, else what the
    operator that defines it says (Operator.preset_timing; "full" where it says nothing)."""
    if preset in PRESETS:
        return preset
    for op in operators.operators().values():
        if preset in op.presets:
            return op.preset_timing.get(preset, "full")
    return "full"


def preset_shapes(preset: str, device: str, op: str = operators.DEFAULT) -> list[Shape]:
    """Preset `preset`'s shapes on `device` for operator `op`: the operator's own when it has that
    preset, else the shared ones, else the shapes of the operator that defines it (`--preset unet`
    measures InstanceNorm on GroupNorm's UNet shapes too)."""
    tables = [operators.get(op).presets, PRESETS, *(o.presets for o in operators.operators().values())]
    for table in tables:
        if preset in table:
            return list(table[preset][device_kind(device)])
    raise BenchError(f"unknown preset {preset!r}; expected one of: {', '.join(presets())}")


def parse_shape(text: str) -> Shape:
    parts = text.replace("x", ",").split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise BenchError(f"bad --shape {text!r}; expected four positive integers N,C,H,W") from None
    if len(dims) != 4 or min(dims) <= 0:
        raise BenchError(f"bad --shape {text!r}; expected four positive integers N,C,H,W")
    return dims  # type: ignore[return-value]


def check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise BenchError(f"unknown {kind} {value!r}; expected one of: {', '.join(allowed)}")
    return value


def edge_cases(
    op: str,
    device: str,
    layouts: list[str] | tuple[str, ...],
    eps: float,
    dtypes: tuple[str, ...] | None = None,
    values: dict[str, int] | None = None,
) -> list[Case]:
    """Operator `op`'s edge-case inputs on `device` in each layout (forward), with its parameter
    `values` (its defaults if none), those it can take; only those of `dtypes` if given."""
    operator = operators.get(op)
    values = values if values is not None else dict(operator.params)
    text = params_text(values)
    return [
        Case(shape, dtype, lay, "forward", device, eps, input_kind=kind, op=op, op_params=text)
        for kind, (shape, dtype) in operator.edge_cases.items()
        if (dtypes is None or dtype in dtypes) and not operator.unplannable(shape, values)
        for lay in layouts
    ]
