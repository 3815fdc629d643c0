"""Local sweeps on disk. `<root>/<sweep_id>/` holds `sweep.json` (config, project, entity; written once),
`state.json` (every trial, replaced atomically under `state.lock`) and `trials/<run_id>/` (the trial's parameter,
metrics, stop and output files and its run directory)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock

from ocr.utils.compat import generate_id
from ocr.utils.errors import UserError

DEFAULT_ROOT = Path(".sweeps")
LOCAL_PREFIX = "local-"
# Ended by the agent's fate, not the parameters: ignored by the engine and run_cap, resumed by the sweep.
INTERRUPTED_STATES = ("killed", "crashed")


@dataclass
class Trial:
    """A reserved suggestion and all learnt about it. `state` is a W&B run state: pending (reserved), running,
    finished (exit 0; `stopped` if hyperband ended it), failed (exit != 0), killed (its agent was interrupted) or
    crashed (its agent died: dead pid or stale heartbeat)."""

    run_id: str
    number: int
    params: dict[str, dict[str, Any]]
    state: str = "pending"
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    search_info: dict[str, Any] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)  # host, pid, started (process identity of the agent)
    process: dict[str, Any] = field(default_factory=dict)  # pid, started (process identity of the trial)
    created: float = 0.0
    started: float | None = None
    ended: float | None = None
    heartbeat: float = 0.0
    exitcode: int | None = None
    note: str = ""
    resumes: int = 0  # times an interrupted run was started again (from its last checkpoint)
    rerun_of: str = ""  # run id of the failed or crashed trial whose parameters this one runs again

    @property
    def active(self) -> bool:
        return self.state in ("pending", "running")

    @property
    def interrupted(self) -> bool:
        return self.state in INTERRUPTED_STATES

    @property
    def label(self) -> str:
        """State as shown to users: `stopped` for a finished trial that hyperband ended early."""
        return "stopped" if self.state == "finished" and self.stopped else self.state

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class LocalSweep:
    """A sweep in the store; trials are read and changed only through `transaction()` or `trials()`."""
    dir: Path
    id: str
    config: dict[str, Any]
    project: str
    entity: str | None

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
            tmp = self.dir / ".state.json.tmp"  # written under the lock, then replaces the state file whole
            with tmp.open("w", encoding="utf-8") as fh:
                json.dump({"trials": [asdict(t) for t in trials]}, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / "state.json")


def create_sweep(root: Path, config: dict[str, Any], project: str, entity: str | None) -> LocalSweep:
    """Create a sweep folder completely under a temporary name, then rename it into place."""
    root.mkdir(parents=True, exist_ok=True)
    sweep_id = LOCAL_PREFIX + generate_id()
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


def sweep_id_or_newest(root: Path, sweep_id: str | None) -> str:
    """`sweep_id`, else the id of the newest local sweep in `root`; `UserError` when there is none."""
    if sweep_id:
        return sweep_id
    known = sweep_ids(root)
    if not known:
        raise UserError(f"no local sweep in {root}/: pass --sweep-id ID (a W&B sweep path or a local- id)")
    return known[-1]


def has_sweep(root: Path, sweep_id: str) -> bool:
    return (root / sweep_id / "sweep.json").is_file()


def is_local_sweep(root: Path, sweep_id: str) -> bool:
    """A sweep of the embedded controller: in the store `root`, or named local-... (a missing one says so on open)."""
    return has_sweep(root, sweep_id) or sweep_id.startswith(LOCAL_PREFIX)


def open_sweep(root: Path, sweep_id: str) -> LocalSweep:
    """The sweep `sweep_id` in `root`; `UserError` listing the known ids when there is none."""
    if not has_sweep(root, sweep_id):
        known = ", ".join(sweep_ids(root)) or "none"
        raise UserError(f"unknown sweep id {sweep_id!r}: no local sweep {root / sweep_id} (local sweeps: {known}); "
                        "create one with --create-sweep")
    meta = json.loads((root / sweep_id / "sweep.json").read_text(encoding="utf-8"))
    return LocalSweep(root / sweep_id, sweep_id, meta["config"], meta["project"], meta.get("entity"))
