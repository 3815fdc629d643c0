"""Per-polygon geometry for DB targets: validity, offset distance D, shrunk outlines, pixel boxes, fills.

Outlines are in fixed point (``FIXED_SHIFT`` fractional bits) for pyclipper and ``cv2.fillPoly``; axis-aligned
rectangles are shrunk and filled in closed form, with pyclipper's and cv2.fillPoly's result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numba
import numpy as np
import pyclipper

from ocr.postprocess.geometry import FIXED_ONE, FIXED_SHIFT, new_clipper

FIXED_HALF = FIXED_ONE >> 1
# |coordinate| limit (px) that keeps fixed-point outlines inside int32 for cv2.fillPoly.
MAX_COORD = float(1 << 22)
# Offsets below this (px) mean a sliver with no usable interior: the polygon counts as degenerate.
MIN_OFFSET = 0.01


@dataclass(frozen=True)
class PolygonBatch:
    """The ground-truth polygons of one image after validation (P of them); shrunk by D with pyclipper JT_ROUND."""

    points: np.ndarray  # (M, 2) float32: the points of all polygons in order, counts[i] of them for polygon i
    counts: np.ndarray
    outlines: list[np.ndarray | None]  # (N, 2) int32 fixed point, None if not rasterisable (no/bad points)
    is_rect: np.ndarray  # the outline is an axis-aligned rectangle of positive area ...
    rects: np.ndarray  # (P, 4) ... with these fixed-point bounds x0, y0, x1, y1
    ignored: np.ndarray  # excluded from training
    offsets: np.ndarray  # D of kept polygons (0.0 for ignored ones)
    kernels: list[tuple[np.ndarray, ...]]  # kept non-rectangles shrunk: fixed-point outlines (else empty)
    kernel_rects: np.ndarray  # kept rectangles shrunk: bounds as in rects


def fill_polygons(image: np.ndarray, outlines: Sequence[np.ndarray], value: float) -> None:
    """``cv2.fillPoly`` of fixed-point outlines, together (one region, as for a shrunk outline in pieces)."""
    if len(outlines):
        cv2.fillPoly(image, list(outlines), value, shift=FIXED_SHIFT)


def fill_rectangles(image: np.ndarray, rects: np.ndarray, value: float) -> None:
    """Fill (K, 4) fixed-point rectangles ``x0, y0, x1, y1`` with the pixels cv2.fillPoly would set."""
    if not len(rects):
        return
    bounds = (np.asarray(rects, dtype=np.int64) + FIXED_HALF) >> FIXED_SHIFT
    bounds[:, 2:] += 1
    np.maximum(bounds, 0, out=bounds)
    _fill_boxes(image, bounds, image.dtype.type(value))


@numba.njit(cache=True, nogil=True)
def _fill_boxes(image: np.ndarray, bounds: np.ndarray, value: np.floating) -> None:
    for k in range(bounds.shape[0]):
        image[bounds[k, 1] : bounds[k, 3], bounds[k, 0] : bounds[k, 2]] = value


def _as_points(polygon: np.ndarray) -> np.ndarray:
    """(N, 2) float32 view/copy of a polygon; raises ``ValueError`` for any other shape."""
    points = np.asarray(polygon, dtype=np.float32)
    if points.size == 0:
        return points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"a polygon must be an (N, 2) array of x, y points, got shape {points.shape}")
    return points


def _outlines(points: np.ndarray, counts: np.ndarray) -> tuple[list[np.ndarray | None], np.ndarray, np.ndarray]:
    """``outlines``, ``is_rect`` and ``rects`` of ``PolygonBatch`` for flat ``points`` / ``counts``."""
    in_range = np.abs(points) <= MAX_COORD  # False for NaN and inf
    valid_point = in_range[:, 0] & in_range[:, 1]
    ends = np.cumsum(counts)
    starts = ends - counts
    invalid_before = np.concatenate([[0], np.cumsum(~valid_point)])
    valid = (invalid_before[ends] == invalid_before[starts]) & (counts > 0)
    fixed = np.rint(np.where(valid_point[:, None], points, 0) * np.float32(FIXED_ONE)).astype(np.int32)
    outlines = [fixed[a:b] if ok else None for a, b, ok in zip(starts.tolist(), ends.tolist(), valid.tolist())]
    # rectangles: axis-aligned quads of positive area, their four closed steps alternately horizontal and vertical
    quads = np.flatnonzero(valid & (counts == 4))
    corners = fixed[starts[quads, None] + np.arange(4)]
    step = corners[:, [1, 2, 3, 0]] - corners
    horizontal = (step[:, :, 1] == 0) & (step[:, :, 0] != 0)
    vertical = (step[:, :, 0] == 0) & (step[:, :, 1] != 0)
    alternating = horizontal[:, 0] == horizontal[:, 2]
    alternating &= (horizontal[:, 1] == horizontal[:, 3]) & (horizontal[:, 0] != horizontal[:, 1])
    rect = np.all(horizontal | vertical, axis=1) & alternating
    is_rect = np.zeros(len(counts), dtype=bool)
    rects = np.zeros((len(counts), 4), dtype=np.int64)
    is_rect[quads[rect]] = True
    rects[quads[rect]] = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)[rect]
    return outlines, is_rect, rects


def inset_rectangles(bounds: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rectangles (K, 4: x0, y0, x1, y1 fixed point) shrunk by ``offsets`` px, exactly as pyclipper does:
    the (K, 4) int64 shrunk bounds and a (K,) bool array, something is left."""
    corners = bounds.astype(np.float64)
    size = corners[:, 2:] - corners[:, :2]
    move = size * (1.0 / np.sqrt(size * size)) * (offsets * FIXED_ONE)[:, None]  # along x, along y sides
    normal = move[:, ::-1]  # x0 and x1 move with the sides along y, y0 and y1 with those along x
    sides = np.concatenate([corners[:, :2] + normal, corners[:, 2:] - normal], axis=1)
    # ClipperLib's Round (``(cInt)(x + 0.5)``, or ``(cInt)(x - 0.5)`` below 0): half away from zero
    sides = np.where(sides >= 0, np.trunc(sides + 0.5), np.trunc(sides - 0.5)).astype(np.int64)
    return sides, (sides[:, 0] < sides[:, 2]) & (sides[:, 1] < sides[:, 3])


