"""Reference DB targets: the threshold map on full numpy grids, edge by edge (bit-identical to ``make_db_targets``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ocr.targets.db_targets import F32, DBTargets, EdgeTable, allocate_targets, border_input, rasterise
from ocr.targets.polygons import prepare_polygons


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


def make_db_targets_plain(
    polygons: Sequence[np.ndarray], height: int, width: int, shrink_ratio: float = 0.4,
    thresh_min: float = 0.3, thresh_max: float = 0.7, min_text_size: float = 8,
    ignore: Sequence[bool] | None = None,
) -> DBTargets:
    """``make_db_targets`` with thresh_map and the dilation part of thresh_mask computed polygon by polygon."""
    out = allocate_targets(height, width)
    batch = prepare_polygons(polygons, ignore, shrink_ratio, min_text_size)
    rasterise(batch, out)
    edges, boxes, offsets = border_input(batch, height, width)
    canvas = np.zeros(out.thresh_map.shape, dtype=np.float32)
    for p, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        ratio = np.sqrt(distance_sq_plain(edges, p, (x0, y0, x1, y1))) / offsets[p]
        window = (slice(y0, y1 + 1), slice(x0, x1 + 1))
        out.thresh_mask[window] = np.maximum(out.thresh_mask[window], ratio <= 1)
        canvas[window] = np.maximum(canvas[window], 1 - np.minimum(ratio, 1))
    low, span = F32(thresh_min), F32(thresh_max) - F32(thresh_min)
    out.thresh_map[...] = low + span * canvas
    return out
