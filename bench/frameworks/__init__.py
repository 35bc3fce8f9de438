"""The harness <-> framework seam: one description and one adapter per framework.

A framework is two modules in this folder, found by discovery (no list to edit):
- `<name>.py` defines `FRAMEWORK`, a `Framework`: what it is, which backends an implementation
  runs on and how they expand into worker groups, its environment and thread settings, whether it
  is installed, which tensors it takes. Importable without the framework: the parent process,
  which never imports a framework, plans the sweep from it.
- `<tensors>_adapter.py` defines `make(physical) -> Adapter`: tensors in and out, sync, gradients,
  clocks, memory and copy bandwidth. It imports its framework at the top, so only a worker process
  imports it. Frameworks without tensors of their own (Keras, Triton) name another's adapter.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bench.cases import Case
from bench.errors import BenchError

if TYPE_CHECKING:  # the parent imports this module and must not need numpy to install it
    import numpy as np


class OutputError(Exception):
    """An implementation returned something the checker cannot compare (wrong type or shape)."""


class Clock(Protocol):
    """Times k back-to-back calls: (latency per call, device time per call)."""

    kind: str

    def measure(self, run: Callable[[int, bool], Any], k: int) -> tuple[float, float]: ...


class Adapter(Protocol):
    """What the worker needs from a tensor framework; each `*_adapter.py` module's `make` returns one.

    `physical`: tensors have the physical shape of their layout ((N, H, W, C) for NHWC), as Keras
    wants on every backend; otherwise torch's convention of logical NCHW with channels_last memory.
    """

    name: str
    mutable_inputs: bool  # an implementation can change its input in place (torch, numpy)

    def version(self) -> str: ...
    def setup(self, threads: int, device: str) -> None: ...
    def device_name(self, device: str) -> str: ...
    def cache_bytes(self, device: str) -> int: ...
    def to_tensor(self, x64: np.ndarray, case: Case) -> Any: ...
    def to_numpy(self, out: Any, case: Case, what: str = "output") -> np.ndarray: ...
    def gather(self, out: Any, case: Case, idx: tuple[np.ndarray, ...], what: str = "output") -> list[float]:
        """Values of `out` at logical (n, c, h, w) positions, as floats: the sampled part of an
        output the parent checks (`bench.verify`), read without converting the whole tensor."""
        ...

    def dtype_name(self, out: Any) -> str: ...
    def guarded(self) -> list[tuple[str, Any]]:
        """(name, module or class) whose functions an implementation could replace for the others
        in its worker (`bench.guard`): the framework's own, where its ops live."""
        ...

    def global_state(self) -> dict[str, Any]:
        """Process-wide settings of the framework that change how others run: thread counts,
        deterministic mode, flush-to-zero, matmul precision (comparable values)."""
        ...

    def set_global_state(self, state: dict[str, Any]) -> None: ...
    def finish(self, out: Any, device: str) -> Any: ...
    def make_call(
        self, fn: Callable[[Any], Any], case: Case, xs: Sequence[Any], g64: np.ndarray | None
    ) -> Callable[[int], Any]: ...
    def forward_once(self, fn: Callable[[Any], Any], x: Any) -> Any: ...
    def snapshot(self, xs: Sequence[Any]) -> Any: ...
    def changed(self, xs: Sequence[Any], snapshot: Any, full: bool) -> int: ...
    def restore(self, xs: Sequence[Any], snapshot: Any) -> None: ...
    def is_oom(self, exc: BaseException) -> bool: ...
    def clock(self, device: str) -> Clock | None: ...
    def measure_memory(self, call: Callable[[], Any], device: str) -> tuple[int, Any]: ...
    def nbytes(self, out: Any) -> int: ...
    def copy_pieces(self, device: str, piece_bytes: int, count: int) -> Callable[[Sequence[int]], None]:
        """`count` float32 sources of `piece_bytes` each (and destinations, where the framework
        copies into one) on the device, written now; the call copies the pieces at the given
        indices and waits for the device (`bench.memory.Copier` times it)."""
        ...

    def copy_op(self, mode: str) -> Callable[[Any], Any]:
        """The least work that moves a case's bytes, into fresh outputs from the framework's
        allocator: forward a copy of the input; backward (and train's) dx = dy * x, one pass that
        reads the two tensors a normalization's backward reads and writes one. Each case's speed of
        light is this call, timed beside the implementations on the same buffers (`bench.worker`),
        in the framework's cheapest form: a correct call cannot cost less."""
        ...


