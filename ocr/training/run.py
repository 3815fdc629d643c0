"""One training run from a composed config: fit, re-score the best checkpoint, write the run's outputs."""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
from hydra.errors import InstantiationException
from lightning.pytorch.utilities.exceptions import SIGTERMException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ocr.data.datamodule import ReceiptDataModule
from ocr.models.dbnet import DBNet, build_dbnet
from ocr.training.batch_size import BatchPlan, batch_cap, cuda_memory_gib, halve, plan_batch
from ocr.training.callbacks import StopFile, append_json_line
from ocr.training.checks import check_config
from ocr.training.logged import cleval_name
from ocr.training.module import DBNetModule
from ocr.tuning.cache import cache_dir, write_val_cache
from ocr.utils.env import wandb_mode
from ocr.utils.errors import UserError

log = logging.getLogger(__name__)

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning")
LIGHTNING_INFO = "lightning.pytorch.utilities.rank_zero"  # the logger of Lightning's info lines (devices, tips)


def _not_a_tip(record: logging.LogRecord) -> bool:
    """False for Lightning's "💡 Tip: ... try installing litlogger / litmodels" advertisements."""
    return not str(record.msg).startswith("💡 Tip:")


def quiet_lightning() -> None:
    """Lightning's lines once each, through the root logger's handlers (Hydra's console and train.log) when
    it has some; no litlogger/litmodels tips; no `LeafSpec` deprecation warning from Lightning's own code."""
    if logging.getLogger().handlers:
        for name in LIGHTNING_LOGGERS:  # the plain stderr handlers Lightning adds on import
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(handler)
            logger.propagate = True
    info = logging.getLogger(LIGHTNING_INFO)
    if _not_a_tip not in info.filters:
        info.addFilter(_not_a_tip)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")


@contextmanager
def lightning_info_hidden() -> Iterator[None]:
    """Lightning's info lines (devices, tips) not shown in the block; its warnings still are."""
    info = logging.getLogger(LIGHTNING_INFO)
    level = info.level
    info.setLevel(logging.WARNING)
    try:
        yield
    finally:
        info.setLevel(level)


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising a `UserError` from the constructor as itself (not wrapped)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        raise cause if isinstance(cause, UserError) else err


def build_model(models: DictConfig) -> DBNet:
    """DBNet from the `models` config group (decoder and head are partials completed with channel counts)."""
    return build_dbnet(build(models.encoder), build(models.decoder), build(models.head))


def build_module(cfg: DictConfig, model: DBNet | None = None) -> DBNetModule:
    """The Lightning module for `cfg` (a fresh DBNet unless `model` is given)."""
    scheduler = build(cfg.scheduler) if cfg.get("scheduler") else None
    return DBNetModule(
        model=model or build_model(cfg.models),
        loss=build(cfg.models.loss),
        optimizer=build(cfg.optimizer),
        scheduler=scheduler,
        metric_workers=cfg.metric.workers,
        log_val_images=cfg.log_val_images,
    )


def make_logger(cfg: DictConfig, run_dir: Path) -> L.pytorch.loggers.Logger | bool:
    """WandbLogger in the mode W&B would use (offline when no API key is set), or False when disabled."""
    if "logger" not in cfg or cfg.logger is None:
        return False
    mode = wandb_mode()
    if mode == "offline" and "WANDB_MODE" not in os.environ:
        log.warning("no W&B API key set: logging offline under %s (upload later with `wandb sync`)", run_dir / "wandb")
    os.environ["WANDB_MODE"] = mode
    return build(cfg.logger, save_dir=str(run_dir), mode=mode)


def is_out_of_memory(err: BaseException) -> bool:
    """True for CUDA out-of-memory errors, however Lightning or PyTorch wrapped them."""
    return isinstance(err, torch.cuda.OutOfMemoryError) or "CUDA out of memory" in str(err)


