"""Attaching post-training results to the training run's W&B run (resumed by id; skipped when disabled)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ocr.utils.env import wandb_mode

log = logging.getLogger(__name__)

# wandb names a run's folder `run-<YYYYMMDD_HHMMSS>-<id>` (online) or `offline-run-...` (offline).
RUN_FOLDER = re.compile(r"^(?:offline-)?run-(?P<stamp>\d{8}_\d{6})-(?P<id>[A-Za-z0-9_-]+)$")


def find_wandb_run_id(run_dir: Path) -> str | None:
    """The id of the newest W&B run logged under `run_dir/wandb`, or None when the run logged none."""
    folder = Path(run_dir) / "wandb"
    if not folder.is_dir():
        return None
    found = [(m["stamp"], m["id"]) for p in folder.iterdir() if p.is_dir() and (m := RUN_FOLDER.match(p.name))]
    return max(found)[1] if found else None


@contextmanager
def attached_run(run_dir: Path, cfg: DictConfig, job_type: str) -> Iterator[Any | None]:
    """The training run's W&B run, resumed (online or offline, as WANDB_MODE says), or None.

    None when W&B is disabled, when `run_dir` has no W&B run, or when W&B cannot be reached (then a
    warning says so: the results are in the run directory anyway).
    """
    run_id = find_wandb_run_id(run_dir)
    mode = wandb_mode()
    if run_id is None or mode == "disabled":
        yield None
        return
    import wandb

    logger = cfg.get("logger") or {}
    try:
        run = wandb.init(
            id=run_id, resume="allow", mode=mode, dir=str(run_dir), job_type=job_type,
            project=logger.get("project"), entity=logger.get("entity"),
            settings=wandb.Settings(quiet=True),  # no history/summary footer: the command prints what it logged
        )
    except Exception as err:  # noqa: BLE001 - wandb raises many types for network/auth problems
        log.warning(f"could not resume W&B run {run_id} ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
                    f"results are only in {run_dir}. Set WANDB_MODE=offline to log offline and `wandb sync` later")
        yield None
        return
    try:
        yield run
    finally:
        run.finish()


def sync_command(run: Any) -> str | None:
    """`wandb sync <folder>`, which uploads what was logged to offline run `run`; None for an online run."""
    return f"wandb sync {Path(run.dir).parent}" if run.offline else None
