"""@register, Impl, and discovery of implementation sources (built-in, --impl-path, modules, plugins).

Lifecycle of an implementation:
1. `sources()` finds the files, modules and entry points, and reads each one's `@register(...)`
   decorators *statically* (the AST, nothing imported): the names and the framework they declare.
   That is how the parent, which imports no framework, groups them into worker processes and
   checks `--impl` globs at once. File names are free: the declaration is the truth.
2. A worker of that framework imports the source (`load_one`); `@register` records an `Impl` per
   decorated builder, with everything the decorator declared.
3. In a measuring worker, `impl.builder(case)` returns the callable that is timed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import hmac
import importlib
import importlib.util
import json
import os
import re
import secrets
import sys
import sysconfig
import threading
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

from bench import environment, operators
from bench.cases import DTYPES, LAYOUTS, MODES
from bench.errors import BenchError
from bench.folders import python_files
from bench.frameworks import frameworks
from bench.reference import COPY

IMPL_DIR = Path(__file__).resolve().parent.parent / "implementations"
ENTRY_POINT_GROUP = "normbench.implementations"
# Roles an implementation can declare; the report reads them from the rows, never from names.
ROLES = (
    "article",  # a snippet of the article this benchmark answers (see README)
    "baseline",  # the default reference of the speedup heatmaps
    "own",  # a kernel written for normbench, not a library's op: the answer compares libraries
    # without it, then says how it does beside them (the limit can be reached)
    "calibration",  # not a normalization (std "copy"): timed and shown against the speed of light,
    # never in a verdict; a copy of the input must read 0.9 to 1.0 of its case's limit
)

Builder = Callable[[Any], Callable[..., Any]]


@dataclass(frozen=True)
class Impl:
    """One registered implementation: its declaration, where it came from, and its builder.

    The builder `(case) -> callable` does its setup before returning; only the returned callable is
    timed. `info()`/`from_info()` carry everything but the builder across the process boundary.
    """

    name: str
    framework: str
    layouts: tuple[str, ...]
    semantics: str  # one of its operator's (bench/operators/), or COPY for a calibration
    backends: tuple[str, ...]
    modes: tuple[str, ...] = MODES
    dtypes: tuple[str, ...] = DTYPES
    devices: tuple[str, ...] = ("cpu", "cuda")
    layout_copy: tuple[str, ...] = ()  # layouts in which it copies the input internally (timed)
    compiled_from: str | None = None  # its eager counterpart, for compile break-even
    roles: tuple[str, ...] = ()  # from ROLES
    op: str = operators.DEFAULT  # the operator it computes (bench/operators/)
    description: str = ""
    source: str = ""  # Source.label() of the file, module or plugin that registered it
    unavailable: str | None = None
    builder: Builder | None = field(default=None, compare=False, repr=False)

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
        if "calibration" in self.roles and case.input_kind != "random":
            return f"{self.name} is a calibration: it is timed on random inputs only"
        return None


_REGISTRY: dict[str, Impl] = {}
_DUPLICATES: list[Impl] = []
_LABELS: dict[str, str] = {}  # resolved module file -> its source label, while sources load


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
    semantics: str | None = None,
    std: str | None = None,
    eps_at: str | None = None,
    backends: tuple[str, ...] | None = None,
    modes: tuple[str, ...] = MODES,
    dtypes: tuple[str, ...] = DTYPES,
    devices: tuple[str, ...] = ("cpu", "cuda"),
    layout_copy: tuple[str, ...] = (),
    compiled_from: str | None = None,
    roles: tuple[str, ...] | str = (),
    name: str | None = None,
    op: str = operators.DEFAULT,
) -> Callable[[Builder], Builder]:
    """Register a builder `(case) -> callable`; the callable takes the input in the case's layout.

    `framework` must be a string literal (normbench reads it without importing the file).
    `layout` lists the layouts the callable accepts (torch tensors are logically NCHW; NHWC means
    channels_last memory). `semantics` is what it computes, one of its operator's `semantics` (the
    report checks the declaration against what the output shows); `std=` and `eps_at=` spell it
    as `f"{std}/eps@{eps_at}"`, the normalizations' two choices ("population" or "unbiased"
    variance; eps added to it under the sqrt, "sqrt", or to the std, "std"). `compiled_from` names the eager
    implementation this one compiles (the report's break-even pairs them); `roles` are facts the
    report reads: "article" for the article's snippets, "baseline" for the heatmaps' reference.
    `op` names the operator it computes (a file in bench/operators/; a string literal, read like
    `framework`): InstanceNorm unless it says otherwise.
    """
    operator = operators.get(op)
    known = frameworks()
    if framework not in known:
        raise BenchError(f"unknown framework {framework!r}; expected one of: {', '.join(known)}")
    fw = known[framework]
    layouts = _as_tuple(layout, "layout", LAYOUTS)
    _as_tuple(modes, "mode", MODES)
    _as_tuple(dtypes, "dtype", DTYPES)
    _as_tuple(layout_copy, "layout", LAYOUTS)
    role_tuple = _as_tuple(roles, "role", ROLES)
    declared = _semantics(operator, semantics, std, eps_at, "calibration" in role_tuple)
    if backends is not None and fw.known_backends:
        _as_tuple(backends, f"{framework} backend", fw.known_backends)

    def decorate(builder: Builder) -> Builder:
        impl_name = name or builder.__name__
        module = sys.modules.get(builder.__module__)
        doc = (module.__doc__ or "").strip().splitlines() if module else []
        impl = Impl(
            name=impl_name,
            framework=framework,
            layouts=layouts,
            semantics=declared,
            backends=tuple(backends or fw.backends),
            modes=tuple(modes),
            dtypes=tuple(dtypes),
            devices=tuple(devices),
            layout_copy=tuple(layout_copy),
            compiled_from=compiled_from,
            roles=role_tuple,
            op=op,
            description=doc[0] if doc else "",
            source=_label_of(module, builder.__module__),
            builder=builder,
        )
        first = _REGISTRY.get(impl_name)
        if first is None:
            _REGISTRY[impl_name] = impl
        elif first.source != impl.source:
            # The first registration stays (built-ins load first); the copy is reported, not lost.
            _DUPLICATES.append(impl)
        return builder

    return decorate


def _semantics(
    operator: operators.Operator,
    semantics: str | None,
    std: str | None,
    eps_at: str | None,
    calibration: bool,
) -> str:
    """The semantics an implementation declares: `semantics=`, or `std=` and `eps_at=` spelling
    it (a calibration's std "copy", eps_at "none": COPY); one of its operator's, or COPY for a
    calibration and only for one."""
    if semantics is not None and (std is not None or eps_at is not None):
        raise BenchError(f"semantics {semantics!r} and std {std!r}, eps_at {eps_at!r}: declare one, not both")
    if semantics is None:
        if std is None or eps_at is None:
            known = ", ".join(operator.semantics)
            raise BenchError(f"no semantics declared; expected semantics= one of {operator.name}'s: {known}")
        semantics = COPY if (std, eps_at) == (COPY, "none") else f"{std}/eps@{eps_at}"
    allowed = (COPY,) if calibration else operator.semantics
    if semantics not in allowed:
        what = "a calibration (role 'calibration') declares" if calibration else f"{operator.name}'s are"
        raise BenchError(f"unknown semantics {semantics!r}; {what}: {', '.join(allowed)}")
    return semantics


def _label_of(module: Any, module_name: str) -> str:
    """The source label of the module that holds a builder, even when another source imported it."""
    file = getattr(module, "__file__", None)
    if file and str(Path(file).resolve()) in _LABELS:
        return _LABELS[str(Path(file).resolve())]
    if file and Path(file).resolve().parent == IMPL_DIR:
        return f"file {Path(file).resolve()}"
    return f"module {module_name}"


# ---- sources and what they declare, read without importing them ------------------------------


@dataclass(frozen=True)
class Declaration:
    name: str
    framework: str
    op: str = operators.DEFAULT


@dataclass(frozen=True)
class Source:
    """Where implementations come from (a file, an importable module, or a plugin entry point), and
    what its `@register` decorators declare, read statically. `problem` says why it cannot be read."""

    kind: str  # "file" | "module" | "entry_point"
    ref: str  # path, module name, or "name=module"
    declared: tuple[Declaration, ...] = ()
    problem: str = ""

    @property
    def stem(self) -> str:
        if self.kind == "file":
            return Path(self.ref).stem
        if self.kind == "entry_point":
            return self.ref.split("=", 1)[0]
        return self.ref.rsplit(".", 1)[-1]

    @property
    def frameworks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d.framework for d in self.declared))

    @property
    def module_name(self) -> str:
        return self.ref.split("=", 1)[-1].split(":")[0]

    def label(self) -> str:
        return {"file": "file", "module": "module", "entry_point": "plugin"}[self.kind] + f" {self.ref}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ref": self.ref,
            "declared": [[d.name, d.framework, d.op] for d in self.declared],
            "problem": self.problem,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Source:
        declared = tuple(Declaration(*v) for v in d["declared"])  # [name, framework(, op)]
        return cls(d["kind"], d["ref"], declared, d["problem"])


# CPython 3.11's AST constructor keeps its recursion depth in state shared by every thread: two
# threads parsing at once fail with "SystemError: AST constructor recursion depth mismatch"
# (python/cpython#106905). Discovery in threads (check() from a thread pool) parses one at a time.
_PARSE_LOCK = threading.Lock()


def declarations(text: str, stem: str) -> tuple[tuple[Declaration, ...], str]:
    """The (name, framework, op) of every `@register(...)`-decorated function in a module's source."""
    try:
        with _PARSE_LOCK:
            tree = ast.parse(text)
    except SyntaxError as exc:
        return (), f"SyntaxError: {exc.msg} (line {exc.lineno})"
    found: list[Declaration] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for dec in node.decorator_list:
            func = dec.func if isinstance(dec, ast.Call) else None
            called = getattr(func, "id", None) or getattr(func, "attr", None)
            if called != "register" or not isinstance(dec, ast.Call):
                continue
            kw = {k.arg: k.value for k in dec.keywords if k.arg}
            fw, name, op = kw.get("framework"), kw.get("name"), kw.get("op")
            if not (isinstance(fw, ast.Constant) and isinstance(fw.value, str)):
                return (), f"@register(framework=...) of {node.name} must be a string literal"
            op_name = operators.DEFAULT
            if op is not None:
                if not (isinstance(op, ast.Constant) and isinstance(op.value, str)):
                    return (), f"@register(op=...) of {node.name} must be a string literal"
                op_name = op.value
            impl_name = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else None
            found.append(Declaration(impl_name or node.name, fw.value, op_name))
    if found:
        known = frameworks()
        unknown = [d.framework for d in found if d.framework not in known]
        if unknown:
            return (), f"unknown framework {unknown[0]!r}; expected one of: {', '.join(known)}"
        ops = operators.operators()
        unknown = [d.op for d in found if d.op not in ops]
        if unknown:
            return (), f"unknown operator {unknown[0]!r}; expected one of: {', '.join(ops)}"
        return tuple(found), ""
    # Files of old plugins may register in other ways: their name's prefix still tells the framework.
    prefix = stem.split("_", 1)[0]
    for framework in frameworks().values():
        if framework.legacy_prefix and prefix == framework.legacy_prefix:
            return (Declaration(stem, framework.name),), ""
    return (), "declares no implementation: decorate a builder with @register(framework=..., ...)"


def _module_file(module: str) -> Path | None:
    """The file of an importable module, found without executing it (or its packages)."""
    parts = module.split(".")
    path: list[str] | None = None
    spec = None
    for i in range(len(parts)):
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), path)
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or [])
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _scanned(kind: str, ref: str, path: Path | None, stem: str) -> Source:
    if path is None:
        return Source(kind, ref, (), f"module {ref.split('=', 1)[-1].split(':')[0]!r} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Source(kind, ref, (), f"cannot read {path}: {exc}")
    declared, problem = declarations(text, stem)
    return Source(kind, ref, declared, problem)


def check_impl_paths(impl_paths: list[str]) -> list[Path]:
    return python_files(impl_paths, "--impl-path")


def sources(
    impl_paths: list[str] | tuple[str, ...] = (),
    impl_modules: list[str] | tuple[str, ...] = (),
    plugins: bool = True,
) -> list[Source]:
    """Every implementation source, built-in first (so a built-in wins a name clash)."""
    files = sorted(IMPL_DIR.glob("*.py")) + check_impl_paths(list(impl_paths))
    seen: set[Path] = set()
    found: list[Source] = []
    for f in files:
        resolved = f.resolve()
        if f.name.startswith("_") or resolved in seen:
            continue
        seen.add(resolved)
        found.append(_scanned("file", str(resolved), resolved, f.stem))
    modules = [("module", m, m, m.rsplit(".", 1)[-1]) for m in impl_modules]
    if plugins:
        modules += [
            ("entry_point", f"{ep.name}={ep.value}", ep.value.split(":")[0], ep.name)
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
        ]
    for kind, ref, module, stem in modules:
        path = _module_file(module)
        if path is not None and path.resolve() in seen:
            continue  # a second name for a file already found: importing it again registers nothing
        if path is not None:
            seen.add(path.resolve())
        found.append(_scanned(kind, ref, path, stem))
    return found


def declared_names(found: list[Source]) -> set[str]:
    return {d.name for s in found for d in s.declared} | {s.stem for s in found if s.problem}


# ---- importing sources, in a worker ----------------------------------------------------------


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
        importlib.import_module(source.module_name)


def load_one(source: Source, framework: str) -> list[Impl]:
    """Import one source; its implementations of `framework`, or one unavailable Impl per declared
    name with the reason (an ImportError, anything a broken file raises, KeyboardInterrupt and
    SystemExit included: a user's file must never take the worker down with it)."""
    if source.problem:
        return [unavailable_impl(source, framework, source.problem)]
    if source.kind == "file":
        _LABELS[str(Path(source.ref).resolve())] = source.label()
    else:
        module_file = _module_file(source.module_name)
        if module_file is not None:
            _LABELS[str(module_file.resolve())] = source.label()
    before = set(_REGISTRY)
    try:
        _import(source)
    except BaseException as exc:  # noqa: BLE001  a user's file, not ours
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else "raised while importing it"
        reason = f"{type(exc).__name__}: {text}"
        return [unavailable_impl(source, framework, reason, d.name) for d in _declared_in(source, framework)]
    new = [_REGISTRY[n] for n in _REGISTRY if n not in before]
    mine = {i.name: i for i in _REGISTRY.values() if i.source == source.label()}
    mine.update({i.name: i for i in new})
    mine.update({i.name: i for i in _DUPLICATES if i.source == source.label()})
    impls = [i for i in mine.values() if i.framework == framework]
    for d in _declared_in(source, framework):
        if d.name not in mine:
            reason = f"declares {d.name!r} but registered no implementation of that name on import"
            impls.append(unavailable_impl(source, framework, reason, d.name))
    return impls


def _declared_in(source: Source, framework: str) -> list[Declaration]:
    return [d for d in source.declared if d.framework == framework] or [Declaration(source.stem, framework)]


def duplicates_of(impls: list[Impl]) -> list[Impl]:
    """Implementations registered under a name another source holds first, as unavailable Impls."""
    return [i for i in impls if i.name in _REGISTRY and _REGISTRY[i.name].source != i.source]


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


# ---- what probes found, kept between runs ---------------------------------------------------

PROBE_MAX_AGE_S = 24 * 3600
PROBE_FORMAT = 1  # bump when what a probe reports changes without a change to normbench's files
BENCH_DIR = Path(__file__).resolve().parent


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        try:
            h.update(f"{f}\0".encode() + f.read_bytes() + b"\0")
        except OSError:
            h.update(f"{f}\0unreadable\0".encode())
    return h.hexdigest()


@functools.cache
def _own_code() -> str:
    """normbench's own code: what @register does with its arguments and the frameworks' defaults."""
    return _digest(list(BENCH_DIR.rglob("*.py")))


def interpreter_folders() -> set[Path]:
    """The interpreter's own import folders (the standard library, site-packages): installing or
    removing a package changes their modification time, which a probe memo key holds."""
    version = f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
    stdlib = Path(sysconfig.get_path("stdlib")).resolve()
    start = next(
        (i for i, e in enumerate(sys.path) if e.endswith(version) or Path(e or ".").resolve() == stdlib), 0
    )
    return {Path(e or ".").resolve() for e in sys.path[start:]}


def worker_import_path() -> list[Path]:
    """The import path a worker imports a source with (`bench.workers.worker_env`): this checkout
    (its working folder and the first entry of its PYTHONPATH), the PYTHONPATH it inherits, then
    the interpreter's own folders (the standard library, site-packages). What only this process
    added in front of those (pytest's rootdir, a script's folder) is not a worker's: `python -m
    bench`, the pytest front end and an in-process `check` share what they learnt."""
    version = f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
    stdlib = Path(sysconfig.get_path("stdlib")).resolve()
    start = next(
        (i for i, e in enumerate(sys.path) if e.endswith(version) or Path(e or ".").resolve() == stdlib), 0
    )
    inherited = [e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e]
    folders: list[Path] = []
    for entry in [str(BENCH_DIR.parent), *inherited, *sys.path[start:]]:
        folder = Path(entry or ".").resolve()
        if folder not in folders:
            folders.append(folder)
    return folders


def _import_path_state(folders: list[Path]) -> list[tuple[str, int]]:
    """Each import-path folder with its modification time: installing, upgrading or removing a
    package adds or removes entries in its site-packages folder, which changes that time."""
    state = []
    for folder in folders:
        try:
            state.append((str(folder), os.stat(folder).st_mtime_ns))
        except OSError:
            continue
    return state


class ProbeMemo:
    """What a probe worker found in each source (its implementations' declarations), kept for a
    day so that a run does not import every framework twice (once to probe, once to measure: ~20 s
    of a full sweep's start here). An entry is used only while everything it was learnt from is
    unchanged: the source file and the other .py files of its folder (its helpers), normbench's own
    code, the framework and backend, the interpreter and its import path. Only sources whose every
    declared implementation imported and registered are kept: a failure is always probed again, so
    its reason is always current. `--reprobe` (run) ignores the memo."""

    def __init__(self, path: Path | None = None, max_age_s: float = PROBE_MAX_AGE_S) -> None:
        self.file = environment.CacheFile(path or environment.cache_dir() / "probes.json")
        self.max_age_s = max_age_s
        self.entries = self.file.entries()  # read once: probe threads look entries up at once
        # What every key shares, read once per discovery rather than once per source.
        folders = worker_import_path()
        self.import_path = _import_path_state(folders)
        self.path_dirs = interpreter_folders() & set(folders)
        self.folder_digests: dict[Path, str] = {}
        self.secret = _memo_secret(self.file.path.parent)

    def key(self, source: Source, framework: str, backend: str | None) -> str | None:
        """None when the source has no file to fingerprint (a module that is not a .py file)."""
        path = Path(source.ref) if source.kind == "file" else _module_file(source.module_name)
        if path is None or source.problem:
            return None
        path = path.resolve()
        # The folder's other files are helpers (also in a folder on PYTHONPATH: a helper edited in
        # place there changes the key), except in the interpreter's own folders (site-packages),
        # where the path state stands for them.
        if path.parent in self.path_dirs:
            files = _digest([path])
        elif path.parent not in self.folder_digests:
            files = self.folder_digests[path.parent] = _digest(list(path.parent.glob("*.py")))
        else:
            files = self.folder_digests[path.parent]
        facts = {
            "format": PROBE_FORMAT,
            "source": source.to_json(),
            "files": files,
            "normbench": _own_code(),
            "operators": _digest(operators.files()),  # what @register checks a declaration against
            "framework": framework,
            "backend": backend,
            "python": sys.executable,
            "import_path": self.import_path,
        }
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()

    def _fresh(self, entry: Any) -> bool:
        age = environment.age_s(entry.get("at")) if isinstance(entry, dict) else None
        return age is not None and 0 <= age < self.max_age_s

    def _mac(self, key: str, impls: Any, at: Any) -> str:
        body = json.dumps([key, impls, at], sort_keys=True, default=str).encode()
        return hmac.new(self.secret, body, hashlib.sha256).hexdigest()

    def load(self, key: str | None, source: Source, framework: str) -> list[Impl] | None:
        """What `source` registered, if the entry is fresh, whole (as `complete` keeps them) and as
        this machine's normbench wrote it: an entry edited by hand fails its MAC and is probed again."""
        entry = self.entries.get(key) if key else None
        if entry is None or key is None or not self._fresh(entry):
            return None
        mac = entry.get("mac")
        if not isinstance(mac, str) or not hmac.compare_digest(
            mac, self._mac(key, entry.get("impls"), entry.get("at"))
        ):
            return None
        try:
            impls = [Impl.from_info(d) for d in entry["impls"]]
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        mine = all(isinstance(i.name, str) and i.source == source.label() for i in impls)
        return impls if mine and self.complete(source, framework, impls) else None

    def save(self, found: dict[str, list[Impl]]) -> None:
        """Keep `found` (key -> the implementations that source registered), with this time."""
        at = environment.now()
        updates = {}
        for k, impls in found.items():
            infos = [i.info() for i in impls]
            updates[k] = {
                "impls": infos,
                "at": at,
                "mac": self._mac(k, json.loads(json.dumps(infos, default=str)), at),
            }
        if updates:
            self.entries = self.file.save(updates, keep=self._fresh)

    @staticmethod
    def complete(source: Source, framework: str, impls: list[Impl]) -> bool:
        """Whether a probe's result for `source` may be kept: every name it declares for
        `framework` registered, nothing unavailable."""
        names = {i.name for i in impls}
        declared = {d.name for d in _declared_in(source, framework)}
        return bool(impls) and declared <= names and all(i.unavailable is None for i in impls)


def _memo_secret(folder: Path) -> bytes:
    """This machine's key for the probe memo's MACs, made once (readable by its user only)."""
    path = folder / "probe-key"
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except OSError:
        pass
    data = secrets.token_bytes(32)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(
            path.with_name(f"{path.name}.{os.getpid()}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
        )
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(path.with_name(f"{path.name}.{os.getpid()}"), path)
        return path.read_bytes()
    except OSError:
        return data  # an unwritable cache: entries this run writes cannot be verified later


def unavailable_impl(source: Source, framework: str, reason: str, name: str | None = None) -> Impl:
    """An implementation that cannot be loaded, with the operator its source declares for it."""
    fw = frameworks().get(framework)
    impl_name = name or source.stem
    op = next((d.op for d in source.declared if d.name == impl_name), operators.DEFAULT)
    return Impl(
        name=impl_name,
        op=op,
        framework=framework,
        layouts=(),
        semantics="",
        backends=fw.backends if fw else (),
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
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())  # some frameworks colour their messages
    if len(text) > 500:
        text = text[:497] + "..."
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
        return f"{type(exc).__name__} raised by the implementation{': ' + text if text else ''}{where}"
    return f"{type(exc).__name__}: {text}{where}"
