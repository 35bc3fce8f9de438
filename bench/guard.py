"""What one implementation could change for the others in its worker: the functions of the
framework and of normbench itself (a wrapped `F.group_norm`, a patched checker or clock), and the
process's global state (thread counts, deterministic mode, flush-to-zero, matmul precision, the
thread variables and CPU affinity), and Python threads left running after a call (work finished in
the background competes with the next implementation's timing). A `Guard` takes a picture once the
worker has loaded its framework; `check()` after each implementation's import, build and sampling
round compares, puts everything back as it was (waits for the threads), and says what had changed,
so the row of the implementation that did it names it and no other implementation runs with it."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
_MISSING = object()
MAX_NAMED = 4  # changes named in one message; the rest are counted
THREAD_WAIT_S = 10.0  # how long the threads an implementation left running are waited for


class Tampered(Exception):
    """An implementation changed what the others run with (it has been put back)."""


def _namespaces(extra: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """normbench's modules and the classes they define, the operators' from elsewhere (--op-path,
    entry points), the clock and collector modules it reads, and what the adapter names (its
    framework's functions and tensor class)."""
    from bench import operators

    spaces: list[tuple[str, Any]] = [("time", time), ("gc", gc), *operators.modules()]
    for name, module in sorted(sys.modules.items()):
        if module is None or not (name == "bench" or name.startswith("bench.")):
            continue
        spaces.append((name, module))
        for attr, value in list(vars(module).items()):
            if isinstance(value, type) and getattr(value, "__module__", "") == name:
                spaces.append((f"{name}.{attr}", value))
    return spaces + extra


def _same_value(before: Any, after: Any) -> bool:
    """Data rebound to an equal value (time.tzset() rebinds time.tzname), or a submodule imported."""
    if isinstance(after, types.ModuleType) and before is _MISSING:
        return True
    if before is _MISSING or after is _MISSING or callable(before) or type(before) is not type(after):
        return False
    try:
        return bool(before == after)
    except Exception:  # noqa: BLE001  an exotic __eq__: a change, to be safe
        return False


def _its_own(space: str, before: Any, after: Any) -> bool:
    """A framework changing itself: the new value's code lives in the framework's own package (torch
    wraps torch.manual_seed when torch._dynamo loads). normbench never changes itself this way, nor
    does an operator (its spaces, "operator:<module>", name no package)."""
    top = space.split(".")[0]
    package = sys.modules.get(top)
    where = getattr(package, "__file__", None)
    if top == "bench" or after is _MISSING or not where:
        return False
    root = os.path.dirname(where) + os.sep
    code = getattr(after, "__code__", None)
    if code is not None:
        return str(code.co_filename).startswith(root)
    return before is not _MISSING and str(getattr(after, "__module__", "") or "").split(".")[0] == top


class Guard:
    def __init__(
        self,
        namespaces: list[tuple[str, Any]],
        state: Callable[[], dict[str, Any]],
        set_state: Callable[[dict[str, Any]], None],
    ) -> None:
        self.spaces = _namespaces(namespaces)
        self.state, self.set_state = state, set_state
        self.saved = [(name, obj, dict(vars(obj))) for name, obj in self.spaces]
        self.saved_state = self._state()
        self.threads = set(threading.enumerate())

    def _state(self) -> dict[str, Any]:
        out = dict(self.state())
        out.update({f"${v}": os.environ.get(v) for v in THREAD_VARIABLES})
        if hasattr(os, "sched_getaffinity"):
            out["CPU affinity"] = tuple(sorted(os.sched_getaffinity(0)))
        return out

    def _threads_left(self, allowed: bool) -> str:
        """Python threads started since the picture and still alive. Where threads may be started
        (an import, a build, a first call: a pool kept for later calls), they join the picture;
        elsewhere they are named and waited for, so that no neighbour is timed beside them."""
        new = [t for t in threading.enumerate() if t not in self.threads]
        if allowed or not new:
            self.threads.update(new)
            return ""
        deadline = time.monotonic() + THREAD_WAIT_S
        for t in new:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in new if t.is_alive()]
        self.threads.update(alive)  # named once; they cannot be stopped from outside
        left = f"{len(new)} Python thread{'s' if len(new) > 1 else ''} left running"
        waited = f" ({len(alive)} still alive after {THREAD_WAIT_S:g} s)" if alive else " (waited for)"
        return left + waited

    def check(self, threads_allowed: bool = True) -> str:
        """ "" when nothing changed; else what did (now put back), in one line."""
        changes: list[str] = []
        left = self._threads_left(threads_allowed)
        if left:
            changes.append(left)
        for name, obj, saved in self.saved:
            now = vars(obj)
            if len(now) == len(saved) and all(now.get(k, _MISSING) is v for k, v in saved.items()):
                continue
            for key in sorted(set(now) | set(saved)):
                before, after = saved.get(key, _MISSING), now.get(key, _MISSING)
                if before is after:
                    continue
                if _same_value(before, after) or _its_own(name, before, after):
                    saved[key] = after  # a submodule imported, or the framework changing itself
                    continue
                what = "added" if before is _MISSING else "removed" if after is _MISSING else "replaced"
                changes.append(f"{name}.{key} {what}")
                try:
                    if before is _MISSING:
                        delattr(obj, key)
                    else:
                        setattr(obj, key, before)
                except (AttributeError, TypeError):
                    changes[-1] += " (could not be put back)"
        state = self._state()
        for key in state.keys() - self.saved_state.keys():  # a framework imported since (numba)
            self.saved_state[key] = state[key]
        if any(state.get(k) != v for k, v in self.saved_state.items()):
            for key, before in self.saved_state.items():
                if state.get(key) != before:
                    changes.append(f"{key} {state.get(key)!r} (was {before!r})")
            for v in THREAD_VARIABLES:
                value = self.saved_state[f"${v}"]
                if value is None:
                    os.environ.pop(v, None)
                else:
                    os.environ[v] = value
            if "CPU affinity" in self.saved_state:
                os.sched_setaffinity(0, self.saved_state["CPU affinity"])
            self.set_state(self.saved_state)
        if not changes:
            return ""
        named = ", ".join(changes[:MAX_NAMED]) + (
            f" and {len(changes) - MAX_NAMED} more" if len(changes) > MAX_NAMED else ""
        )
        return named

    def raise_if_changed(self, when: str, threads_allowed: bool = False) -> None:
        changed = self.check(threads_allowed)
        if changed:
            raise Tampered(
                f"changes what other implementations run with, {when}: {changed} (put back; not measured)"
            )
