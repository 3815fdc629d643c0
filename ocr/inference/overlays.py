"""Overlays of predicted (red) and true (green) polygons on chosen images, as PNG files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ocr.data.dataset import ReceiptDataset
from ocr.inference.maps import run_datamodule
from ocr.inference.runs import load_run_config
from ocr.postprocess.db_postprocess import DBPostProcessor
from ocr.training.module import denormalize, draw_polygons
from ocr.training.val_cache import load_val_cache
from ocr.utils.errors import UserError


def choose_names(available: Sequence[str], names: Sequence[str] | None, first: int, where: str) -> list[str]:
    """`names` (each must be in `available`), else the first `first` of `available`."""
    if names:
        unknown = [n for n in names if n not in available]
        if unknown:
            shown = ", ".join(available[:5]) + (", ..." if len(available) > 5 else "")
            raise UserError(f"{where} has no image named {unknown[0]!r} (images: {shown})")
        return list(names)
    return list(available[: max(0, first)])


def render(dataset: ReceiptDataset, name: str, predicted: Sequence[np.ndarray]) -> np.ndarray:
    """RGB of image `name` as the network saw it (unpadded), with its true and `predicted` polygons drawn."""
    sample = dataset[dataset.names.index(name)]
    h, w = sample["valid_hw"]
    rgb = denormalize(sample["image"][:, :h, :w].numpy())
    return draw_polygons(rgb, sample["gt_polygons"], predicted, scale=sample["scale"])


def cached_overlays(
    run_dir: Path, data: Path | None, names: list[str], params_by_label: dict[str, dict[str, Any]]
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """{label: [(name, RGB overlay)]} for cached validation images post-processed with each parameter set."""
    cfg = load_run_config(run_dir)
    images = {im.name: im for im in load_val_cache(run_dir)}
    dataset = ReceiptDataset(run_datamodule(cfg, data).dataset_root(), "val", int(cfg.image_size))
    out = {}
    for label, params in params_by_label.items():
        post = DBPostProcessor(**params)
        out[label] = [(im.name, render(dataset, im.name, post(np.float32(im.prob), im.scale, im.orig_hw)[0]))
                      for im in (images[name] for name in names)]
    return out


def write_pngs(out_dir: Path, images: Iterable[tuple[str, np.ndarray]]) -> list[Path]:
    """Write each (image name, RGB) as `out_dir/<stem>.png`; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rgb in images:
        path = out_dir / f"{Path(name).stem}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise UserError(f"could not write {path}: check that the folder is writable")
        paths.append(path)
    return paths
