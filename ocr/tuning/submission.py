"""Competition submission files: the CSV (`filename,polygons`) and the JSON (`images -> words -> points`).

CSV: one row per image; a polygon is its integer points `x y x y ...`, polygons are joined by `|`, an image
without detections has an empty `polygons` cell. JSON: the dataset's own layout, word keys "0001", "0002", ...
Coordinates are whole pixels of the image file as stored.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ocr.utils.errors import UserError

CSV_HEADER = ("filename", "polygons")
Predictions = Mapping[str, Sequence[np.ndarray]]


def integer_points(polygon: np.ndarray) -> np.ndarray:
    """(N, 2) int64 points of `polygon`, rounded to the nearest pixel."""
    return np.rint(np.asarray(polygon, dtype=np.float64).reshape(-1, 2)).astype(np.int64)


def polygon_text(polygon: np.ndarray) -> str:
    """`x y x y ...` of one polygon, integer pixels."""
    return " ".join(str(v) for v in integer_points(polygon).ravel())


def write_csv(path: Path, predictions: Predictions) -> Path:
    """Write the competition CSV of `predictions` (image name -> polygons), rows in the mapping's order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for name, polygons in predictions.items():
            writer.writerow((name, "|".join(polygon_text(p) for p in polygons)))
    return path


def write_json(path: Path, predictions: Predictions) -> Path:
    """Write `predictions` in the dataset's JSON layout (points as integer pixels)."""
    images = {
        name: {"words": {f"{i:04d}": {"points": integer_points(p).tolist()} for i, p in enumerate(polygons, 1)}}
        for name, polygons in predictions.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images}), encoding="utf-8")
    return path


def parse_polygons(cell: str, where: str) -> list[np.ndarray]:
    """The polygons of one CSV `polygons` cell as (N, 2) int64 arrays."""
    polygons = []
    for part in filter(None, (p.strip() for p in cell.split("|"))):
        try:
            values = [int(v) for v in part.split()]
        except ValueError:
            raise UserError(f"{where}: polygon {part[:40]!r} is not integers separated by spaces") from None
        if len(values) % 2 or len(values) < 6:
            raise UserError(f"{where}: polygon {part[:40]!r} needs an even number (>= 6) of coordinates")
        polygons.append(np.asarray(values, dtype=np.int64).reshape(-1, 2))
    return polygons


def read_csv(path: Path) -> dict[str, list[np.ndarray]]:
    """Image name -> polygons of a submission CSV (the inverse of `write_csv`)."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or tuple(rows[0]) != CSV_HEADER:
        raise UserError(f"{path}: the first row must be the header {','.join(CSV_HEADER)}")
    out = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise UserError(f"{path}:{line}: expected 2 columns (filename, polygons), found {len(row)}")
        out[row[0]] = parse_polygons(row[1], f"{path}:{line}")
    return out
