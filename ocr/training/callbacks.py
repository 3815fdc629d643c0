"""Callbacks through which a sweep controller watches and stops a run (files, see docs/ARCHITECTURE.md), and the
epoch log line; under DDP rank zero writes, and the ranks stop together."""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars

from ocr.config.checks import CLEVAL_KEYS, cleval_name


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """Plain floats from Lightning's `callback_metrics` (tensors and numbers), NaN/inf dropped."""
    numbers = convert_tensors_to_scalars(dict(metrics))
    return {k: float(v) for k, v in numbers.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def append_json_line(path: Path, record: dict) -> None:
    """Append one JSON object as a line, flushed so a reader in another process sees whole lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()


class MetricsFile(L.Callback):
    """Appends `{"epoch": n, <metrics>}` after every validation of `fit` to `path` (if given). A resumed fit first
    appends `{"restart": true, "from_epoch": n}`: readers drop the epochs from n on, logged before the interruption."""

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.path is not None and trainer.ckpt_path and trainer.is_global_zero:
            append_json_line(self.path, {"restart": True, "from_epoch": trainer.current_epoch})

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.path is None or trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        append_json_line(self.path, {"epoch": trainer.current_epoch, **scalar_metrics(trainer.callback_metrics)})


class StopFile(L.Callback):
    """Stops training within one step once `path` exists or, on several devices, once a rank gets SIGTERM (how W&B's
    agent stops a trial), on every rank at once (checked before every training step and after validation); the
    stopped epoch's few steps are not validated. `terminated`: the stop came from SIGTERM on some rank. On one device
    Lightning's own SIGTERM handling stays (it also ends a validation at once)."""

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.stopped_early = self.terminated = False

    def on_sanity_check_start(self, trainer: L.Trainer, *args: Any) -> None:
        # replaces Lightning's SIGTERM handler (registered by now), whose broadcast breaks DDP's collectives
        if trainer.world_size > 1 and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)

    on_train_start = on_validation_start = on_sanity_check_start

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.terminated = True

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.sanity_checking or self.stopped_early:
            return
        asked = self.terminated or (self.path is not None and self.path.exists())
        if trainer.strategy.reduce_boolean_decision(asked, all=False):  # one rank asks: all stop
            self.terminated = trainer.strategy.reduce_boolean_decision(self.terminated, all=False)
            trainer.should_stop = self.stopped_early = True
            trainer.check_val_every_n_epoch = sys.maxsize  # Lightning would validate the partial epoch

    on_validation_end = on_train_batch_start


class EpochSummary(L.Callback):
    """Logs one line per validation of `fit`: epoch, train/val loss and the CLEval scores."""

    KEYS = ("train/loss_epoch", "val/loss", *(cleval_name(k) for k in CLEVAL_KEYS))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = scalar_metrics(trainer.callback_metrics)
        shown = " ".join(f"{k}={metrics[k]:.4f}" for k in self.KEYS if k in metrics)
        logging.getLogger("ocr.train").info("epoch %d/%d %s", trainer.current_epoch + 1, trainer.max_epochs, shown)
