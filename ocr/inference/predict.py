"""`predict`: a run's checkpoint over a split's images -> the competition CSV (`filename,polygons`, a polygon
`x y x y ...`, joined by `|`) and JSON (the dataset's layout), in whole pixels of the image files as stored."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocr.data.dataset import ReceiptDataset
from ocr.data.transforms import ImageDecodeError, orient_points, oriented_size, read_header
from ocr.inference.maps import Prediction, pick_device, predict_split, run_datamodule
from ocr.inference.overlays import render
from ocr.inference.runs import RunRef, load_run_config, resolve_run
from ocr.inference.tuned import choose_params
from ocr.postprocess.db_postprocess import DBPostProcessor

# EXIF orientations whose inverse is another orientation (the others undo themselves).
INVERSE_ORIENTATION = {6: 8, 8: 6}
CSV_HEADER = ("filename", "polygons")
Predictions = Mapping[str, Sequence[np.ndarray]]


def integer_points(polygon: np.ndarray) -> np.ndarray:
    """(N, 2) int64 points of `polygon`, rounded to the nearest pixel."""
    return np.rint(np.asarray(polygon, dtype=np.float64).reshape(-1, 2)).astype(np.int64)


def write_csv(path: Path, predictions: Predictions) -> Path:
    """Write the competition CSV of `predictions` (image name -> polygons), rows in the mapping's order."""
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
    overlays: list[tuple[str, np.ndarray]] = field(default_factory=list)


def predict(
    run_path: Path,
    split: str = "test",
    postprocess: list[str] | None = None,
    out_dir: Path | None = None,
    data: Path | None = None,
    device: str | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    overlays: int = 0,
    progress: Callable[[Iterator[Prediction], int], Iterable[Prediction]] | None = None,
) -> PredictResult:
    """Predict every image file of `split` (labels not needed), write `<split>_<label>.csv` and `.json` under `out_dir`."""
    run = resolve_run(run_path)
    cfg = load_run_config(run.run_dir)
    label, params = choose_params(postprocess, cfg, run.run_dir)
    dataset = ReceiptDataset(run_datamodule(cfg, data).dataset_root(), split, int(cfg.image_size), labels=False)
    total, predictions = predict_split(run, dataset, DBPostProcessor(**params), pick_device(device), batch_size, num_workers)
    polygons, unreadable, rendered = {}, [], []
    for pred in progress(predictions, total) if progress else predictions:
        name = pred.meta["image_name"]
        if pred.meta.get("corrupt"):
            unreadable.append(name)
        elif len(rendered) < overlays:
            rendered.append((name, render(dataset, name, pred.polygons)))
        polygons[name] = to_stored_frame(pred.polygons, dataset.image_dir / name)
    out_dir = Path(out_dir) if out_dir else run.run_dir / "submissions"
    files = [write_csv(out_dir / f"{split}_{label}.csv", polygons), write_json(out_dir / f"{split}_{label}.json", polygons)]
    n_polygons = sum(len(p) for p in polygons.values())
    return PredictResult(run, split, label, params, files, len(polygons), n_polygons, unreadable, rendered)
