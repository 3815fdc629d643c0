"""A trained DBNet over images: the validation pass that fills the cache, `predict` (a split's images -> the
competition CSV and JSON, in whole pixels of the stored files), and overlays of predicted (red) and true (green)
polygons."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from ocr.data.datamodule import ReceiptDataset, stack_images
from ocr.data.transforms import ImageDecodeError, orient_points, oriented_size, read_header
from ocr.inference.runs import RunRef, load_model, load_run_config, resolve_run
from ocr.inference.tuned import choose_params
from ocr.postprocess.db_postprocess import DBPostProcessor
from ocr.training.build import build_datamodule, build_module
from ocr.training.module import denormalize, draw_polygons, postprocess_batch
from ocr.training.quiet import lightning_info_hidden, quiet_lightning
from ocr.training.val_cache import load_val_cache, write_val_cache
from ocr.utils.errors import UserError

AUTOCAST_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}
# EXIF orientations whose inverse is another orientation (the others undo themselves).
INVERSE_ORIENTATION = {6: 8, 8: 6}
CSV_HEADER = ("filename", "polygons")
MIN_POINTS = 4  # the competition format's smallest polygon
Predictions = Mapping[str, Sequence[np.ndarray]]


def run_dataset(cfg: DictConfig, data: Path | None, split: str, labels: bool = True) -> ReceiptDataset:
    """`split` of the run's dataset (of the dataset root `data` when given) at the run's image size."""
    root = build_datamodule(cfg, dataset_base_path=data and str(data)).dataset_root()
    return ReceiptDataset(root, split, int(cfg.image_size), labels=labels)


def build_val_cache(run: RunRef, data: Path | None = None, batch_size: int | None = None,
                    num_workers: int | None = None, device: str | None = None) -> tuple[Path, dict[str, float]]:
    """Validate the run's checkpoint as training does, on one device (`pick_device`: a run trained on several would
    start DDP and keep one rank's share), and cache its maps; returns (cache dir, metrics)."""
    quiet_lightning()
    cfg = load_run_config(run.run_dir)
    module = build_module(cfg, model=load_model(run, cfg))
    module.keep_maps = True
    chosen = pick_device(device)
    with lightning_info_hidden():  # the device lines of a Trainer that only validates
        trainer = L.Trainer(logger=False, callbacks=[], accelerator=chosen.type,
                            devices=[chosen.index or 0] if chosen.type == "cuda" else 1, enable_model_summary=False,
                            precision=cfg.trainer.precision, limit_val_batches=cfg.trainer.limit_val_batches)
    datamodule = build_datamodule(cfg, dataset_base_path=data and str(data), batch_size=batch_size,
                                  val_batch_size=batch_size, num_workers=num_workers)
    with module.scorer:
        results = trainer.validate(module, datamodule=datamodule, verbose=False)
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


class Prediction(NamedTuple):
    """One image: its sample metadata (no pixels), probability map cropped to the image, and polygons."""

    meta: dict[str, Any]
    prob: np.ndarray
    polygons: list[np.ndarray]


def predict_split(model: torch.nn.Module, precision: Any, dataset: ReceiptDataset, postprocess: Any,
                  device: torch.device, batch_size: int = 1, num_workers: int = 0) -> tuple[int, Iterator[Prediction]]:
    """(number of images, lazy predictions) of `model` trained at `precision` for every image of `dataset`, in its
    order; an image that cannot be decoded has no polygons and ``meta["corrupt"]`` set (the dataset warns)."""
    model = model.to(device)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=stack_images)
    dtype = AUTOCAST_DTYPES.get(str(precision))  # the autocast Lightning applies (none for 32-bit)

    def generate() -> Iterator[Prediction]:
        for batch in loader:
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                logits = model(batch["images"].to(device))["prob_logits"]
            for meta, prob, polygons in postprocess_batch(logits, batch["meta"], postprocess):
                yield Prediction(meta, prob, [] if meta.get("corrupt") else polygons)

    return len(dataset), generate()


def render(dataset: ReceiptDataset, name: str, predicted: Sequence[np.ndarray]) -> np.ndarray:
    """RGB of image `name` as the network saw it (unpadded), with its true and `predicted` polygons drawn."""
    sample = dataset[dataset.names.index(name)]
    h, w = sample["valid_hw"]
    rgb = denormalize(sample["image"][:, :h, :w].numpy())
    return draw_polygons(rgb, sample["gt_polygons"], predicted, scale=sample["scale"])


