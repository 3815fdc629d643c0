"""How paths are shown to users: relative to the working directory when they lie below it."""

from __future__ import annotations

from pathlib import Path


def shown_path(path: str | Path) -> str:
    """`path` relative to the working directory when it lies below it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
