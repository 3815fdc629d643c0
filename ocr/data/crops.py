"""Training crops, DB's scale-and-crop recipe: the receipt rescaled around its whole-image fit, optionally rotated,
then a square window that holds a word and whose edges cut as few words as possible. A word the window's edge cuts
inside the image is ignored in the loss (its visible part masked out); every other word keeps the targets it has in
the whole rescaled image.

Coordinates are continuous pixels, as in `ocr.data.transforms`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

CROP_KEYS = ("crop_size", "scale", "rotate", "crops_per_image")


@dataclass(frozen=True)
class CropSpec:
    """Square crops of `size` px from receipts rescaled by U(`scale`) x the whole-image fit, rotated by
    U(-`rotate`, `rotate`) degrees; `per_image` crops of each receipt per epoch."""

    size: int
    scale: tuple[float, float] = (1.0, 1.0)
    rotate: float = 0.0
    per_image: int = 1


def crop_spec(augment: Mapping[str, Any]) -> CropSpec | None:
    """The crops `augment` (`data.augment`, checked by `ocr.config`) asks for; None: whole images."""
    size = augment.get("crop_size")
    if size is None:
        return None
    low, high = augment.get("scale", (1.0, 1.0))
    return CropSpec(int(size), (float(low), float(high)), float(augment.get("rotate", 0)),
                    int(augment.get("crops_per_image", 1)))


def rotate(image: np.ndarray, polygons: list[np.ndarray], degrees: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """`image` rotated counter-clockwise by `degrees` on a canvas that holds all of it, and `polygons` with it."""
    if degrees == 0:
        return image, polygons
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)  # about the centre, continuous coordinates
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64) @ matrix[:, :2].T + matrix[:, 2]
    matrix[:, 2] -= corners.min(axis=0)
    out_w, out_h = np.ceil(corners.max(axis=0) - corners.min(axis=0)).astype(int)
    on_centres = matrix.copy()  # OpenCV's pixel i is centred at i, ours at i + 0.5
    on_centres[:, 2] += matrix[:, :2] @ (0.5, 0.5) - 0.5
    turned = cv2.warpAffine(image, on_centres, (int(out_w), int(out_h)), flags=cv2.INTER_LINEAR, borderValue=0)
    return turned, [(p @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32) for p in polygons]


def edge_cuts(spans: np.ndarray, length: int) -> np.ndarray:
    """For each integer position 0..`length`, how many (N, 2) [start, end] spans an edge there cuts (start < e < end);
    the image's own borders (0 and `length`) cut nothing."""
    first = np.clip(np.floor(spans[:, 0]).astype(np.int64) + 1, 1, length)
    stop = np.clip(np.ceil(spans[:, 1]).astype(np.int64), 1, length)
    steps = np.zeros(length + 2, np.int64)
    np.add.at(steps, first[first < stop], 1)
    np.add.at(steps, stop[first < stop], -1)
    return np.cumsum(steps)[: length + 1]


def window_origin(spans: np.ndarray, length: int, size: int, anchor: float | None, draw: float) -> int:
    """Origin on one axis of a `size`-px window over `length` px: holding `anchor` when it can, where its two edges
    cut the fewest spans; `draw` in [0, 1) picks among equals."""
    if length <= size:
        return 0
    cuts = edge_cuts(spans, length)
    low, high = 0, length - size
    if anchor is not None:
        low, high = max(low, math.ceil(anchor - size)), min(high, math.floor(anchor))
        low, high = (low, high) if low <= high else (0, length - size)
    origins = np.arange(low, high + 1)
    cost = cuts[origins] + cuts[origins + size]
    best = origins[cost == cost.min()]
    return int(best[min(int(draw * len(best)), len(best) - 1)])


class Crop(NamedTuple):
    """A training crop: `image`, the part of the window inside the image (at most size x size, to be padded bottom
    and right like a whole image), `polygons` in its pixels, `ignore` per polygon (cut by the window's edge)."""

    image: np.ndarray
    polygons: list[np.ndarray]
    ignore: list[bool]


def crop_at(image: np.ndarray, polygons: list[np.ndarray], size: int, origin: tuple[int, int]) -> Crop:
    """The `size` window at `origin` = (x, y) of `image`, with the polygons that can touch its targets
    (a polygon's border region reaches at most half its shorter bounding-box side beyond it)."""
    h, w = image.shape[:2]
    x, y = origin
    window = image[y:y + size, x:x + size]
    kept, ignore = [], []
    for points in polygons:
        (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
        reach = min(x1 - x0, y1 - y0) + 2
        if x1 + reach <= x or x0 - reach >= x + size or y1 + reach <= y or y0 - reach >= y + size:
            continue
        cut_x = (0 < x and x0 < x < x1) or (x + size < w and x0 < x + size < x1)
        cut_y = (0 < y and y0 < y < y1) or (y + size < h and y0 < y + size < y1)
        touches = x1 > x and x0 < x + size and y1 > y and y0 < y + size
        kept.append((points - np.array([x, y], np.float32)).astype(np.float32))
        ignore.append(bool(touches and (cut_x or cut_y)))
    return Crop(window, kept, ignore)


def random_crop(image: np.ndarray, polygons: list[np.ndarray], spec: CropSpec) -> Crop:
    """A crop of `image` (already rescaled) drawn with torch's RNG: rotation, an anchor word, the window."""
    u = torch.rand(5).tolist()
    image, polygons = rotate(image, polygons, (2 * u[0] - 1) * spec.rotate)
    h, w = image.shape[:2]
    boxes = np.array([[*p.min(axis=0), *p.max(axis=0)] for p in polygons], np.float64).reshape(-1, 4)
    anchor = boxes[min(int(u[1] * len(boxes)), len(boxes) - 1)] if len(boxes) else None
    centre = (None, None) if anchor is None else ((anchor[0] + anchor[2]) / 2, (anchor[1] + anchor[3]) / 2)
    x = window_origin(boxes[:, [0, 2]], w, spec.size, centre[0], u[2])
    y = window_origin(boxes[:, [1, 3]], h, spec.size, centre[1], u[3])
    return crop_at(image, polygons, spec.size, (x, y))


def draw_scale(spec: CropSpec) -> float:
    """A rescaling factor uniform in `spec.scale` (torch's RNG)."""
    low, high = spec.scale
    return low + (high - low) * float(torch.rand(()))
