"""Seconds per training epoch on whole images and on crops, and seconds per whole-image validation: the cost side of
experiments.md §3.12 (training on crops), measured apart from validation on a quiet machine.

Each setting trains the experiment's model (hrnet_w18_small, random init, decoder 64/16, Adam) for `--epochs`
epochs without validation; the last epoch is timed (the first one also starts the loader workers). Validation of
the whole val split at each image size is timed once with `trainer.validate`.

    python bench/bench_crops.py --data ../shared/data/receipts-sroie [--epochs 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir

from ocr.training.build import build_datamodule, build_module
from ocr.training.quiet import quiet_lightning

REPO = Path(__file__).resolve().parents[1]
MODEL = ["models.encoder.model_name=hrnet_w18_small", "models.encoder.pretrained=false", "scheduler=none",
         "optimizer.lr=0.004", "models.decoder.inner_channels=64", "models.decoder.smooth_channels=16",
         "log_val_images=0", "metric.workers=1"]
SETTINGS = {  # name: overrides (experiments.md §3.12)
    "whole 512, bs 4": ["image_size=512", "batch_size=4"],
    "whole 1024, bs 4": ["image_size=1024", "batch_size=4"],
    "crops 320 x4, bs 16": ["image_size=1024", "batch_size=16", "data.augment.crop_size=320",
                            "data.augment.scale=[0.75,1.25]", "data.augment.crops_per_image=4"],
}


class EpochTimer(L.Callback):
    """Wall seconds of each training epoch."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self.start)


def config(data: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"dataset_base_path={data}", *MODEL, *overrides])


def train_epoch_seconds(data: Path, overrides: list[str], epochs: int) -> tuple[float, int]:
    """Seconds of the last of `epochs` training epochs, and the training samples per epoch."""
    cfg = config(data, overrides)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module, timer = build_datamodule(cfg), build_module(cfg), EpochTimer()
    trainer = L.Trainer(max_epochs=epochs, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        accelerator="cpu", callbacks=[timer])
    trainer.fit(module, datamodule=datamodule)
    return timer.seconds[-1], len(datamodule.datasets["train"])


def validation_seconds(data: Path, image_size: int) -> float:
    """Seconds of one validation of the val split at `image_size` (CLEval included)."""
    cfg = config(data, [f"image_size={image_size}", "batch_size=4"])
    datamodule, module = build_datamodule(cfg), build_module(cfg)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    datamodule.setup("validate")
    start = time.perf_counter()
    trainer.validate(module, datamodule=datamodule, verbose=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "receipts-sroie")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    quiet_lightning()
    rows = {}
    for name, overrides in SETTINGS.items():
        seconds, samples = train_epoch_seconds(args.data.resolve(), overrides, args.epochs)
        rows[name] = {"train_epoch_s": round(seconds, 2), "samples": samples}
        print(f"{name:22s} training epoch {seconds:7.2f} s  ({samples} samples)", flush=True)
    for size in (512, 1024):
        seconds = validation_seconds(args.data.resolve(), size)
        rows[f"validation {size}"] = {"s": round(seconds, 2)}
        print(f"validation at {size:4d} px    {seconds:7.2f} s", flush=True)
    rows["threads"] = torch.get_num_threads()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
