"""`predict`: a run's checkpoint over a split's images -> the competition CSV and JSON (and overlays).

Polygons come out of post-processing in the coordinates of the image as displayed (EXIF orientation
applied); submissions use the pixels of the image file as stored, like the dataset's JSON, so they are
mapped back for images with an EXIF orientation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocr.data.dataset import ReceiptDataset
from ocr.data.transforms import ImageDecodeError, orient_points, oriented_size, read_header
from ocr.postprocess.db_postprocess import DBPostProcessor
from ocr.tuning.inference import Prediction, dataset_root, pick_device, predict_split
from ocr.tuning.runs import RunRef, load_run_config, resolve_run
from ocr.tuning.submission import write_csv, write_json
from ocr.tuning.tuned import choose_params

# EXIF orientations whose inverse is another orientation (the others undo themselves).
INVERSE_ORIENTATION = {6: 8, 8: 6}


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


def collect(
    predictions: Iterable[Prediction], image_dir: Path, keep_overlays: int
) -> tuple[dict[str, list[np.ndarray]], list[str], dict[str, list[np.ndarray]]]:
    """(name -> stored-frame polygons, unreadable names, displayed polygons of the first readable images)."""
    out, unreadable, shown = {}, [], {}
    for pred in predictions:
        name = pred.meta["image_name"]
        if pred.meta.get("corrupt"):
            unreadable.append(name)
            out[name] = []
            continue
        out[name] = to_stored_frame(pred.polygons, image_dir / name)
        if len(shown) < keep_overlays:
            shown[name] = pred.polygons
    return out, unreadable, shown


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
    from ocr.tuning.overlays import render

    run = resolve_run(run_path)
    cfg = load_run_config(run.run_dir)
    label, params = choose_params(postprocess, cfg, run.run_dir)
    post = DBPostProcessor(**params)
    dataset = ReceiptDataset(dataset_root(cfg, data), split, int(cfg.image_size), labels=False)
    total, predictions = predict_split(run, dataset, post, pick_device(device), batch_size, num_workers)
    stream = progress(predictions, total) if progress else predictions
    polygons, unreadable, shown = collect(stream, dataset.image_dir, overlays)
    out_dir = Path(out_dir) if out_dir else run.run_dir / "submissions"
    stem = f"{split}_{label}"
    files = [write_csv(out_dir / f"{stem}.csv", polygons), write_json(out_dir / f"{stem}.json", polygons)]
    rendered = [(name, render(dataset, name, polys)) for name, polys in shown.items()]
    return PredictResult(
        run, split, label, params, files, len(polygons), sum(len(p) for p in polygons.values()), unreadable, rendered
    )
