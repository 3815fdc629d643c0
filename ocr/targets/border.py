"""Threshold map and mask from exact pixel-to-segment distances, in compiled (numba) float32 loops."""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class EdgeTable:
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
    last = begin + counts - 1
    nxt[last[counts > 0]] = begin[counts > 0]
    end = start[nxt]
    swap = (end[:, 0] < start[:, 0]) | ((end[:, 0] == start[:, 0]) & (end[:, 1] < start[:, 1]))
    start, end = np.where(swap[:, None], end, start), np.where(swap[:, None], start, end)
    delta = end - start
    length = np.hypot(delta[:, 0], delta[:, 1])
    keep = length > 0
    poly = np.repeat(np.arange(len(counts)), counts)[keep]
    start, delta, length = start[keep], delta[keep], length[keep]
    return EdgeTable(
        start[:, 0].astype(F32), start[:, 1].astype(F32),
        (delta[:, 0] / length).astype(F32), (delta[:, 1] / length).astype(F32),
        length.astype(F32), np.searchsorted(poly, np.arange(len(counts) + 1)),
    )


def draw_borders(
    edges: EdgeTable, boxes: np.ndarray, offsets: np.ndarray, low: np.float32, span: np.float32,
    thresh_map: np.ndarray, thresh_mask: np.ndarray,
) -> None:
    """Raise ``thresh_map`` to ``low + span * (1 - min(dist / D, 1))`` and set ``thresh_mask`` (0/1) to 1 where
    dist <= D, dist being the distance to the polygon's nearest edge, within each polygon's inclusive
    (P, 4) int64 pixel box ``x0, y0, x1, y1``; ``offsets``: (P,) float32 D > 0; C-contiguous float32 maps."""
    if len(boxes):
        _draw_borders(
            edges.ax, edges.ay, edges.ux, edges.uy, edges.length, edges.first, boxes, offsets, F32(low), F32(span),
            thresh_map, thresh_mask,
        )


@numba.njit(cache=True, nogil=True)
def _draw_borders(ax, ay, ux, uy, length, first, boxes, offsets, low, span, thresh_map, thresh_mask):
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
    """One row of ``draw_borders`` from its squared distances."""
    one = np.float32(1.0)
    for j in range(best.size):
        ratio = np.sqrt(best[j]) / offset
        row_map[j] = np.fmax(low + span * (one - np.minimum(ratio, one)), row_map[j])
        row_mask[j] += (one - row_mask[j]) * np.float32(ratio <= one)  # max(mask, near) for 0/1 values
