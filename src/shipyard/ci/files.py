"""The one place `shipyard ci` touches the disk: read a workflow directory, write and remove files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from shipyard.ci.drift import FileDrift, State

SUFFIXES = (".yml", ".yaml")


def read_dir(directory: Path) -> dict[str, str]:
    """Every workflow file in `directory` by name (none when it does not exist)."""
    if not directory.is_dir():
        return {}
    out: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix in SUFFIXES and path.is_file():
            out[path.name] = path.read_text(encoding="utf-8", errors="replace")
    return out


def _write(path: Path, content: str) -> None:
    """Whole or not at all: a reader (or an interrupted run) never sees half a workflow."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply(directory: Path, expected: dict[str, str], states: list[FileDrift]) -> list[tuple[str, str]]:
    """Write what is missing or differs, remove our files the config no longer wants: (name, action)."""
    directory.mkdir(parents=True, exist_ok=True)
    done: list[tuple[str, str]] = []
    for d in states:
        if d.state is State.OK:
            done.append((d.name, "unchanged"))
        elif d.state is State.EXTRA:
            (directory / d.name).unlink(missing_ok=True)
            done.append((d.name, "removed"))
        else:
            _write(directory / d.name, expected[d.name])
            done.append((d.name, "written"))
    return done
