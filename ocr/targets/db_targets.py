"""DBNet training targets (Liao et al. 2020): shrunk probability map, threshold (border) map, and their masks.

For a polygon with area A, perimeter L and r = shrink_ratio, D = A (1 - r^2) / L. Pixel (row i, column j)
is the point (x=j, y=i); outlines are rasterised at 1/256 px.

* ``prob_map``: 1 inside every kept polygon shrunk by D (pyclipper JT_ROUND), else 0.
* ``prob_mask``: 0 over ignored polygons, else 1. A polygon is ignored when flagged in ``ignore``; when
  degenerate (< 3 points, zero area, D < 0.01 px, or coordinates non-finite or beyond +-2^22 px, which
  leave the mask untouched); when the shorter side of its minAreaRect is < ``min_text_size``; or when its
  shrunk outline is empty. Ignored polygons add nothing to the threshold map or its mask.
* ``thresh_mask``: 1 inside a kept polygon or within D of its edges (the polygon dilated by D, round joins).
* ``thresh_map``: ``thresh_min + (thresh_max - thresh_min) * v``, v being the max over kept polygons of
  1 - min(dist / D, 1), dist the Euclidean distance to the polygon's nearest edge (v = 0 elsewhere), computed
  exactly per pixel in compiled (numba) float32 loops.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numba
import numpy as np

from ocr.targets.polygons import PolygonBatch, fill_polygons, fill_rectangles, pixel_boxes, prepare_polygons

F32 = np.float32


class DBTargets(NamedTuple):
    """DB training targets, each (H, W) float32."""

    prob_map: np.ndarray
    prob_mask: np.ndarray
    thresh_map: np.ndarray
    thresh_mask: np.ndarray


FIELDS = DBTargets._fields


def allocate_targets(height: int, width: int) -> DBTargets:
    """Uninitialised targets backed by one (4, H, W) float32 block."""
    return DBTargets(*np.empty((4, height, width), dtype=np.float32))


def rasterise(batch: PolygonBatch, out: DBTargets) -> None:
    """Write prob_map (shrunk outlines), prob_mask (ignored outlines) and the polygon interiors of thresh_mask."""
    out.prob_map.fill(0)
    out.prob_mask.fill(1)
    out.thresh_mask.fill(0)
    kept_rect = batch.is_rect & ~batch.ignored
    fill_rectangles(out.prob_mask, batch.rects[batch.is_rect & batch.ignored], 0.0)
    fill_rectangles(out.prob_map, batch.kernel_rects[kept_rect], 1.0)
    fill_rectangles(out.thresh_mask, batch.rects[kept_rect], 1.0)
    for i in np.flatnonzero(~batch.is_rect).tolist():
        outline = batch.outlines[i]
        if outline is not None and batch.ignored[i]:
            fill_polygons(out.prob_mask, [outline], 0.0)
        elif outline is not None:
            fill_polygons(out.prob_map, batch.kernels[i], 1.0)
            fill_polygons(out.thresh_mask, [outline], 1.0)


class EdgeTable(NamedTuple):
    """Non-degenerate edges of P closed polygons, from the lexicographically smaller endpoint: float32 (E,)
    start ``ax, ay``, unit direction ``ux, uy`` and ``length``; polygon p's edges are ``first[p]:first[p + 1]``."""

    ax: np.ndarray
    ay: np.ndarray
    ux: np.ndarray
    uy: np.ndarray
    length: np.ndarray
    first: np.ndarray


def edge_table(points: np.ndarray, counts: np.ndarray) -> EdgeTable:
    """Edges of closed polygons given as flat (M, 2) ``points``, ``counts[p]`` of them for polygon p;
    zero-length edges are dropped (their endpoint stays covered)."""
    start = points.astype(np.float64)
    begin = np.cumsum(counts) - counts
    nxt = np.arange(len(start)) + 1
    nxt[(begin + counts - 1)[counts > 0]] = begin[counts > 0]
    end = start[nxt]
    swap = (end[:, 0] < start[:, 0]) | ((end[:, 0] == start[:, 0]) & (end[:, 1] < start[:, 1]))
    start, end = np.where(swap[:, None], end, start), np.where(swap[:, None], start, end)
    delta = end - start
    length = np.hypot(delta[:, 0], delta[:, 1])
    keep = length > 0
    poly = np.repeat(np.arange(len(counts)), counts)[keep]
    start, unit = start[keep].astype(F32), (delta[keep] / length[keep, None]).astype(F32)
    first = np.searchsorted(poly, np.arange(len(counts) + 1))
    return EdgeTable(start[:, 0], start[:, 1], unit[:, 0], unit[:, 1], length[keep].astype(F32), first)


@numba.njit(cache=True, nogil=True)
def _draw_borders(ax, ay, ux, uy, length, first, boxes, offsets, low, span, thresh_map, thresh_mask):
    """Raise ``thresh_map`` to ``low + span * (1 - min(dist / D, 1))`` and set ``thresh_mask`` (0/1) to 1 where
    dist <= D, dist being the distance to the polygon's nearest edge (an `EdgeTable`'s), within each polygon's
    inclusive (P, 4) int64 pixel box ``x0, y0, x1, y1``; ``offsets``: (P,) float32 D > 0; C-contiguous float32 maps."""
    coords = np.arange(thresh_map.shape[1]).astype(np.float32)
    best_row = np.empty(thresh_map.shape[1], dtype=np.float32)
    windows = _edge_windows(ax, ay, ux, uy, length, first, boxes, offsets)
    for p in range(boxes.shape[0]):
        x0, y0, x1, y1 = boxes[p, 0], boxes[p, 1], boxes[p, 2], boxes[p, 3]
        grid_x = coords[x0 : x1 + 1]
        best = best_row[: x1 - x0 + 1]
        for y in range(y0, y1 + 1):
            best[:] = np.float32(np.inf)
            for e in range(first[p], first[p + 1]):
                col0, col1, row0, row1 = windows[e, 0], windows[e, 1], windows[e, 2], windows[e, 3]
                if row0 <= y <= row1:
                    _edge_distance_sq(grid_x[col0:col1], np.float32(y), ax[e], ay[e], ux[e], uy[e], length[e],
                                      best[col0:col1])
            _threshold_row(best, offsets[p], low, span, thresh_map[y, x0 : x1 + 1], thresh_mask[y, x0 : x1 + 1])