class ImmutableInputs:
    """For adapters whose arrays cannot be written in place (JAX, TensorFlow): nothing to check."""

    mutable_inputs = False

    def snapshot(self, xs: Sequence[Any]) -> Any:
        return None

    def changed(self, xs: Sequence[Any], snapshot: Any, full: bool) -> int:
        return 0

    def restore(self, xs: Sequence[Any], snapshot: Any) -> None:
        pass


class Framework:
    """A framework's description. Subclass it in `bench/frameworks/<name>.py` as `FRAMEWORK`.

    Lifecycle: the parent reads `installed`, `expand` and `env` to plan worker groups; the worker
    loads `adapter_module(backend)` and builds the adapter with `physical_shapes`.
    """

    name: str = ""  # what @register(framework=...) says
    title: str = ""  # for people: "PyTorch"
    modules: tuple[str, ...] = ()  # import names that must be present
    requirement: str = ""  # pip requirement for a CPU install (pinned: see bench/install.py)
    packages: tuple[str, ...] = ()  # distributions whose versions the env sidecar records
    backends: tuple[str, ...] = ()  # what an implementation runs on unless it says otherwise
    known_backends: tuple[str, ...] = ()  # what `backends=` may name; empty: anything
    legacy_prefix: str = ""  # file-name prefix of old files whose declaration cannot be read
    tensors: str = ""  # the adapter's name: "torch" for torch_adapter.py; "" = the backend's
    physical_shapes: bool = False  # tensors take the physical shape of their layout
    no_autograd: str = ""  # why backward/train cannot run, when the framework cannot differentiate
    copy_priority: int = 0  # who measures the speed-of-light copy: highest installed wins

    per_backend_groups: bool = False  # a backend is fixed per process: one worker group (and variant) each

    def expand(self, backends: tuple[str, ...]) -> tuple[str | None, ...]:
        """Worker groups an implementation declaring `backends` runs in: a backend that must be
        fixed per process is one group each; otherwise one group, None."""
        return backends if self.per_backend_groups else (None,)

    def row_backend(self, impl_backends: tuple[str, ...], group_backend: str | None) -> str:
        """The `backend` column of a row: the group's when groups are per backend."""
        return group_backend or (impl_backends[0] if impl_backends else "")

    def missing(self, backend: str | None = None) -> str | None:
        """Why this framework (on `backend`) cannot run here, or None when it can."""
        for module in self.modules:
            if not installed(module):
                return f"{self.name} is not installed (no module {module!r})"
        return None

    def env(self, threads: int, backend: str | None) -> dict[str, str]:
        """Environment of a worker of this framework, set before it starts: thread pools, backend."""
        return {}

    def adapter_module(self, backend: str | None) -> str:
        return f"bench.frameworks.{self.tensors or backend}_adapter"


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@cache
def frameworks() -> dict[str, Framework]:
    """Every framework description in this folder, by name: discovery, not a list."""
    found: dict[str, Framework] = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name.startswith("_") or info.name.endswith("_adapter"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        fw = getattr(module, "FRAMEWORK", None)
        if isinstance(fw, Framework):
            found[fw.name] = fw
    return dict(sorted(found.items()))


def variant(impl: str, framework: str, backend: str) -> str:
    """How people tell rows apart: `impl[backend]` where one implementation runs on several backends."""
    fw = frameworks().get(framework)
    return f"{impl}[{backend}]" if fw is not None and fw.per_backend_groups else impl


def get(name: str) -> Framework:
    known = frameworks()
    if name not in known:
        raise BenchError(f"unknown framework {name!r}; expected one of: {', '.join(known)}")
    return known[name]


def make_adapter(framework: str, backend: str | None) -> Adapter:
    """The adapter a worker of this group uses (imports the framework: worker processes only)."""
    fw = get(framework)
    module = importlib.import_module(fw.adapter_module(backend))
    adapter: Adapter = module.make(physical=fw.physical_shapes)
    return adapter


def thread_env(threads: int) -> dict[str, str]:
    """One thread count for every library a worker may load: OpenMP, MKL, OpenBLAS, Numba."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "NUMBA_NUM_THREADS": n}


def cpu_cache_bytes() -> int:
    """Size of the last-level cache the OS reports, from sysfs (32 MiB if it cannot be read).

    A virtual machine may report less than the host really has: the run measures the effective
    size (bench.memory.effective_cache) and sizes its cold-cache rotation from that instead.
    """
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1], 1)
        best = max(best, int(text.rstrip("KMG")) * mult)
    return best or 32 * 1024**2
