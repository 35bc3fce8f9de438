"""What a run shows while it goes: a live bar on a terminal, only summaries in a log."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as Bar
from rich.text import Text

from bench.results import STATUSES


def group_summary(label: str, statuses: Counter[str], seconds: float, interrupted: bool = False) -> str:
    """`torch/cpu: 60 rows, 58 ok, 2 error, 41 s`: one line per finished worker group."""
    counts = ", ".join(
        f"{statuses[s]} {s}" for s in sorted(statuses, key=lambda s: (STATUSES + (s,)).index(s))
    )
    total = sum(statuses.values())
    tail = " (interrupted)" if interrupted else ""
    return f"{label}: {total} rows{', ' + counts if counts else ''}, {seconds:.0f} s{tail}"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "eta ?"
    s = max(int(round(seconds)), 0)
    return f"eta {s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"eta {s // 60}:{s % 60:02d}"


class Progress:
    """For logs and pipes: start and end lines, warnings and one summary per finished group.

    Per-case lines would bury those in a CI log, so they are shown only on a terminal.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr

    def say(self, msg: str) -> None:
        print(msg, file=self.stream, flush=True)

    def start(self, total: int) -> None:
        pass

    def update(self, done: int, eta_s: float | None, current: str | None = None) -> None:
        pass

    def case(self, line: str) -> None:
        pass

    def stop(self) -> None:
        pass


class _EtaColumn(ProgressColumn):
    """The runner's estimate (measured rows only), counted down between events."""

    def render(self, task: Task) -> Text:
        eta, at = task.fields.get("eta_s"), task.fields.get("eta_at", 0.0)
        left = None if eta is None else eta - (time.monotonic() - at)
        return Text(format_eta(left), style="progress.remaining")


class LiveProgress(Progress):
    """A rich bar (cases done of all, ETA, what is being measured now); lines scroll above it."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Bar(
            SpinnerColumn(),
            MofNCompleteColumn(),
            BarColumn(bar_width=24),
            _EtaColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}", markup=False),
            console=console,
            transient=True,
        )
        self.task: Any = None

    def say(self, msg: str) -> None:
        self.console.print(msg, markup=False, highlight=False, soft_wrap=True)

    def start(self, total: int) -> None:
        self.task = self.bar.add_task("", total=total, current="starting", eta_s=None, eta_at=0.0)
        self.bar.start()

    def update(self, done: int, eta_s: float | None, current: str | None = None) -> None:
        if self.task is None:
            return
        fields: dict[str, Any] = {"eta_s": eta_s, "eta_at": time.monotonic()}
        if current is not None:
            fields["current"] = current
        self.bar.update(self.task, completed=done, **fields)

    def case(self, line: str) -> None:
        self.console.print(line, markup=False, soft_wrap=True)

    def stop(self) -> None:
        self.bar.stop()


def for_stream(stream: TextIO | None = None) -> Progress:
    """The live bar when `stream` is a terminal; plain lines for pipes, files and CI logs."""
    stream = stream if stream is not None else sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()) or os.environ.get("TERM") == "dumb":
        return Progress(stream)
    return LiveProgress(Console(file=stream))
