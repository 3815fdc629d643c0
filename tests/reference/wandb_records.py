"""The records of W&B offline runs, read back by wandb's own reader (`wandb leet inspect --json`, wandb >= 0.31:
the Python datastore reader of older releases is gone)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def wandb_cli() -> list[str]:
    """The `wandb` command of this interpreter's wandb package."""
    script = Path(sys.executable).with_name("wandb")
    return [str(script)] if script.is_file() else [shutil.which("wandb") or "wandb"]


def records(folder: Path) -> list[dict[str, Any]]:
    """Every record of the `.wandb` file in the offline run `folder` (or of that file), in order, as wandb's
    reader prints them (`{"type": "history", "history": {"item": {...}}}`, ...)."""
    done = subprocess.run([*wandb_cli(), "leet", "inspect", "--json", str(folder)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, f"wandb leet inspect failed on {folder}: {done.stderr[-2000:]}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def of_type(folder: Path, kind: str) -> list[dict[str, Any]]:
    """The `kind` records ("run", "history", "summary", "exit", ...) of the offline run `folder`."""
    return [r[kind] for r in records(folder) if r.get("type") == kind]


def offline_folders(run_dir: Path) -> dict[str, list[Path]]:
    """{run id: its offline-run-* folders under run_dir/wandb, oldest first}."""
    found: dict[str, list[Path]] = {}
    for folder in sorted(Path(run_dir, "wandb").glob("offline-run-*")):
        found.setdefault(folder.name.rsplit("-", 1)[1], []).append(folder)
    return found
