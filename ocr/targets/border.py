"""Squared distance from every pixel of a box to the nearest edge (segment) of a polygon.

Two implementations with bit-identical float32 results: ``distance_sq_plain`` evaluates the segment
formula on full pixel grids, edge by edge; ``SeparableTerms`` + ``distance_sq_fast`` evaluate the same
float operations, but on 1-D row/column terms wherever they separate. Along an axis-aligned edge the
formula splits exactly into (row term) + (column term), and edges of equal span share one of the two
terms (the other is merged by a minimum, which commutes exactly with the addition), so an axis-aligned
rectangle costs three grid operations instead of about forty. The 1-D terms of all polygons of an image
are computed in one vectorised pass. Other edges are evaluated only within D + 1 px of the segment,
which changes nothing at distances <= D. Hand-written because no maintained library gives exact
segment distances over a pixel grid (cv2.distanceTransform measures to pixel centres, not to segments).

Per edge, with start ``a``, unit direction ``u`` and length ``L`` (edges are oriented canonically,
from the lexicographically smaller endpoint, so equal segments give equal numbers)::

    along  = (x - ax) * ux + (y - ay) * uy
    normal = (x - ax) * uy - (y - ay) * ux
    excess = along - clip(along, 0, L)
    dist^2 = excess * excess + normal * normal
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class EdgeTable:
    """Non-degenerate edges of P closed polygons, canonically oriented.

    float32 arrays ``ax, ay, ux, uy, length`` of shape (E,); ``poly`` (E,) polygon index (sorted);
    edges of polygon p are ``first[p]:first[p + 1]``.
    """

    ax: np.ndarray
    ay: np.ndarray
    ux: np.ndarray
    uy: np.ndarray
    length: np.ndarray
    poly: np.ndarray
    first: np.ndarray


def edge_table(polygons: Sequence[np.ndarray]) -> EdgeTable:
    """Edges of the closed (N, 2) polygons; zero-length edges are dropped (their endpoint stays covered)."""
    counts = np.array([len(p) for p in polygons], dtype=np.int64)
    start = np.concatenate(polygons).astype(np.float64) if len(polygons) else np.zeros((0, 2))
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
    poly = np.repeat(np.arange(len(polygons)), counts)[keep]
    start, delta, length = start[keep], delta[keep], length[keep]
    return EdgeTable(
        start[:, 0].astype(F32), start[:, 1].astype(F32),
        (delta[:, 0] / length).astype(F32), (delta[:, 1] / length).astype(F32),
        length.astype(F32), poly, np.searchsorted(poly, np.arange(len(polygons) + 1)),
    )


def distance_sq_plain(edges: EdgeTable, p: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) float32 squared distance from the box's pixels to polygon p's nearest edge, on full grids."""
    x0, y0, x1, y1 = box
    grid_x, grid_y = np.meshgrid(np.arange(x0, x1 + 1, dtype=F32), np.arange(y0, y1 + 1, dtype=F32))
    best = np.full(grid_x.shape, np.inf, dtype=F32)
    for e in range(edges.first[p], edges.first[p + 1]):
        dx = grid_x - edges.ax[e]
        dy = grid_y - edges.ay[e]
        along = dx * edges.ux[e] + dy * edges.uy[e]
        normal = dx * edges.uy[e] - dy * edges.ux[e]
        excess = along - np.clip(along, F32(0), edges.length[e])
        best = np.minimum(best, excess * excess + normal * normal)
    return best