def cached_overlays(run_dir: Path, data: Path | None, params_by_label: dict[str, dict[str, Any]],
                    names: Sequence[str] | None, first: int) -> dict[str, list[tuple[str, np.ndarray]]]:
    """{label: [(name, RGB overlay)]} for cached validation images (`names`, else the first `first`) post-processed
    with each parameter set."""
    cfg = load_run_config(run_dir)
    images = {im.name: im for im in load_val_cache(run_dir)}
    if unknown := [n for n in names or [] if n not in images]:
        shown = ", ".join(list(images)[:5]) + (", ..." if len(images) > 5 else "")
        raise UserError(f"the validation cache has no image named {unknown[0]!r} (images: {shown})")
    names = list(names) if names else list(images)[: max(0, first)]
    dataset = run_dataset(cfg, data, "val")
    out = {}
    for label, params in params_by_label.items():
        post = DBPostProcessor(**params)
        out[label] = [(im.name, render(dataset, im.name, post(np.float32(im.prob), im.scale, im.orig_hw)[0]))
                      for im in (images[name] for name in names)]
    return out


def integer_points(polygon: np.ndarray) -> np.ndarray:
    """(N >= 4, 2) int64 points of `polygon`, rounded to the nearest pixel; a polygon of fewer than 4 points (which
    the competition's evaluator skips: under 8 coordinates) becomes its 4-point minimum-area rectangle."""
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(points) < MIN_POINTS:
        points = cv2.boxPoints(cv2.minAreaRect(points.astype(np.float32))).astype(np.float64)
    return np.rint(points).astype(np.int64)


def write_csv(path: Path, predictions: Predictions) -> Path:
    """Write the competition CSV of `predictions` (image name -> polygons), rows in the mapping's order:
    `filename,polygons`, a polygon `x y x y ...`, polygons joined by `|`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for name, polygons in predictions.items():
            writer.writerow((name, "|".join(" ".join(map(str, integer_points(p).ravel())) for p in polygons)))
    return path


def write_json(path: Path, predictions: Predictions) -> Path:
    """Write `predictions` in the dataset's JSON layout (points as integer pixels)."""
    words = {name: {f"{i:04d}": {"points": integer_points(p).tolist()} for i, p in enumerate(polygons, 1)}
             for name, polygons in predictions.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": {name: {"words": w} for name, w in words.items()}}), encoding="utf-8")
    return path


def to_stored_frame(polygons: list[np.ndarray], image_path: Path) -> list[np.ndarray]:
    """Polygons from displayed (EXIF-oriented) coordinates back to the stored file's pixel grid."""
    try:
        header = read_header(image_path)
    except ImageDecodeError:
        return polygons
    if header.orientation == 1 or not polygons:
        return polygons
    inverse = INVERSE_ORIENTATION.get(header.orientation, header.orientation)
    displayed = oriented_size(header.size, header.orientation)
    return [orient_points(p, inverse, displayed) for p in polygons]


@dataclass
class PredictResult:
    """Where the submission went and what it holds."""

    run: RunRef
    split: str
    label: str
    params: dict[str, Any]
    files: list[Path]
    n_images: int
    n_polygons: int
    unreadable: list[str]
    overlays: list[tuple[str, np.ndarray]]
    n_boxed: int  # polygons of fewer than MIN_POINTS points, written as their minimum-area rectangle


def predict(
    run_path: Path, split: str = "test", postprocess: list[str] | None = None, out_dir: Path | None = None,
    data: Path | None = None, device: str | None = None, batch_size: int = 1, num_workers: int = 0, overlays: int = 0,
    progress: Callable[[Iterator[Prediction], int], Iterable[Prediction]] | None = None,
) -> PredictResult:
    """Predict every image file of `split` (no labels needed); write `<split>_<label>.csv` and `.json` to `out_dir`."""
    run = resolve_run(run_path)
    cfg = load_run_config(run.run_dir)
    label, params = choose_params(postprocess, cfg, run.run_dir)
    dataset = run_dataset(cfg, data, split, labels=False)
    post, chosen = DBPostProcessor(**params), pick_device(device)  # a bad device is one line before the model loads
    total, predictions = predict_split(load_model(run, cfg), cfg.trainer.precision, dataset, post, chosen, batch_size,
                                       num_workers)
    polygons, unreadable, rendered = {}, [], []
    for pred in progress(predictions, total) if progress else predictions:
        name = pred.meta["image_name"]
        if pred.meta.get("corrupt"):
            unreadable.append(name)
        elif len(rendered) < overlays:
            rendered.append((name, render(dataset, name, pred.polygons)))
        polygons[name] = to_stored_frame(pred.polygons, dataset.image_dir / name)
    out, stem = Path(out_dir) if out_dir else run.run_dir / "submissions", f"{split}_{label}"
    files = [write_csv(out / f"{stem}.csv", polygons), write_json(out / f"{stem}.json", polygons)]
    n_polygons = sum(len(p) for p in polygons.values())
    n_boxed = sum(len(p.reshape(-1, 2)) < MIN_POINTS for found in polygons.values() for p in found)
    return PredictResult(run, split, label, params, files, len(polygons), n_polygons, unreadable, rendered, n_boxed)
