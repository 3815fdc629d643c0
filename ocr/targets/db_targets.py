"""DBNet training targets: shrunk probability map, threshold (border) map, and their masks.

Definitions (DBNet, Liao et al. 2020), for a polygon with area A and perimeter L, r = shrink_ratio,
D = A (1 - r^2) / L:

* ``prob_map``: 1 inside every kept polygon shrunk by D (pyclipper JT_ROUND), else 0.
* ``prob_mask``: 0 over ignored polygons, else 1. A polygon is ignored when flagged in ``ignore``;
  when degenerate (< 3 points, zero area, D < 0.01 px, or coordinates that are non-finite or beyond
  +-2^22 px: such polygons cannot be rasterised and leave the mask untouched); when the shorter side of
  its *minAreaRect* is < ``min_text_size`` (rotation-invariant, unlike the axis-aligned extent); or
  when its shrunk outline is empty. Ignored polygons add nothing to the threshold map or its mask.
* ``thresh_mask``: 1 on pixels inside a kept polygon or within D of its edges, i.e. inside the polygon
  dilated by D with round joins -- the exact shape that pyclipper's JT_ROUND offset approximates.
* ``thresh_map``: per kept polygon and pixel, v = 1 - min(dist / D, 1), ``dist`` being the Euclidean
  distance to the nearest polygon edge (segment); overlapping polygons take the max (0 elsewhere);
  the map is ``thresh_min + (thresh_max - thresh_min) * v``.

Pixel (row i, column j) is the point (x=j, y=i); outlines are rasterised at 1/256 px precision.
``make_db_targets`` and ``make_db_targets_plain`` return identical arrays, bit for bit.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from ocr.targets.border import (
    F32, EdgeTable, SeparableTerms, distance_sq_fast, distance_sq_plain, edge_table, separable_terms,
)
from ocr.targets.polygons import PolygonBatch, fill_shapes, pixel_boxes, prepare_polygons
from ocr.utils.errors import UserError


@dataclass
class DBTargets:
    """DB training targets, each (H, W) float32."""

    prob_map: np.ndarray
    prob_mask: np.ndarray
    thresh_map: np.ndarray
    thresh_mask: np.ndarray


def check_target_params(shrink_ratio: float, thresh_min: float, thresh_max: float, min_text_size: float) -> None:
    """Raise ``UserError`` for target parameters outside their meaningful range."""
    values = {"shrink_ratio": shrink_ratio, "thresh_min": thresh_min, "thresh_max": thresh_max,
              "min_text_size": min_text_size}
    for name, value in values.items():
        if isinstance(value, bool) or not (isinstance(value, numbers.Real) and math.isfinite(value)):
            raise UserError(f"collate_fn.{name}={value!r} must be a finite number")
    if not 0.0 <= shrink_ratio < 1.0:
        raise UserError(f"collate_fn.shrink_ratio={shrink_ratio} must be in [0, 1); DBNet uses 0.4")
    if not 0.0 <= thresh_min <= thresh_max <= 1.0:
        raise UserError(
            f"collate_fn.thresh_min={thresh_min}, thresh_max={thresh_max} must satisfy "
            "0 <= thresh_min <= thresh_max <= 1; DBNet uses 0.3 and 0.7"
        )
    if min_text_size < 0:
        raise UserError(f"collate_fn.min_text_size={min_text_size} must be >= 0; DBNet uses 8")


def allocate_targets(height: int, width: int) -> DBTargets:
    """Uninitialised targets backed by one (4, H, W) float32 block (fewer page faults than four arrays)."""
    return DBTargets(*np.empty((4, height, width), dtype=np.float32))


def _check_out(out: DBTargets, height: int, width: int) -> None:
    for name in ("prob_map", "prob_mask", "thresh_map", "thresh_mask"):
        array = getattr(out, name)
        if array.shape != (height, width) or array.dtype != np.float32 or not array.flags.writeable:
            raise ValueError(f"out.{name} must be a writeable ({height}, {width}) float32 array")


def _rasterise(batch: PolygonBatch, out: DBTargets) -> None:
    """prob_map (shrunk outlines), prob_mask (ignored outlines) and the polygon interiors of thresh_mask."""
    out.prob_map.fill(0)
    out.prob_mask.fill(1)
    out.thresh_mask.fill(0)
    for outline, ignored, shrunk in zip(batch.outlines, batch.ignored.tolist(), batch.shrunk):
        if outline is None:
            continue
        if ignored:
            fill_shapes(out.prob_mask, [outline], 0.0)
        else:
            fill_shapes(out.prob_map, shrunk, 1.0)
            fill_shapes(out.thresh_mask, [outline], 1.0)


@dataclass(frozen=True)
class _Border:
    """Kept polygons whose D-neighbourhood meets the image: edges, (P, 4) pixel boxes, D (float32)."""

    edges: EdgeTable
    boxes: np.ndarray
    offsets: np.ndarray


def _border_input(batch: PolygonBatch, height: int, width: int) -> _Border:
    kept = np.flatnonzero(~batch.ignored)
    points = [batch.points[i] for i in kept.tolist()]
    boxes, inside = pixel_boxes(points, batch.offsets[kept], height, width)
    points = [p for p, keep in zip(points, inside.tolist()) if keep]
    return _Border(edge_table(points), boxes[inside], batch.offsets[kept][inside].astype(F32))


BorderFn = Callable[[_Border, DBTargets, np.float32, np.float32], None]


def _border_plain(border: _Border, out: DBTargets, low: np.float32, span: np.float32) -> None:
    """thresh_map and the dilation part of thresh_mask, polygon by polygon on full grids."""
    canvas = np.zeros(out.thresh_map.shape, dtype=np.float32)
    for p, (x0, y0, x1, y1) in enumerate(border.boxes.tolist()):
        ratio = np.sqrt(distance_sq_plain(border.edges, p, (x0, y0, x1, y1))) / border.offsets[p]
        window = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        out.thresh_mask[window] = np.maximum(out.thresh_mask[window], ratio <= 1)
        canvas[window] = np.maximum(canvas[window], 1 - np.minimum(ratio, 1))
    out.thresh_map[...] = low + span * canvas


CHUNK_PIXELS = 1 << 15  # flat-buffer run length: three float32 buffers of this size fit a 512 KiB L2


def _chunks(sizes: list[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive (first, stop) index ranges whose sizes sum to at most ``budget`` (or one item)."""
    chunks, first, total = [], 0, 0
    for i, size in enumerate(sizes):
        if total and total + size > budget:
            chunks.append((first, i))
            first, total = i, 0
        total += size
    if first < len(sizes):
        chunks.append((first, len(sizes)))
    return chunks


