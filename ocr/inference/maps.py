"""A trained DBNet over images: the validation pass that fills the cache, and prediction over a split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from ocr.data.datamodule import ReceiptDataModule, stack_images
from ocr.data.dataset import ReceiptDataset
from ocr.inference.runs import RunRef, load_model, load_run_config
from ocr.training.build import build_datamodule, build_module
from ocr.training.module import crop_valid, probability_maps
from ocr.training.quiet import lightning_info_hidden, quiet_lightning
from ocr.training.val_cache import write_val_cache
from ocr.utils.errors import UserError

AUTOCAST_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


def run_datamodule(
    cfg: DictConfig, data: Path | None = None, batch_size: int | None = None, num_workers: int | None = None
) -> ReceiptDataModule:
    """The run's datamodule; `data` (the dataset root), `batch_size` and `num_workers` replace the run's when given."""
    return build_datamodule(cfg, dataset_base_path=data and str(data), batch_size=batch_size,
                            val_batch_size=batch_size, num_workers=num_workers)


def build_val_cache(
    run: RunRef, data: Path | None = None, batch_size: int | None = None, num_workers: int | None = None
) -> tuple[Path, dict[str, float]]:
    """Validate the run's checkpoint exactly as training does and cache its maps; returns (cache dir, metrics)."""
    quiet_lightning()
    cfg = load_run_config(run.run_dir)
    module = build_module(cfg, model=load_model(run, cfg))
    module.keep_maps = True
    with lightning_info_hidden():  # the device lines of a Trainer that only validates
        trainer = L.Trainer(
            logger=False, callbacks=[], accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices,
            precision=cfg.trainer.precision, limit_val_batches=cfg.trainer.limit_val_batches, enable_model_summary=False,
        )
    with module.scorer:
        results = trainer.validate(module, datamodule=run_datamodule(cfg, data, batch_size, num_workers), verbose=False)
    return write_val_cache(run.run_dir, module.val_maps), {k: float(v) for k, v in results[0].items()}


def pick_device(name: str | None) -> torch.device:
    """`name`, else the GPU when there is one, else the CPU; a device this machine lacks is a `UserError`."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"--device {name!r} is not a torch device ({err}); use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (device.index or 0) >= (visible := torch.cuda.device_count()):
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
    """(number of images, lazy predictions) for every image of `dataset`, in its order; an image that cannot be
    decoded yields an empty prediction with ``meta["corrupt"]`` set (the dataset logs a warning naming it)."""
    cfg = load_run_config(run.run_dir)
    model = load_model(run, cfg).to(device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=stack_images)
    dtype = AUTOCAST_DTYPES.get(str(cfg.trainer.precision))  # the autocast Lightning applies (none for 32-bit)

    def generate() -> Iterator[Prediction]:
        for batch in loader:
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(batch["images"].to(device))["prob_logits"]
            for prob, meta in zip(probability_maps(logits), batch["meta"]):
                if meta.get("corrupt"):
                    yield Prediction(meta, None, [])
                    continue
                cropped = crop_valid(prob, meta)
                polygons, _ = postprocess(cropped, meta["scale"], meta["orig_hw"])
                yield Prediction(meta, cropped.astype(np.float16) if keep_maps else None, polygons)

    return len(dataset), generate()