def prepare_polygons(
    polygons: Sequence[np.ndarray], ignore: Sequence[bool] | None, shrink_ratio: float, min_text_size: float,
) -> PolygonBatch:
    """Validate polygons, compute D and the shrunk outlines (``ignore``, same length, flags polygons). A polygon is
    kept when usable, with D >= ``MIN_OFFSET``, a minAreaRect at least ``min_text_size`` wide and a shrunk outline."""
    flags = np.zeros(len(polygons), dtype=bool) if ignore is None else np.array([bool(f) for f in ignore], bool)
    if len(flags) != len(polygons):
        raise ValueError(f"ignore has {len(flags)} flags for {len(polygons)} polygons")
    point_list = [_as_points(p) for p in polygons]
    counts = np.array([len(p) for p in point_list], dtype=np.int64)
    points = np.concatenate(point_list) if point_list else np.zeros((0, 2), dtype=np.float32)
    outlines, is_rect, rects = _outlines(points, counts)
    usable = np.array([outline is not None for outline in outlines], dtype=bool) & ~flags & (counts >= 3)
    kept = np.zeros(len(polygons), dtype=bool)
    offsets = np.zeros(len(polygons), dtype=np.float64)
    kernels: list[tuple[np.ndarray, ...]] = [()] * len(polygons)
    clipper = new_clipper(FIXED_SHIFT)
    for i in np.flatnonzero(usable).tolist():
        perimeter = cv2.arcLength(point_list[i], True)
        area = abs(cv2.contourArea(point_list[i]))
        offset = area * (1.0 - shrink_ratio * shrink_ratio) / perimeter if perimeter > 0.0 else 0.0
        if not (offset >= MIN_OFFSET and min(cv2.minAreaRect(point_list[i])[1]) >= min_text_size):
            continue
        offsets[i] = offset
        if not is_rect[i]:  # rectangles are shrunk together below
            clipper.Clear()
            clipper.AddPath(outlines[i].tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
            kernels[i] = tuple(np.array(path, dtype=np.int32) for path in clipper.Execute(-offset * FIXED_ONE))
            kept[i] = bool(kernels[i])
    rect_index = np.flatnonzero(is_rect & (offsets > 0))
    kernel_rects = np.zeros_like(rects)
    kernel_rects[rect_index], kept[rect_index] = inset_rectangles(rects[rect_index], offsets[rect_index])
    offsets[~kept] = 0.0
    return PolygonBatch(points, counts, outlines, is_rect, rects, ~kept, offsets, kernels, kernel_rects)


def pixel_boxes(
    points: np.ndarray, counts: np.ndarray, offsets: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """(P, 4) int64 inclusive pixel boxes ``x0, y0, x1, y1`` of polygons (flat ``points``, ``counts`` >= 1
    each) grown by ``offsets`` px, clipped to the image, and a (P,) bool array: box not empty."""
    if not len(counts):
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=bool)
    points = points.astype(np.float64)
    begin = np.cumsum(counts) - counts
    low = np.minimum.reduceat(points, begin, axis=0) - offsets[:, None]
    high = np.maximum.reduceat(points, begin, axis=0) + offsets[:, None]
    boxes = np.empty((len(counts), 4), dtype=np.int64)
    boxes[:, :2] = np.maximum(np.ceil(low), 0)
    boxes[:, 2] = np.minimum(np.floor(high[:, 0]), width - 1)
    boxes[:, 3] = np.minimum(np.floor(high[:, 1]), height - 1)
    return boxes, (boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 1] <= boxes[:, 3])
