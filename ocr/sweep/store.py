"""On-disk store of local sweeps: one folder per sweep, its trials in one JSON file guarded by a file lock.

Layout of `<root>/<sweep_id>/`: `sweep.json` (the sweep config, project, entity; written once),
`state.json` (every trial, rewritten atomically under `state.lock`) and `trials/<run_id>/` (the trial's
parameter file, metrics file, stop file, output log and run directory).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

from ocr.sweep.trial import Trial
from ocr.utils.errors import UserError

DEFAULT_ROOT = Path(".sweeps")
LOCAL_PREFIX = "local-"


def _write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file beside `path`, then rename it over `path` (readers never see half)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True)
class LocalSweep:
    """A sweep in the store; trials are read and changed only through `transaction()` or `trials()`."""

    dir: Path
    id: str
    config: dict[str, Any]
    project: str
    entity: str | None

    @property
    def run_cap(self) -> int | None:
        return self.config.get("run_cap")

    def trial_dir(self, run_id: str) -> Path:
        return self.dir / "trials" / run_id

    def trials(self) -> list[Trial]:
        """A consistent snapshot of every trial (no lock needed: the state file is replaced atomically)."""
        data = json.loads((self.dir / "state.json").read_text(encoding="utf-8"))
        return [Trial.from_json(t) for t in data["trials"]]

    @contextmanager
    def transaction(self) -> Iterator[list[Trial]]:
        """Hold the sweep's lock; yield every trial; save the (possibly changed) list when the block ends."""
        with FileLock(str(self.dir / "state.lock")):
            trials = self.trials()
            yield trials
            _write_json_atomic(self.dir / "state.json", {"trials": [t.to_json() for t in trials]})


def new_sweep_id() -> str:
    """A fresh local sweep id (`local-` + 8 characters, W&B's id alphabet)."""
    from wandb.sdk.lib.runid import generate_id

    return LOCAL_PREFIX + generate_id()


def create_sweep(root: Path, config: dict[str, Any], project: str, entity: str | None) -> LocalSweep:
    """Create a sweep folder completely under a temporary name, then rename it into place."""
    root.mkdir(parents=True, exist_ok=True)
    sweep_id = new_sweep_id()
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{sweep_id}."))
    try:
        meta = {"id": sweep_id, "config": config, "project": project, "entity": entity, "created": time.time()}
        (tmp / "sweep.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        (tmp / "state.json").write_text(json.dumps({"trials": []}), encoding="utf-8")
        (tmp / "trials").mkdir()
        os.rename(tmp, root / sweep_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_sweep(root, sweep_id)


def sweep_ids(root: Path) -> list[str]:
    """Ids of the sweeps in `root`, oldest first (by creation time)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "sweep.json").is_file() and not p.name.startswith(".")]
    created = {p.name: json.loads((p / "sweep.json").read_text(encoding="utf-8"))["created"] for p in found}
    return sorted(created, key=created.get)


def has_sweep(root: Path, sweep_id: str) -> bool:
    return (root / sweep_id / "sweep.json").is_file()


def open_sweep(root: Path, sweep_id: str) -> LocalSweep:
    """The sweep `sweep_id` in `root`; `UserError` listing the known ids when there is none."""
    if not has_sweep(root, sweep_id):
        known = ", ".join(sweep_ids(root)) or "none"
        raise UserError(
            f"unknown sweep id {sweep_id!r}: no local sweep {root / sweep_id} (local sweeps: {known}); "
            "create one with --create-sweep"
        )
    meta = json.loads((root / sweep_id / "sweep.json").read_text(encoding="utf-8"))
    return LocalSweep(root / sweep_id, sweep_id, meta["config"], meta["project"], meta.get("entity"))
