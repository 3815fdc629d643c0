"""One training run from a composed config: instantiate, fit, validate the best checkpoint, write the outputs.
Under DDP every rank runs `train`; the run's files, the W&B summary and `after_fit` are rank zero's."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.memory import garbage_collection_cuda, is_oom_error
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ocr.config.checks import check_config
from ocr.data.datamodule import ReceiptDataModule
from ocr.training.batch_size import BatchPlan, halve, initial_plan, shared_with_ranks
from ocr.training.build import build_datamodule, build_logger, build_module, build_trainer, check_devices
from ocr.training.callbacks import StopFile, append_json_line
from ocr.training.layout import BEST_CHECKPOINT, CONFIG_FILE, METRICS_FILE
from ocr.training.quiet import quiet_lightning
from ocr.training.val_cache import write_rank_caches
from ocr.utils.errors import UserError

log = logging.getLogger(__name__)
AfterFit = Callable[[Path, Any], dict[str, Any]]
RESUME_ENV = "OCR_RESUME"  # 1: a sweep agent starts an interrupted trial again in its run directory
LAST_CHECKPOINT = BEST_CHECKPOINT.parent / "last.ckpt"  # ModelCheckpoint(save_last=True): the last validated epoch
OOM_AGREE_S = 60.0  # how long a rank out of memory waits for the others: they run out within the same step, or never


def train(cfg: DictConfig, run_dir: Path, after_fit: AfterFit | None = None) -> dict[str, Any]:
    """Train into `run_dir`; returns (and writes) the best checkpoint's metrics, plus `after_fit(run_dir, logger)`'s.
    The dataset is checked before the W&B run and the model exist; the W&B run is finished (exit code 1 on error)."""
    check_config(cfg)
    quiet_lightning()
    check_devices(cfg.trainer)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")  # the dataset checks (folders, JSON files, empty splits) without decoding an image
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:
        OmegaConf.save(with_absolute_data_paths(cfg), run_dir / CONFIG_FILE)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    logger = build_logger(cfg, run_dir)
    exit_code = 1
    try:
        if logger:  # under "cfg", so a sweep's own keys (e.g. `optimizer: adamw`) keep their values in the run config
            logger.log_hyperparams({"cfg": OmegaConf.to_container(cfg, resolve=True)})
        metrics = fit_with_oom_retry(cfg, run_dir, logger, datamodule)
        write_outputs(cfg, run_dir, metrics, logger, after_fit)
        exit_code = 0
        return metrics
    finally:
        if logger:
            logger.experiment.finish(exit_code=exit_code)


@rank_zero_only
def write_outputs(cfg: DictConfig, run_dir: Path, metrics: dict[str, Any], logger: Any, after_fit: AfterFit | None
                  ) -> None:
    """`after_fit`'s metrics added to `metrics`, then metrics.json, the metrics file's final line, the W&B summary."""
    if after_fit is not None:
        metrics.update(after_fit(run_dir, logger))
    metrics["wandb_run_id"] = logger.version if logger else None  # post-training commands log to this run
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    append_to_metrics_file(cfg, {"final": True, **metrics})
    if logger:
        logger.experiment.summary.update({k: v for k, v in metrics.items() if v is not None})


def fit_with_oom_retry(cfg: DictConfig, run_dir: Path, logger: Any, datamodule: ReceiptDataModule) -> dict[str, Any]:
    """`fit` (from the last checkpoint when resuming), retried from scratch with half the batch (and twice the
    accumulation) after each out-of-memory error."""
    plan, last = initial_plan(cfg), run_dir / LAST_CHECKPOINT
    ckpt_path = str(last) if os.environ.get(RESUME_ENV) == "1" and last.is_file() else None
    while True:
        try:
            return fit(cfg, run_dir, plan, logger, datamodule, ckpt_path)
        except Exception as err:  # noqa: BLE001 - only out-of-memory is retried; everything else re-raised
            if not caused_by_oom(err):
                raise
            smaller = halve(plan)
            if smaller is None:
                raise UserError(f"CUDA out of memory at batch 1 with image_size={cfg.image_size} and "
                                f"{cfg.models.encoder.model_name}; use a smaller image_size or model, or "
                                "precision=bf16-mixed") from None
            log.warning("CUDA out of memory at batch %d: retrying with batch %d x %d accumulation steps",
                        plan.used, smaller.used, smaller.accumulate)
            plan, ckpt_path = smaller, None
            # readers of the metrics file drop the failed attempt's epochs: the retry logs from epoch 0
            append_to_metrics_file(cfg, {"restart": True, "batch/used": plan.used})
            garbage_collection_cuda()
            L.seed_everything(cfg.seed, workers=True, verbose=False)


def caused_by_oom(err: BaseException | None) -> bool:
    """Lightning's `is_oom_error` (CUDA, cuDNN, CPU allocator) on `err` or an exception it was raised from."""
    seen = set()
    while err is not None and id(err) not in seen:
        if is_oom_error(err):
            return True
        seen.add(id(err))
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)  # `from None`: not caused
    return False