def free_memory() -> None:
    """Release cached GPU memory after a failed attempt."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def checked_datamodule(cfg: DictConfig) -> ReceiptDataModule:
    """The run's datamodule with its train and val splits set up: the dataset checks (folders, JSON files and
    their structure, empty splits, `data.limit_*`) without decoding an image, so a mistake stops the run first."""
    datamodule = build(cfg.data, collate_fn=build(cfg.collate_fn), batch_size=cfg.batch_size)
    datamodule.setup("fit")
    return datamodule


def log_interval(trainer: DictConfig, batches: int) -> int:
    """`trainer.log_every_n_steps`, lowered to the training batches of an epoch (after `limit_train_batches`)
    so that every epoch logs its training steps."""
    limit = trainer.get("limit_train_batches")
    if isinstance(limit, float):
        batches = int(batches * limit)
    elif isinstance(limit, int):
        batches = min(batches, limit)
    return max(1, min(int(trainer.log_every_n_steps), batches))


def fit_once(
    cfg: DictConfig, run_dir: Path, plan: BatchPlan, logger: Any, datamodule: ReceiptDataModule
) -> dict[str, Any]:
    """Train with `plan`, then re-validate the best checkpoint; returns the final metrics."""
    datamodule.batch_size = plan.used
    module = build_module(cfg)
    callbacks = [build(node) for node in cfg.callbacks.values()]
    if not logger:  # the learning-rate monitor refuses to run without a logger
        callbacks = [cb for cb in callbacks if not isinstance(cb, L.pytorch.callbacks.LearningRateMonitor)]
    checkpoint = next(cb for cb in callbacks if isinstance(cb, L.pytorch.callbacks.ModelCheckpoint))
    checkpoint.dirpath = str(run_dir / "checkpoints")
    batches = math.ceil(len(datamodule.datasets["train"]) / plan.used)
    trainer: L.Trainer = build(
        cfg.trainer, logger=logger, callbacks=callbacks, accumulate_grad_batches=plan.accumulate,
        default_root_dir=str(run_dir), log_every_n_steps=log_interval(cfg.trainer, batches),
    )
    if logger:
        logger.log_hyperparams({"batch/requested": plan.requested, "batch/used": plan.used, "batch/accumulate": plan.accumulate})
    terminated = False
    try:
        try:
            trainer.fit(module, datamodule=datamodule)
        except SIGTERMException:  # a W&B agent stopping the trial (hyperband): it sends SIGKILL 30 s later
            terminated = True
            log.warning("SIGTERM: training stopped; the metrics are the best epoch's, without re-validation")
        best = checkpoint.best_model_path or None
        if terminated:
            score = checkpoint.best_model_score
            final = {} if score is None else {"val/cleval_hmean": float(score)}
        else:
            final = _revalidate(cfg, module, datamodule, best)
    finally:
        module.close_scorer()
    if best and module.keep_maps and not terminated:
        write_val_cache(run_dir, ((p.meta, p.prob) for p in module.val_predictions))
    stop = next((cb for cb in callbacks if isinstance(cb, StopFile)), None)
    return {
        **{k: float(v) for k, v in final.items() if k.startswith("val/")},
        "best_epoch": _epoch_of(best),
        "epochs_run": trainer.current_epoch,
        "best_checkpoint": best,
        "stopped_early": terminated or bool(stop and stop.stopped_early),
        "batch/requested": plan.requested,
        "batch/used": plan.used,
        "batch/accumulate": plan.accumulate,
    }


def _revalidate(cfg: DictConfig, module: DBNetModule, datamodule: L.LightningDataModule, best: str | None) -> dict:
    """Validation metrics of the best checkpoint (empty when there is none), keeping its maps if asked."""
    if not best:
        return {}
    checkpoint = _read_checkpoint(best)
    module.load_state_dict(checkpoint["state_dict"])  # the weights only: no fit state, callbacks or tips to restore
    log.info("validating the best checkpoint (epoch %d) again: %s", checkpoint["epoch"] + 1, best)  # counted from 1
    with lightning_info_hidden():  # the device lines were shown for the fit
        scorer = L.Trainer(
            logger=False, callbacks=[], enable_checkpointing=False, enable_model_summary=False,
            accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, precision=cfg.trainer.precision,
            enable_progress_bar=cfg.trainer.enable_progress_bar, limit_val_batches=cfg.trainer.limit_val_batches,
        )
    module.keep_maps = bool(cfg.cache_val_maps)
    return scorer.validate(module, datamodule=datamodule, verbose=False)[0]


def _read_checkpoint(path: str) -> dict[str, Any]:
    """A Lightning checkpoint, memory-mapped on the CPU (tensors are read when used)."""
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def _epoch_of(checkpoint_path: str | None) -> int | None:
    """The epoch stored in a Lightning checkpoint (memory-mapped: the weights are not read)."""
    if not checkpoint_path:
        return None
    return int(_read_checkpoint(checkpoint_path)["epoch"])


def tune_after_training(tuning: DictConfig, run_dir: Path, logger: Any, seed: int) -> dict[str, float]:
    """The `tuning` config's post-processing search on the run's fresh validation cache; tuned scores to log."""
    from ocr.tuning.tune import log_to_wandb, search

    config = Path(tuning.config) if tuning.config else None
    result = search(run_dir, tuning.method, int(tuning.count), config, int(tuning.workers), seed)
    log.info("post-processing search: val/cleval_hmean %.4f -> %.4f tuned (%d combinations, %.1f s; %s)",
             result.default.hmean, result.tuned_scores["hmean"], len(result.trials), result.seconds, result.files[0])
    if logger:
        log_to_wandb(result, logger.experiment)
    return {cleval_name(k, tuned=True): v for k, v in result.tuned_scores.items()}


def initial_plan(cfg: DictConfig) -> BatchPlan:
    """The requested batch capped to what the visible GPU holds (no cap on the CPU)."""
    memory = cuda_memory_gib() if cfg.trainer.accelerator in ("auto", "gpu", "cuda") else None
    plan = plan_batch(cfg.batch_size, batch_cap(cfg.image_size, memory) if memory else None)
    if plan.used < plan.requested:
        log.info("batch_size=%d capped to %d x %d accumulation steps for %.0f GiB of GPU memory",
                 plan.requested, plan.used, plan.accumulate, memory)
    return plan


def fit_with_oom_retry(
    cfg: DictConfig, run_dir: Path, logger: Any, datamodule: ReceiptDataModule
) -> dict[str, Any]:
    """`fit_once`, retried with half the batch (and twice the accumulation) after each CUDA out-of-memory error."""
    plan = initial_plan(cfg)
    while True:
        try:
            return fit_once(cfg, run_dir, plan, logger, datamodule)
        except Exception as err:  # noqa: BLE001 - only out-of-memory is retried; everything else re-raised
            if not is_out_of_memory(err):
                raise
            smaller = halve(plan)
            if smaller is None:
                raise UserError(
                    f"CUDA out of memory at batch 1 with image_size={cfg.image_size} and "
                    f"{cfg.models.encoder.model_name}; use a smaller image_size or model, or precision=bf16-mixed"
                ) from None
            log.warning("CUDA out of memory at batch %d: retrying with batch %d x %d accumulation steps",
                        plan.used, smaller.used, smaller.accumulate)
            plan = smaller
            free_memory()
            L.seed_everything(cfg.seed, workers=True, verbose=False)


def with_absolute_data_paths(cfg: DictConfig) -> DictConfig:
    """A resolved copy of `cfg` whose dataset folders are absolute, so that a run directory's config.yaml finds
    its data from any working directory (`tune-postprocess`, `predict`, ...)."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key in ("dataset_base_path", "data.dataset_base_path", "data.synthetic.dir"):
        value = OmegaConf.select(out, key, default=None)
        if isinstance(value, str) and value:
            OmegaConf.update(out, key, str(Path(value).expanduser().absolute()))
    return out


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run one training run into `run_dir`; returns (and writes) the best checkpoint's metrics.

    The dataset is checked before the W&B run and the model are created; the W&B run is finished before it
    returns (exit code 1 if training raised).
    """
    check_config(cfg)
    quiet_lightning()
    datamodule = checked_datamodule(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(with_absolute_data_paths(cfg), run_dir / "config.yaml", resolve=True)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    logger = make_logger(cfg, run_dir)
    exit_code = 1
    try:
        if logger:  # under "cfg", so a sweep's own keys (e.g. `optimizer: adamw`) keep their values in the run config
            logger.log_hyperparams({"cfg": OmegaConf.to_container(cfg, resolve=True)})
        metrics = fit_with_oom_retry(cfg, run_dir, logger, datamodule)
        if cfg.get("tuning") and cfg.tuning.count and cache_dir(run_dir).is_dir():  # not after a SIGTERM
            metrics.update(tune_after_training(cfg.tuning, run_dir, logger, cfg.seed))
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if cfg.callbacks.get("metrics_file") and cfg.callbacks.metrics_file.path:
            append_json_line(Path(cfg.callbacks.metrics_file.path), {"final": True, **metrics})
        if logger:
            logger.experiment.summary.update({k: v for k, v in metrics.items() if v is not None})
        exit_code = 0
        return metrics
    finally:
        if logger:
            logger.experiment.finish(exit_code=exit_code)