def _ranges(lo: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(lo[k], lo[k] + count[k])`` over k (int64)."""
    offsets = np.cumsum(count) - count
    return np.repeat(lo - offsets, count) + np.arange(count.sum())


@dataclass(frozen=True)
class SeparableTerms:
    """1-D terms of the axis-aligned edges of all polygons, grouped (see ``separable_terms``).

    Group g belongs to polygon ``poly[g]`` (groups of polygon p are ``first[p]:first[p + 1]``); its
    ``excess^2`` along the edge axis is ``excess[along[g]:along[g + 1]]`` and its merged ``normal^2``
    across it is ``normal[across[g]:across[g + 1]]``; ``vertical[g]`` says the axis is y (rows).
    Polygon p's other ("general") edges are ``general[general_first[p]:general_first[p + 1]]``;
    ``windows[k]`` = (row0, row1, col0, col1), half-open and relative to the polygon's box, holds every
    pixel within D + 1 px of general edge k: beyond it the edge cannot be nearest at a distance <= D.
    """

    excess: np.ndarray
    normal: np.ndarray
    along: list[int]
    across: list[int]
    vertical: list[bool]
    first: list[int]
    general: list[int]
    general_first: list[int]
    windows: list[tuple[int, int, int, int]]


def separable_terms(edges: EdgeTable, boxes: np.ndarray, offsets: np.ndarray) -> SeparableTerms:
    """1-D terms of every polygon's axis-aligned edges, in one vectorised pass over all polygons.

    ``boxes``: (P, 4) inclusive pixel boxes ``x0, y0, x1, y1``, one per polygon of ``edges``;
    ``offsets``: (P,) D per polygon.
    Edges of one polygon and orientation with equal start and length along their axis form a group:
    they share ``excess^2`` along the axis, and their ``normal^2`` terms across it merge by a minimum.
    """
    n_poly = len(boxes)
    horizontal = (edges.uy == 0) & (edges.ux == 1)
    vertical = (edges.ux == 0) & (edges.uy == 1)
    axis = np.flatnonzero(horizontal | vertical)
    poly, vert, length = edges.poly[axis], vertical[axis], edges.length[axis]
    start_along = np.where(vert, edges.ay[axis], edges.ax[axis])
    start_across = np.where(vert, edges.ax[axis], edges.ay[axis])
    box = boxes[poly]
    lo_along = np.where(vert, box[:, 1], box[:, 0])
    n_along = np.where(vert, box[:, 3], box[:, 2]) - lo_along + 1
    lo_across = np.where(vert, box[:, 0], box[:, 1])
    n_across = np.where(vert, box[:, 2], box[:, 3]) - lo_across + 1

    order = np.lexsort((length, start_along, vert, poly))
    poly, vert, length, start_along, start_across = (
        poly[order], vert[order], length[order], start_along[order], start_across[order])
    new = np.ones(len(poly), dtype=bool)
    new[1:] = ((poly[1:] != poly[:-1]) | (vert[1:] != vert[:-1]) | (start_along[1:] != start_along[:-1])
               | (length[1:] != length[:-1]))
    head = np.flatnonzero(new)
    group = np.cumsum(new) - 1

    n_a = n_along[order][head]
    excess = _ranges(lo_along[order][head], n_a).astype(F32) - np.repeat(start_along[head], n_a)
    excess -= np.clip(excess, F32(0), np.repeat(length[head], n_a))
    excess *= excess

    n_c = n_across[order][head]
    coords = _ranges(lo_across[order][head], n_c).astype(F32)
    normal = coords - np.repeat(start_across[head], n_c)
    normal *= normal
    c_end = np.cumsum(n_c)
    rank = np.arange(len(poly)) - head[group]
    for r in range(1, int(rank.max(initial=0)) + 1):
        members = np.flatnonzero(rank == r)
        g = group[members]
        idx = _ranges(c_end[g] - n_c[g], n_c[g])
        other = coords[idx] - np.repeat(start_across[members], n_c[g])
        other *= other
        normal[idx] = np.minimum(normal[idx], other)

    general = np.flatnonzero(~(horizontal | vertical))
    poly_range = np.arange(n_poly + 1)
    windows = _edge_windows(edges, general, boxes, offsets)
    return SeparableTerms(
        excess, normal,
        np.concatenate([[0], np.cumsum(n_a)]).tolist(), np.concatenate([[0], c_end]).tolist(),
        vert[head].tolist(), np.searchsorted(poly[head], poly_range).tolist(),
        general.tolist(), np.searchsorted(edges.poly[general], poly_range).tolist(), windows,
    )


def _edge_windows(
    edges: EdgeTable, index: np.ndarray, boxes: np.ndarray, offsets: np.ndarray
) -> list[tuple[int, int, int, int]]:
    """Per edge in ``index``: (row0, row1, col0, col1) of its (D + 1)-neighbourhood within its polygon's
    box, half-open, relative to the box (see ``SeparableTerms``)."""
    if not len(index):
        return []
    poly = edges.poly[index]
    box = boxes[poly]
    reach = offsets[poly].astype(np.float64) + 1.0
    ax, ay = edges.ax[index].astype(np.float64), edges.ay[index].astype(np.float64)
    bx = ax + edges.ux[index] * edges.length[index].astype(np.float64)
    by = ay + edges.uy[index] * edges.length[index].astype(np.float64)
    col0 = np.clip(np.floor(np.minimum(ax, bx) - reach), box[:, 0], box[:, 2] + 1) - box[:, 0]
    col1 = np.clip(np.ceil(np.maximum(ax, bx) + reach) + 1, box[:, 0], box[:, 2] + 1) - box[:, 0]
    row0 = np.clip(np.floor(np.minimum(ay, by) - reach), box[:, 1], box[:, 3] + 1) - box[:, 1]
    row1 = np.clip(np.ceil(np.maximum(ay, by) + reach) + 1, box[:, 1], box[:, 3] + 1) - box[:, 1]
    return list(zip(row0.astype(int).tolist(), row1.astype(int).tolist(), col0.astype(int).tolist(),
                    col1.astype(int).tolist()))


def distance_sq_fast(
    edges: EdgeTable, terms: SeparableTerms, p: int, box: tuple[int, int, int, int], coords: np.ndarray,
    out: np.ndarray,
) -> None:
    """Writes polygon p's squared edge distances into ``out`` (h, w).

    Bit-identical to ``distance_sq_plain(edges, p, box)`` wherever that is <= (D + 1)^2; elsewhere
    possibly larger (a general edge is evaluated only in its window), so every derived quantity that
    saturates at distance D is unchanged. ``coords`` is ``arange(n, dtype=float32)``, n > every box
    coordinate.
    """
    x0, y0, x1, y1 = box
    excess, normal, along, across, vertical = terms.excess, terms.normal, terms.along, terms.across, terms.vertical
    first = True
    for g in range(terms.first[p], terms.first[p + 1]):
        a, c = excess[along[g] : along[g + 1]], normal[across[g] : across[g + 1]]
        rows, cols = (a[:, None], c[None, :]) if vertical[g] else (c[:, None], a[None, :])
        if first:
            np.add(rows, cols, out=out)
            first = False
        else:
            np.minimum(out, rows + cols, out=out)
    if first:
        out.fill(np.inf)
    g0, g1 = terms.general_first[p], terms.general_first[p + 1]
    for e, (r0, r1, c0, c1) in zip(terms.general[g0:g1], terms.windows[g0:g1]):
        if r0 >= r1 or c0 >= c1:
            continue
        target = out[r0:r1, c0:c1]
        xs, ys = coords[x0 + c0 : x0 + c1], coords[y0 + r0 : y0 + r1]
        ax, ay, ux, uy = edges.ax[e], edges.ay[e], edges.ux[e], edges.uy[e]
        dx, dy = xs - ax, ys - ay
        dist_sq = np.add((dx * ux)[None, :], (dy * uy)[:, None])  # along
        # clip(along, 0, L) with OpenCV's SIMD thresholds (np.clip is several times slower); only the
        # sign of a zero may differ, which the square below erases
        scratch = cv2.threshold(dist_sq, 0.0, 0.0, cv2.THRESH_TOZERO)[1]
        cv2.threshold(scratch, float(edges.length[e]), 0.0, cv2.THRESH_TRUNC, dst=scratch)
        dist_sq -= scratch  # excess
        dist_sq *= dist_sq
        np.subtract((dx * uy)[None, :], (dy * ux)[:, None], out=scratch)  # normal
        scratch *= scratch
        dist_sq += scratch
        np.minimum(target, dist_sq, out=target)