def _border_fast(border: _Border, out: DBTargets, low: np.float32, span: np.float32) -> None:
    """Same result as ``_border_plain``.

    The distances of a run of boxes go into one flat buffer (sized to stay in the CPU's L2 cache), so
    that the element-wise steps run once per run instead of once per polygon; the monotone rescale is
    applied before the max.
    """
    boxes = border.boxes
    box_list = boxes.tolist()
    sizes = ((boxes[:, 3] - boxes[:, 1] + 1) * (boxes[:, 2] - boxes[:, 0] + 1)).tolist()
    terms = separable_terms(border.edges, boxes, border.offsets)
    coords = np.arange(max(out.thresh_map.shape), dtype=F32)
    capacity = max([CHUNK_PIXELS, *sizes])
    buffers = np.empty((3, capacity), dtype=F32)  # distances, near (0/1), D per pixel
    out.thresh_map.fill(low)
    for first, stop in _chunks(sizes, CHUNK_PIXELS):
        _border_chunk(border, terms, coords, box_list, sizes, first, stop, buffers, out, low, span)


def _border_chunk(
    border: _Border, terms: SeparableTerms, coords: np.ndarray, box_list: list[list[int]], sizes: list[int],
    first: int, stop: int, buffers: np.ndarray, out: DBTargets,
    low: np.float32, span: np.float32,
) -> None:
    """``_border_fast`` for boxes ``first:stop``."""
    total = sum(sizes[first:stop])
    flat, near, offsets = (buffer[:total] for buffer in buffers)
    slots = []
    begin = 0
    for p in range(first, stop):
        x0, y0, x1, y1 = box_list[p]
        end = begin + sizes[p]
        slot = flat[begin:end].reshape(y1 - y0 + 1, x1 - x0 + 1)
        distance_sq_fast(border.edges, terms, p, box_list[p], coords, slot)
        offsets[begin:end] = border.offsets[p]
        slots.append((slot, near[begin:end].reshape(slot.shape)))
        begin = end

    # The plain path's numpy steps, with OpenCV's faster SIMD kernels where they give the same bits:
    # sqrt (IEEE), "x <= 1" (THRESH_BINARY_INV) and min(x, 1) (THRESH_TRUNC).
    cv2.sqrt(flat, dst=flat)
    np.divide(flat, offsets, out=flat)
    cv2.threshold(flat, 1.0, 1.0, cv2.THRESH_BINARY_INV, dst=near)
    cv2.threshold(flat, 1.0, 1.0, cv2.THRESH_TRUNC, dst=flat)
    np.subtract(1, flat, out=flat)
    np.multiply(flat, span, out=flat)
    np.add(flat, low, out=flat)

    for p, (slot, near_slot) in zip(range(first, stop), slots):
        x0, y0, x1, y1 = box_list[p]
        view = out.thresh_map[y0 : y1 + 1, x0 : x1 + 1]
        cv2.max(view, slot, dst=view)
        view = out.thresh_mask[y0 : y1 + 1, x0 : x1 + 1]
        cv2.max(view, near_slot, dst=view)


