"""The objects of a training run, instantiated from its config: model, module, datamodule, logger, trainer."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from ocr.data.datamodule import ReceiptDataModule
from ocr.models.dbnet import DBNet, build_dbnet
from ocr.training.batch_size import BatchPlan
from ocr.training.layout import BEST_CHECKPOINT
from ocr.training.module import DBNetModule
from ocr.training.quiet import lightning_info_hidden
from ocr.utils.env import wandb_mode
from ocr.utils.errors import UserError, first_line

log = logging.getLogger(__name__)
DEVICE_KEYS = ("accelerator", "devices", "strategy", "num_nodes", "precision")  # what Lightning checks on the machine


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising a `UserError` from the constructor as itself (not wrapped)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        raise cause if isinstance(cause, UserError) else err


def build_model(models: DictConfig, pretrained: bool = True) -> DBNet:
    """DBNet from the `models` config group (decoder and head are partials completed with channel counts), in
    channels-last layout when `models.channels_last` is set; `pretrained=False`: random encoder, no download."""
    encoder = build(models.encoder) if pretrained else build(models.encoder, pretrained=False, weights_file=None)
    model = build_dbnet(encoder, build(models.decoder), build(models.head))
    return model.to(memory_format=torch.channels_last) if models.get("channels_last") else model


def build_module(cfg: DictConfig, model: DBNet | None = None) -> DBNetModule:
    """The Lightning module for `cfg` (a fresh DBNet unless `model` is given)."""
    return DBNetModule(
        model=model or build_model(cfg.models),
        loss=build(cfg.models.loss),
        optimizer=build(cfg.optimizer),
        scheduler=build(cfg.scheduler) if cfg.get("scheduler") else None,
        metric_workers=cfg.metric.workers,
        log_val_images=cfg.log_val_images,
    )


def build_datamodule(cfg: DictConfig, **given: Any) -> ReceiptDataModule:
    """The run's datamodule; the `given` arguments that are not None replace the config's."""
    return build(cfg.data, collate_fn=build(cfg.collate_fn), **{k: v for k, v in given.items() if v is not None})


def build_logger(cfg: DictConfig, run_dir: Path) -> L.pytorch.loggers.Logger | bool:
    """WandbLogger in the mode W&B would use (offline when no API key is set), or False when disabled."""
    if cfg.get("logger") is None:
        return False
    mode = wandb_mode()
    if mode == "offline" and "WANDB_MODE" not in os.environ:
        log.warning("no W&B API key set: logging offline under %s (upload later with `wandb sync`)", run_dir / "wandb")
    os.environ["WANDB_MODE"] = mode
    return build(cfg.logger, save_dir=str(run_dir), mode=mode)


def log_interval(trainer: DictConfig, batches: int) -> int:
    """`trainer.log_every_n_steps`, at most an epoch's training batches (after `limit_train_batches`)."""
    limit = trainer.get("limit_train_batches")
    if isinstance(limit, float):
        batches = int(batches * limit)
    elif isinstance(limit, int):
        batches = min(batches, limit)
    return max(1, min(int(trainer.log_every_n_steps), batches))


def check_devices(trainer: DictConfig) -> None:
    """`trainer.accelerator`, `devices`, `strategy`, `num_nodes` and `precision` as Lightning accepts them on this
    machine (a Trainer of those keys alone, a few ms): one `UserError` line before W&B and the model start."""
    plain = OmegaConf.to_object(trainer)
    keys = {k: plain[k] for k in DEVICE_KEYS if k in plain}
    try:
        with lightning_info_hidden(), warnings.catch_warnings():  # the run's own Trainer shows them
            warnings.simplefilter("ignore")
            L.Trainer(**keys, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False)
    except (MisconfigurationException, ValueError, TypeError, ImportError) as err:
        given = " ".join(f"trainer.{k}={v}" for k, v in keys.items())
        raise UserError(f"{given}: Lightning cannot run this on this machine ({first_line(err)}); the defaults run "
                        "anywhere: trainer.accelerator=auto trainer.devices=1 trainer.strategy=auto "
                        "trainer.precision=32-true") from None


def build_trainer(cfg: DictConfig, run_dir: Path, plan: BatchPlan, logger: Any, train_images: int) -> L.Trainer:
    """The Trainer for `plan`, with the config's callbacks; the best checkpoint goes to `run_dir`."""
    callbacks = [build(node) for node in cfg.callbacks.values()]
    if not logger:  # the learning-rate monitor refuses to run without a logger
        callbacks = [cb for cb in callbacks if not isinstance(cb, LearningRateMonitor)]
    next(cb for cb in callbacks if isinstance(cb, ModelCheckpoint)).dirpath = str(run_dir / BEST_CHECKPOINT.parent)
    trainer = build(
        cfg.trainer, logger=logger, callbacks=callbacks, accumulate_grad_batches=plan.accumulate,
        default_root_dir=str(run_dir),
    )
    per_rank = -(-train_images // (plan.used * trainer.world_size))  # each rank sees its share of the batches
    trainer.log_every_n_steps = log_interval(cfg.trainer, per_rank)
    return trainer