@rank_zero_only
def append_to_metrics_file(cfg: DictConfig, record: dict[str, Any]) -> None:
    """Append `record` to the metrics file a sweep controller reads, when the run has one."""
    if cfg.callbacks.get("metrics_file") and cfg.callbacks.metrics_file.path:
        append_json_line(Path(cfg.callbacks.metrics_file.path), record)


def fit(cfg: DictConfig, run_dir: Path, plan: BatchPlan, logger: Any, datamodule: ReceiptDataModule,
        ckpt_path: str | None = None) -> dict[str, Any]:
    """Train with `plan` (from `ckpt_path` if given), then validate the best checkpoint (caching its maps when asked);
    returns its metrics."""
    datamodule.batch_size = plan.used
    if plan.val_cap is not None:  # crops: whole validation images take more memory than the training crops
        datamodule.val_batch_size = min(cfg.data.val_batch_size or plan.used, plan.val_cap)
    module = build_module(cfg)
    trainer = build_trainer(cfg, run_dir, plan, logger, len(datamodule.datasets["train"]))
    batch = {"batch/requested": plan.requested, "batch/used": plan.used, "batch/accumulate": plan.accumulate,
             "batch/val": datamodule.val_batch_size or plan.used}
    if logger:
        logger.log_hyperparams(batch)
    stops = [cb for cb in trainer.callbacks if isinstance(cb, StopFile)]
    # the scorer's worker processes serve every validation of the fit and the best checkpoint's
    with module.scorer, failures_settled_across_ranks(run_dir, plan, trainer):
        try:
            with shared_with_ranks(plan):  # DDP's other ranks start in `fit`
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
            terminated = any(cb.terminated for cb in stops)
        except SIGTERMException:  # Lightning's own handler: one device, or before StopFile takes SIGTERM over
            terminated = True
        if terminated:  # a W&B agent stopping the trial (hyperband): it sends SIGKILL 30 s later
            log.warning("SIGTERM: training stopped; the metrics are the best epoch's, without re-validation")
        best = trainer.checkpoint_callback.best_model_path or None
        if terminated or not best:
            score = trainer.checkpoint_callback.best_model_score
            final = {} if score is None else {"val/cleval_hmean": float(score)}
        else:
            trainer.logger = None  # the W&B run already has every epoch's validation; this one goes to its summary
            module.keep_maps = bool(cfg.cache_val_maps)
            with warnings.catch_warnings():  # each image is scored once under DDP (DBNetModule), repeats or not
                warnings.filterwarnings("ignore", message="Using `DistributedSampler` with the dataloaders")
                final = trainer.validate(module, datamodule=datamodule, ckpt_path="best", verbose=False)[0]
    if module.keep_maps:
        write_rank_caches(run_dir, module.val_maps, trainer.strategy)
    stopped = terminated or any(cb.stopped_early for cb in stops)
    return {
        **{k: float(v) for k, v in final.items() if k.startswith("val/")},
        "best_epoch": module.checkpoint_epoch if best else None,
        "epochs_run": trainer.current_epoch,
        "best_checkpoint": best,
        "stopped_early": stopped,
        **batch,
    }


@contextmanager
def failures_settled_across_ranks(run_dir: Path, plan: BatchPlan, trainer: L.Trainer) -> Iterator[None]:
    """Under DDP, an out-of-memory error in the block is retried only when every rank ran out (each waits up to
    `OOM_AGREE_S` for the others' marks in the run directory); when some did not, which would leave them waiting in a
    collective, every rank ends with one line, rank zero stopping the ranks it started. Other errors pass unchanged."""
    try:
        yield
    except Exception as err:
        if trainer.world_size == 1:
            raise
        marks = run_dir / ".oom" / f"{os.environ.get('MASTER_PORT', 'run')}-{plan.used}"  # this launch, this attempt
        if caused_by_oom(err):
            marks.mkdir(parents=True, exist_ok=True)
            (marks / str(trainer.global_rank)).touch()
            deadline = time.monotonic() + OOM_AGREE_S
            while len(list(marks.iterdir())) < trainer.world_size and time.monotonic() < deadline:
                time.sleep(0.2)
        ranks = sorted(int(p.name) for p in marks.iterdir()) if marks.is_dir() else []
        if ranks and len(ranks) < trainer.world_size:
            if trainer.strategy.launcher is not None:
                trainer.strategy.launcher.kill(signal.SIGKILL)  # rank zero: the ranks still waiting in a collective
            raise UserError(f"CUDA out of memory on rank {', '.join(map(str, ranks))} of {trainer.world_size} only, "
                            f"at batch {plan.used} per device: the ranks of a run can only retry together; lower "
                            "batch_size or free the memory other processes hold on that GPU") from None
        raise


def with_absolute_data_paths(cfg: DictConfig) -> DictConfig:
    """A resolved copy of `cfg` with absolute dataset folders: a run's config.yaml finds its data from anywhere."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key in ("dataset_base_path", "data.dataset_base_path", "data.synthetic.dir"):
        value = OmegaConf.select(out, key, default=None)
        if isinstance(value, str) and value:
            OmegaConf.update(out, key, str(Path(value).expanduser().absolute()))
    return out
