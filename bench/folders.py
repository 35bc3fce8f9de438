"""Folders and .py files named on the command line (--impl-path, --op-path): the .py files in them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bench.errors import BenchError


def python_files(entries: Iterable[str], option: str) -> list[Path]:
    """Each entry's .py files: a directory's, sorted, or the .py file itself; anything else is an
    error naming the entry as `option` gave it."""
    files: list[Path] = []
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            files += sorted(path.glob("*.py"))
        elif path.is_file() and path.suffix == ".py":
            files.append(path)
        else:
            raise BenchError(f"{option} {entry!r} is neither a directory nor a .py file")
    return files
