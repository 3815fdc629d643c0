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
  1 - min(dist / D, 1), dist the Euclidean distance to the polygon's nearest edge (v = 0 elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ocr.targets.border import F32, EdgeTable, draw_borders, edge_table
from ocr.targets.polygons import PolygonBatch, fill_polygons, fill_rectangles, pixel_boxes, prepare_polygons
from ocr.utils.errors import UserError, require_number

FIELDS = ("prob_map", "prob_mask", "thresh_map", "thresh_mask")


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
        require_number(value, f"collate_fn.{name}")
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
    ignored = batch.ignored.tolist()
    for i in np.flatnonzero(~batch.is_rect).tolist():
        outline = batch.outlines[i]
        if outline is None:
            continue
        if ignored[i]:
            fill_polygons(out.prob_mask, [outline], 0.0)
        else:
            fill_polygons(out.prob_map, batch.kernels[i], 1.0)
            fill_polygons(out.thresh_mask, [outline], 1.0)


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
    check_target_params(shrink_ratio, thresh_min, thresh_max, min_text_size)
    if out is None:
        out = allocate_targets(height, width)
    for name in FIELDS:
        array = getattr(out, name)
        if array.shape != (height, width) or array.dtype != np.float32 or not array.flags.writeable:
            raise ValueError(f"out.{name} must be a writeable ({height}, {width}) float32 array")
    # the compiled steps take C-contiguous maps: strided ``out`` arrays get a copy of the result
    contiguous = all(getattr(out, name).flags.c_contiguous for name in FIELDS)
    target = out if contiguous else allocate_targets(height, width)
    batch = prepare_polygons(polygons, ignore, shrink_ratio, min_text_size)
    rasterise(batch, target)
    low, span = F32(thresh_min), F32(thresh_max) - F32(thresh_min)
    target.thresh_map.fill(low)
    draw_borders(*border_input(batch, height, width), low, span, target.thresh_map, target.thresh_mask)
    if not contiguous:
        for name in FIELDS:
            getattr(out, name)[...] = getattr(target, name)
    return out


def warm_up() -> None:
    """Compile (or load from numba's cache) the compiled steps of ``make_db_targets`` in this process, so that
    DataLoader workers forked later inherit them."""
    make_db_targets([np.array([[1, 1], [6, 1], [6, 6], [1, 6]], dtype=np.float32)], 8, 8, min_text_size=0)