def _build(
    polygons: Sequence[np.ndarray], height: int, width: int, shrink_ratio: float, thresh_min: float,
    thresh_max: float, min_text_size: float, ignore: Sequence[bool] | None, out: DBTargets | None,
    border_fn: BorderFn,
) -> DBTargets:
    check_target_params(shrink_ratio, thresh_min, thresh_max, min_text_size)
    if out is None:
        out = allocate_targets(height, width)
    else:
        _check_out(out, height, width)
    batch = prepare_polygons(polygons, ignore, shrink_ratio, min_text_size)
    _rasterise(batch, out)
    low, span = F32(thresh_min), F32(thresh_max) - F32(thresh_min)
    border_fn(_border_input(batch, height, width), out, low, span)
    return out


def make_db_targets(
    polygons: Sequence[np.ndarray], height: int, width: int, shrink_ratio: float = 0.4,
    thresh_min: float = 0.3, thresh_max: float = 0.7, min_text_size: float = 8,
    ignore: Sequence[bool] | None = None, out: DBTargets | None = None,
) -> DBTargets:
    """DB targets for an (height, width) image with (N, 2) float32 ``polygons`` (see module docstring).

    ``ignore[i]`` flags polygon i as ignored (e.g. illegible text). ``out``: optional (H, W) float32
    arrays to write into (e.g. views of a batch tensor); it is returned. Never raises on degenerate
    polygons.
    """
    return _build(polygons, height, width, shrink_ratio, thresh_min, thresh_max, min_text_size, ignore,
                  out, _border_fast)


def make_db_targets_plain(
    polygons: Sequence[np.ndarray], height: int, width: int, shrink_ratio: float = 0.4,
    thresh_min: float = 0.3, thresh_max: float = 0.7, min_text_size: float = 8,
    ignore: Sequence[bool] | None = None, out: DBTargets | None = None,
) -> DBTargets:
    """Reference for ``make_db_targets``: same result, threshold map computed on full grids per edge."""
    return _build(polygons, height, width, shrink_ratio, thresh_min, thresh_max, min_text_size, ignore,
                  out, _border_plain)
