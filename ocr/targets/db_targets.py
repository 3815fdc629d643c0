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

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ocr.targets.border import F32, EdgeTable, distance_sq_plain, draw_borders, edge_table
from ocr.targets.polygons import PolygonBatch, fill_polygons, fill_rectangles, pixel_boxes, prepare_polygons
from ocr.utils.errors import UserError, require_number


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
    """Uninitialised targets backed by one (4, H, W) float32 block (fewer page faults than four arrays)."""
    return DBTargets(*np.empty((4, height, width), dtype=np.float32))


_FIELDS = ("prob_map", "prob_mask", "thresh_map", "thresh_mask")


def _check_out(out: DBTargets, height: int, width: int) -> None:
    for name in _FIELDS:
        array = getattr(out, name)
        if array.shape != (height, width) or array.dtype != np.float32 or not array.flags.writeable:
            raise ValueError(f"out.{name} must be a writeable ({height}, {width}) float32 array")


def _rasterise(batch: PolygonBatch, out: DBTargets) -> None:
    """prob_map (shrunk outlines), prob_mask (ignored outlines) and the polygon interiors of thresh_mask."""
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


@dataclass(frozen=True)
class _Border:
    """Kept polygons whose D-neighbourhood meets the image: edges, (P, 4) pixel boxes, D (float32)."""

    edges: EdgeTable
    boxes: np.ndarray
    offsets: np.ndarray


def _border_input(batch: PolygonBatch, height: int, width: int) -> _Border:
    kept = ~batch.ignored
    points, counts, offsets = batch.points[np.repeat(kept, batch.counts)], batch.counts[kept], batch.offsets[kept]
    boxes, inside = pixel_boxes(points, counts, offsets, height, width)
    points = points[np.repeat(inside, counts)]
    return _Border(edge_table(points, counts[inside]), boxes[inside], offsets[inside].astype(F32))


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


def _border_fast(border: _Border, out: DBTargets, low: np.float32, span: np.float32) -> None:
    """Same result as ``_border_plain``, in one compiled pass per box row (the rescale to [low, high] is
    monotone, so it is applied before the max)."""
    out.thresh_map.fill(low)
    draw_borders(border.edges, border.boxes, border.offsets, low, span, out.thresh_map, out.thresh_mask)


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
    # the compiled steps take C-contiguous maps: strided ``out`` arrays get a copy of the result
    contiguous = all(getattr(out, name).flags.c_contiguous for name in _FIELDS)
    target = out if contiguous else allocate_targets(height, width)
    batch = prepare_polygons(polygons, ignore, shrink_ratio, min_text_size)
    _rasterise(batch, target)
    low, span = F32(thresh_min), F32(thresh_max) - F32(thresh_min)
    border_fn(_border_input(batch, height, width), target, low, span)
    if not contiguous:
        for name in _FIELDS:
            getattr(out, name)[...] = getattr(target, name)
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


def warm_up() -> None:
    """Compile the compiled steps of ``make_db_targets`` in this process, or load them from numba's
    on-disk cache (about 0.7 s when cached, a few seconds when not), so that DataLoader workers forked
    later inherit them instead of each loading them again."""
    make_db_targets([np.array([[1, 1], [6, 1], [6, 6], [1, 6]], dtype=np.float32)], 8, 8, min_text_size=0)


def make_db_targets_plain(
    polygons: Sequence[np.ndarray], height: int, width: int, shrink_ratio: float = 0.4,
    thresh_min: float = 0.3, thresh_max: float = 0.7, min_text_size: float = 8,
    ignore: Sequence[bool] | None = None, out: DBTargets | None = None,
) -> DBTargets:
    """Reference for ``make_db_targets``: same result, threshold map computed on full grids per edge."""
    return _build(polygons, height, width, shrink_ratio, thresh_min, thresh_max, min_text_size, ignore,
                  out, _border_plain)
