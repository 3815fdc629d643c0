"""Running a trained DBNet: the validation pass that fills the cache, and prediction over a split's images."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from ocr.data.datamodule import stack_images
from ocr.data.dataset import ReceiptDataset
from ocr.training.module import crop_valid, probability_maps
from ocr.tuning.cache import write_val_cache
from ocr.tuning.runs import RunRef, load_model, load_run_config
from ocr.utils.errors import UserError

log = logging.getLogger(__name__)
AUTOCAST_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


def datamodule_config(cfg: DictConfig, data: Path | None, batch_size: int | None, num_workers: int | None) -> DictConfig:
    """The run's `data` node with the dataset root, batch size and loader workers optionally replaced."""
    node = OmegaConf.to_container(cfg.data, resolve=True)
    if data is not None:
        node["dataset_base_path"] = str(data)
    if batch_size is not None:
        node["batch_size"], node["val_batch_size"] = batch_size, None
    if num_workers is not None:
        node["num_workers"] = num_workers
    return OmegaConf.create(node)


def dataset_root(cfg: DictConfig, data: Path | None = None) -> Path:
    """The run's dataset root (`data` if given; the synthetic dataset when the run trained on it)."""
    from ocr.training.run import build

    return build(datamodule_config(cfg, data, None, None)).dataset_root()


def build_val_cache(
    run: RunRef, data: Path | None = None, batch_size: int | None = None, num_workers: int | None = None
) -> tuple[Path, dict[str, float]]:
    """Validate the run's checkpoint exactly as training does and cache its maps; returns (cache dir, metrics)."""
    from ocr.training.run import build, build_module, lightning_info_hidden, quiet_lightning

    quiet_lightning()
    cfg = load_run_config(run.run_dir)
    module = build_module(cfg, model=load_model(run, cfg))
    module.keep_maps = True
    datamodule = build(datamodule_config(cfg, data, batch_size, num_workers), collate_fn=build(cfg.collate_fn))
    with lightning_info_hidden():  # the device lines of a Trainer that only validates
        trainer = L.Trainer(
            logger=False, callbacks=[], accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices,
            precision=cfg.trainer.precision, enable_progress_bar=True, limit_val_batches=cfg.trainer.limit_val_batches,
            enable_model_summary=False,
        )
    try:
        metrics = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule, verbose=False)[0].items()}
    finally:
        module.close_scorer()
    info = {"checkpoint": str(run.checkpoint), **{k: v for k, v in metrics.items() if k.startswith("val/cleval")}}
    path = write_val_cache(run.run_dir, ((p.meta, p.prob) for p in module.val_predictions), info=info)
    return path, metrics


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast Lightning applies for `precision` (none for 32-bit)."""
    dtype = AUTOCAST_DTYPES.get(str(precision))
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def pick_device(name: str | None) -> torch.device:
    """`name`, else the GPU when there is one, else the CPU; a device this machine lacks is a `UserError`."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"--device {name!r} is not a torch device ({err}); use cpu, cuda or cuda:N") from None
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= visible:
        raise UserError(f"--device {name}: this machine has {visible} usable CUDA GPU(s); use --device cpu, or leave "
                        "--device out to take the GPU when there is one")
    return device


@dataclass(frozen=True)
class Prediction:
    """One image: its sample metadata (no pixels), float16 map cropped to the image, and polygons."""

    meta: dict[str, Any]
    prob: np.ndarray | None
    polygons: list[np.ndarray]


def predict_split(
    run: RunRef,
    dataset: ReceiptDataset,
    postprocess: Any,
    device: torch.device,
    batch_size: int = 1,
    num_workers: int = 0,
    keep_maps: bool = False,
) -> tuple[int, Iterator[Prediction]]:
    """(number of images, lazy predictions) for every image of `dataset`, in its order.

    An image that cannot be decoded yields an empty prediction with ``meta["corrupt"]`` set (the
    dataset logs a warning naming it); the others are unaffected.
    """
    cfg = load_run_config(run.run_dir)
    model = load_model(run, cfg).to(device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=stack_images)

    def generate() -> Iterator[Prediction]:
        for batch in loader:
            with torch.inference_mode(), autocast(cfg.trainer.precision, device):
                logits = model(batch["images"].to(device))["prob_logits"]
            for prob, meta in zip(probability_maps(logits), batch["meta"]):
                if meta.get("corrupt"):
                    yield Prediction(meta, None, [])
                    continue
                cropped = crop_valid(prob, meta)
                polygons, _ = postprocess(cropped, meta["scale"], meta["orig_hw"])
                yield Prediction(meta, cropped.astype(np.float16) if keep_maps else None, polygons)

    return len(dataset), generate()