@numba.njit(cache=True, nogil=True)
def _edge_windows(ax, ay, ux, uy, length, first, boxes, offsets):
    """(E, 4) int64 per edge: columns [col0, col1) relative to its polygon's box and rows [row0, row1]
    (absolute) holding every box pixel that can lie within D of the edge (bounding box grown by D + 1 px
    plus a float32 rounding margin)."""
    windows = np.empty((first[-1], 4), dtype=np.int64)
    for p in range(boxes.shape[0]):
        x0, y0, x1, y1 = boxes[p, 0], boxes[p, 1], boxes[p, 2], boxes[p, 3]
        for e in range(first[p], first[p + 1]):
            start_x, start_y, size = np.float64(ax[e]), np.float64(ay[e]), np.float64(length[e])
            end_x, end_y = start_x + np.float64(ux[e]) * size, start_y + np.float64(uy[e]) * size
            reach = np.float64(offsets[p]) + 1.0 + (abs(start_x) + abs(start_y) + size + x1 + y1) * 2.0**-18
            windows[e, 0] = min(max(np.int64(np.floor(min(start_x, end_x) - reach)), x0), x1 + 1) - x0
            windows[e, 1] = min(max(np.int64(np.ceil(max(start_x, end_x) + reach)) + 1, x0), x1 + 1) - x0
            windows[e, 2] = max(np.int64(np.floor(min(start_y, end_y) - reach)), y0)
            windows[e, 3] = min(np.int64(np.ceil(max(start_y, end_y) + reach)), y1)
    return windows


@numba.njit(cache=True, nogil=True)
def _edge_distance_sq(grid_x, grid_y, ax, ay, ux, uy, length, best):
    """``best = min(best, dist^2)`` along one pixel row (along, normal and excess to the segment, float32)."""
    dy = grid_y - ay
    dy_uy, dy_ux = dy * uy, dy * ux
    for j in range(best.size):
        dx = grid_x[j] - ax
        along = dx * ux + dy_uy
        normal = dx * uy - dy_ux
        excess = along - min(max(along, np.float32(0.0)), length)
        best[j] = np.minimum(best[j], excess * excess + normal * normal)


@numba.njit(cache=True, nogil=True)
def _threshold_row(best, offset, low, span, row_map, row_mask):
    """One row of ``_draw_borders`` from its squared distances."""
    one = np.float32(1.0)
    for j in range(best.size):
        ratio = np.sqrt(best[j]) / offset
        row_map[j] = np.fmax(low + span * (one - np.minimum(ratio, one)), row_map[j])
        row_mask[j] += (one - row_mask[j]) * np.float32(ratio <= one)  # max(mask, near) for 0/1 values


def border_input(batch: PolygonBatch, height: int, width: int) -> tuple[EdgeTable, np.ndarray, np.ndarray]:
    """Edges, (P, 4) pixel boxes and float32 D of the kept polygons whose D-neighbourhood meets the image."""
    kept = ~batch.ignored
    points, counts, offsets = batch.points[np.repeat(kept, batch.counts)], batch.counts[kept], batch.offsets[kept]
    boxes, inside = pixel_boxes(points, counts, offsets, height, width)
    points = points[np.repeat(inside, counts)]
    return edge_table(points, counts[inside]), boxes[inside], offsets[inside].astype(F32)


def make_db_targets(
    polygons: Sequence[np.ndarray], height: int, width: int, shrink_ratio: float = 0.4,
    thresh_min: float = 0.3, thresh_max: float = 0.7, min_text_size: float = 8,
    ignore: Sequence[bool] | None = None, out: DBTargets | None = None,
) -> DBTargets:
    """DB targets of an (height, width) image with (N, 2) float32 ``polygons``; ``ignore[i]`` flags polygon i,
    ``out`` (returned) holds (H, W) float32 arrays to write into. Never raises on degenerate polygons."""
    out = allocate_targets(height, width) if out is None else out
    for name, array in zip(FIELDS, out):
        if array.shape != (height, width) or array.dtype != np.float32 or not array.flags.writeable:
            raise ValueError(f"out.{name} must be a writeable ({height}, {width}) float32 array")
    # the compiled steps take C-contiguous maps: strided ``out`` arrays get a copy of the result
    contiguous = all(array.flags.c_contiguous for array in out)
    target = out if contiguous else allocate_targets(height, width)
    batch = prepare_polygons(polygons, ignore, shrink_ratio, min_text_size)
    rasterise(batch, target)
    low, span = F32(thresh_min), F32(thresh_max) - F32(thresh_min)
    target.thresh_map.fill(low)
    edges, boxes, offsets = border_input(batch, height, width)
    if len(boxes):
        _draw_borders(*edges, boxes, offsets, low, span, target.thresh_map, target.thresh_mask)
    if not contiguous:
        for array, result in zip(out, target):
            array[...] = result
    return out


def warm_up() -> None:
    """Compile (or load from numba's cache) the compiled steps of ``make_db_targets`` in this process, so that
    DataLoader workers forked later inherit them."""
    make_db_targets([np.array([[1, 1], [6, 1], [6, 6], [1, 6]], dtype=np.float32)], 8, 8, min_text_size=0)
