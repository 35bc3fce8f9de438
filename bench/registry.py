"""@register, Impl, and discovery of implementation modules (built-in, --impl-path, plugins)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.cases import DTYPES, LAYOUTS, MODES
from bench.errors import BenchError

IMPL_DIR = Path(__file__).resolve().parent.parent / "implementations"
ENTRY_POINT_GROUP = "normbench.implementations"
STDS = ("population", "unbiased")
EPS_AT = ("sqrt", "std")  # eps inside the square root (added to the variance), or added to the std
# Roles an implementation can declare; the report reads them from the rows, never from names.
ROLES = (
    "article",  # a snippet of the article "PyTorch or Keras: which is better for per-channel normalization?"
    "baseline",  # the default reference of the speedup heatmaps
)
# File-name prefix -> framework: lets the runner group implementations into worker processes
# without importing any framework in the parent.
PREFIXES = {"torch": "torch", "tf": "tensorflow", "keras": "keras", "jax": "jax", "triton": "triton"}
FRAMEWORKS = tuple(sorted(set(PREFIXES.values())))
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKENDS = {
    "torch": ("eager",),
    "tensorflow": ("eager",),
    "keras": KERAS_BACKENDS,
    "jax": ("jit",),
    "triton": ("triton",),
}
# The framework whose tensors an implementation takes (keras: the backend's, decided per worker).
TENSOR_FRAMEWORK = {"torch": "torch", "tensorflow": "tensorflow", "jax": "jax", "triton": "torch"}

Builder = Callable[[Any], Callable[..., Any]]


@dataclass(frozen=True)
class Impl:
    name: str
    framework: str
    layouts: tuple[str, ...]
    std: str
    eps_at: str
    backends: tuple[str, ...]
    modes: tuple[str, ...] = MODES
    dtypes: tuple[str, ...] = DTYPES
    devices: tuple[str, ...] = ("cpu", "cuda")
    layout_copy: tuple[str, ...] = ()  # layouts in which it copies the input internally (timed)
    compiled_from: str | None = None  # its eager counterpart, for compile break-even
    roles: tuple[str, ...] = ()  # from ROLES
    description: str = ""
    source: str = ""
    unavailable: str | None = None
    builder: Builder | None = field(default=None, compare=False, repr=False)

    @property
    def semantics(self) -> str:
        return f"{self.std}/eps@{self.eps_at}"

    def info(self) -> dict[str, Any]:
        """A picklable, JSON-able description (no builder): what probes send to the parent."""
        d = asdict(self)
        d.pop("builder")
        return d

    @classmethod
    def from_info(cls, d: dict[str, Any]) -> Impl:
        tuples = ("layouts", "backends", "modes", "dtypes", "devices", "layout_copy", "roles")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})  # type: ignore[arg-type]

    def unsupported_reason(self, case: Any) -> str | None:
        """Why this implementation cannot run `case` by its own declaration, or None."""
        for what, value, allowed in (
            ("layout", case.layout, self.layouts),
            ("mode", case.mode, self.modes),
            ("dtype", case.dtype, self.dtypes),
            ("device", case.device.split(":")[0], self.devices),
        ):
            if value not in allowed:
                return f"{self.name} does not support {what} {value} (supports {', '.join(allowed)})"
        return None


_REGISTRY: dict[str, Impl] = {}
_current_source: list[str] = []


def _as_tuple(
    value: str | tuple[str, ...] | list[str], kind: str, allowed: tuple[str, ...]
) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if item not in allowed:
            raise BenchError(f"unknown {kind} {item!r}; expected one of: {', '.join(allowed)}")
    return items


def register(
    *,
    framework: str,
    layout: str | tuple[str, ...],
    std: str,
    eps_at: str,
    backends: tuple[str, ...] | None = None,
    modes: tuple[str, ...] = MODES,
    dtypes: tuple[str, ...] = DTYPES,
    devices: tuple[str, ...] = ("cpu", "cuda"),
    layout_copy: tuple[str, ...] = (),
    compiled_from: str | None = None,
    roles: tuple[str, ...] | str = (),
    name: str | None = None,
) -> Callable[[Builder], Builder]:
    """Register a builder `(case) -> callable`; the callable takes the input in the case's layout.

    `layout` lists the layouts the callable accepts (torch tensors are logically NCHW; NHWC means
    channels_last memory). `std` is "population" or "unbiased"; `eps_at` is "sqrt" (eps added to
    the variance) or "std" (eps added to the standard deviation). `compiled_from` names the eager
    implementation this one compiles (the report's break-even pairs them); `roles` are facts the
    report reads: "article" for the article's snippets, "baseline" for the heatmaps' reference.
    """
    if framework not in FRAMEWORKS:
        raise BenchError(f"unknown framework {framework!r}; expected one of: {', '.join(FRAMEWORKS)}")
    layouts = _as_tuple(layout, "layout", LAYOUTS)
    _as_tuple(std, "std", STDS)
    _as_tuple(eps_at, "eps_at", EPS_AT)
    _as_tuple(modes, "mode", MODES)
    _as_tuple(dtypes, "dtype", DTYPES)
    _as_tuple(layout_copy, "layout", LAYOUTS)
    role_tuple = _as_tuple(roles, "role", ROLES)

    def decorate(builder: Builder) -> Builder:
        impl_name = name or builder.__name__
        module = sys.modules.get(builder.__module__)
        doc = (module.__doc__ or "").strip().splitlines() if module else []
        impl = Impl(
            name=impl_name,
            framework=framework,
            layouts=layouts,
            std=std,
            eps_at=eps_at,
            backends=tuple(backends or DEFAULT_BACKENDS[framework]),
            modes=tuple(modes),
            dtypes=tuple(dtypes),
            devices=tuple(devices),
            layout_copy=tuple(layout_copy),
            compiled_from=compiled_from,
            roles=role_tuple,
            description=doc[0] if doc else "",
            source=_current_source[-1] if _current_source else builder.__module__,
            builder=builder,
        )
        known = _REGISTRY.get(impl_name)
        if known is not None and known.source != impl.source:
            raise BenchError(
                f"implementation {impl_name!r} registered twice: {known.source} and {impl.source}"
            )
        _REGISTRY[impl_name] = impl
        return builder

    return decorate


@dataclass(frozen=True)
class Source:
    """Where implementations come from: a file, an importable module, or a plugin entry point."""

    kind: str  # "file" | "module" | "entry_point"
    ref: str  # path, module name, or "name=module"
    framework: str

    @property
    def stem(self) -> str:
        if self.kind == "file":
            return Path(self.ref).stem
        if self.kind == "entry_point":
            return self.ref.split("=", 1)[0]
        return self.ref.rsplit(".", 1)[-1]

    def label(self) -> str:
        return {"file": "file", "module": "module", "entry_point": "plugin"}[self.kind] + f" {self.ref}"


def framework_of(stem: str) -> str:
    prefix = stem.split("_", 1)[0]
    return PREFIXES.get(prefix, prefix)


def sources(impl_paths: list[str] = (), impl_modules: list[str] = (), plugins: bool = True) -> list[Source]:  # type: ignore[assignment]
    """Every implementation source, built-in first; bad paths are a BenchError."""
    files = sorted(IMPL_DIR.glob("*.py"))
    for p in impl_paths:
        path = Path(p)
        if path.is_dir():
            files += sorted(path.glob("*.py"))
        elif path.is_file() and path.suffix == ".py":
            files.append(path)
        else:
            raise BenchError(f"--impl-path {p!r} is neither a directory nor a .py file")
    found = [
        Source("file", str(f.resolve()), framework_of(f.stem)) for f in files if not f.name.startswith("_")
    ]
    found += [Source("module", m, framework_of(m.rsplit(".", 1)[-1])) for m in impl_modules]
    if plugins:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            found.append(Source("entry_point", f"{ep.name}={ep.value}", framework_of(ep.name)))
    return found


def _import(source: Source) -> None:
    if source.kind == "file":
        path = Path(source.ref)
        if path.parent == IMPL_DIR:
            importlib.import_module(f"implementations.{path.stem}")
            return
        mod_name = f"normbench_ext_{path.stem}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    else:
        importlib.import_module(source.ref.split("=", 1)[-1].split(":")[0])


def load(found: list[Source], frameworks: tuple[str, ...] | None = None) -> list[Impl]:
    """Import the sources (only those of `frameworks`); a failed import is an unavailable Impl."""
    impls: list[Impl] = []
    for source in found:
        if frameworks is not None and source.framework not in frameworks:
            continue
        if source.framework not in FRAMEWORKS:
            # The runner groups implementations into worker processes by this prefix, unimported.
            prefixes = ", ".join(f"{p}_" for p in PREFIXES)
            impls.append(
                _unavailable(source, f"name {source.stem!r} must start with a framework prefix ({prefixes})")
            )
            continue
        before = set(_REGISTRY)
        _current_source.append(source.label())
        try:
            _import(source)
        except (Exception, SystemExit) as exc:  # ImportError and anything a broken plugin raises
            reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
            impls.append(_unavailable(source, reason))
            continue
        finally:
            _current_source.pop()
        new = [_REGISTRY[n] for n in _REGISTRY if n not in before]
        if not new:  # already imported in this process, or registers nothing
            new = [i for i in _REGISTRY.values() if i.source == source.label()]
        impls += new
    return impls


def describe_source(label: str) -> str:
    """Impl.source for people: "built-in" for implementations/, else the file, module or plugin."""
    kind, _, ref = label.partition(" ")
    if kind == "file":
        path = Path(ref)
        if path.parent == IMPL_DIR:
            return "built-in"
        try:
            return f"file {path.relative_to(Path.cwd())}"
        except ValueError:
            return label
    return label


def _unavailable(source: Source, reason: str) -> Impl:
    fw = source.framework
    return Impl(
        name=source.stem,
        framework=fw,
        layouts=(),
        std="?",
        eps_at="?",
        backends=DEFAULT_BACKENDS.get(fw, ()),
        source=source.label(),
        unavailable=reason,
    )


def get(name: str) -> Impl:
    if name not in _REGISTRY:
        raise BenchError(f"unknown implementation {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def format_exception(exc: BaseException) -> str:
    """One line for a row's message: type and text, plus the innermost frame for context."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())  # Keras colours its messages
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(exc).__name__}: {text}{where}"
