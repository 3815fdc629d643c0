"""Attaching post-training results to the training run's W&B run (resumed by id; skipped when disabled)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import wandb
from omegaconf import DictConfig

from ocr.inference.runs import load_run_metrics
from ocr.utils.env import wandb_mode

log = logging.getLogger(__name__)


@contextmanager
def attached_run(run_dir: Path, cfg: DictConfig, job_type: str) -> Iterator[Any | None]:
    """The training run's W&B run (named in metrics.json), resumed online or offline as WANDB_MODE says; None when
    W&B is disabled, the run logged to none, or W&B cannot be reached (then a warning says so)."""
    run_id = load_run_metrics(run_dir).get("wandb_run_id")
    mode = wandb_mode()
    if run_id is None or mode == "disabled":
        yield None
        return
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
