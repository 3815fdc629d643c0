"""DB post-processing's fast path in two stages, so that a parameter search can share work.

1. ``candidates(prob, thresh, max_candidates, use_polygon, min_size) -> Candidates``: everything that
   depends only on the map and these keys: outer contours, area order and ``max_candidates``, each
   candidate's approximated polygon (polygon mode) or ordered minimum-area quad (box mode, where quads
   with a shorter side < ``min_size`` are dropped here; polygon mode ignores ``min_size`` in this stage),
   and each candidate's score (mean probability inside it).
2. ``expand(candidates, box_thresh, unclip_ratio, min_size, scale, orig_hw) -> (polygons, scores)``:
   drops candidates scoring below ``box_thresh``, unclips by ``unclip_ratio`` (the active mode's ratio),
   applies the final ``min_size`` check and maps the survivors to original-image pixels. It does not
   change its ``Candidates``, so it can be called many times on the same ones.

For any ``PostprocessParams`` ``p``::

    expand(candidates(prob, p.thresh, p.max_candidates, p.use_polygon, p.min_size),
           p.box_thresh, p.unclip_ratio, p.min_size, scale, orig_hw)
    == postprocess_plain(prob, scale, p, orig_hw)      # the same polygons and scores, exactly

(in box mode ``expand`` must get the ``min_size`` its candidates were made with; in polygon mode one
``Candidates`` serves every ``min_size``), and ``candidates(..., max_candidates=m, ...)`` equals
``candidates(..., max_candidates=M, ...).first(m)`` for m <= M. The semantics are those of
``ocr.postprocess.db_postprocess``'s module docstring.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, repeat

import cv2
import numpy as np
import pyclipper

from ocr.postprocess.geometry import (
    APPROX_EPSILON, ARC_TOLERANCE_PX, BOX_SHIFT, FIXED_ONE, POLYGON_SHIFT, check_scale, default_orig_hw, grow,
    new_clipper, quad_to_fixed, short_side, to_original,
)
from ocr.postprocess.maps import as_map, outer_contours
from ocr.postprocess.packed import box_points, ordered_quads, outline_measures, pixel_boxes, rect_array
from ocr.postprocess.params import check_box_thresh, check_max_candidates, check_non_negative, check_thresh
from ocr.postprocess.round_offset import offset_convex_quads
from ocr.postprocess.scores import region_scores
from ocr.utils.collector import paused_gc

# A pyclipper JT_ROUND outline lies at most this far (px) inside the exact offset: a round join's chord
# spans at most 1.5 arc steps (2.25 x the arc tolerance of sagitta), plus rounding to the pixel grid.
OFFSET_SLACK_PX = 2.25 * ARC_TOLERANCE_PX + 0.75

Result = tuple[list[np.ndarray], list[float]]


@dataclass(frozen=True, eq=False)
class Candidates:
    """The candidates of one map for one (thresh, max_candidates, use_polygon[, min_size in box mode]),
    in area order (largest contour first), packed into a few arrays (about 200 bytes per candidate).

    ``outlines``: int32 (P, 2), candidate ``i`` being ``outlines[starts[i]:starts[i + 1]]``: its
    approximated polygon in map pixels (polygon mode) or its quad, top-left corner first, in fixed point
    with ``FIXED_SHIFT`` fractional bits (box mode). ``starts``: int64 (K + 1,). ``ranks``: int64 (K,),
    the position of each candidate's contour in the area order. ``scores``: float64 (K,), the mean
    probability inside each outline (NaN counting 0, +inf 1, -inf 0). ``areas``, ``perimeters``: float64
    (K,), the unclip distance being ``areas * unclip_ratio / perimeters`` px. ``map_hw``: the map's (h, w).
    """

    use_polygon: bool
    outlines: np.ndarray
    starts: np.ndarray
    ranks: np.ndarray
    scores: np.ndarray
    areas: np.ndarray
    perimeters: np.ndarray
    map_hw: tuple[int, int]

    def __len__(self) -> int:
        return len(self.scores)

    def first(self, max_candidates: int) -> Candidates:
        """The candidates that ``max_candidates`` (<= the one these were made with) would have kept."""
        check_max_candidates(max_candidates)
        count = int(np.searchsorted(self.ranks, max_candidates))
        end = int(self.starts[count])
        return Candidates(
            self.use_polygon, self.outlines[:end], self.starts[: count + 1], self.ranks[:count],
            self.scores[:count], self.areas[:count], self.perimeters[:count], self.map_hw,
        )


def candidates(prob: np.ndarray, thresh: float, max_candidates: int, use_polygon: bool, min_size: float) -> Candidates:
    """Stage 1: the candidates of a float32 (h, w) map (see the module docstring)."""
    check_thresh(thresh)
    check_max_candidates(max_candidates)
    check_non_negative("min_size", min_size)
    prob = as_map(prob)
    contours = outer_contours(prob, thresh)
    areas = np.fromiter(map(cv2.contourArea, contours), dtype=np.float64, count=len(contours))
    order = np.argsort(-areas, kind="stable")[:max_candidates].tolist()
    if use_polygon:
        return _polygon_candidates(prob, contours, order)
    return _box_candidates(prob, contours, order, min_size)


def _polygon_candidates(prob: np.ndarray, contours: list[np.ndarray], order: list[int]) -> Candidates:
    """approxPolyDP polygons of >= 4 points (a contour of < 4 points is skipped before: approxPolyDP
    never adds points)."""
    ranks = [rank for rank, i in enumerate(order) if len(contours[i]) >= 4]
    chosen = [contours[order[rank]] for rank in ranks]
    epsilons = [APPROX_EPSILON * length for length in map(cv2.arcLength, chosen, repeat(True))]
    approximated = list(map(cv2.approxPolyDP, chosen, epsilons, repeat(True)))
    kept = [k for k, points in enumerate(approximated) if len(points) >= 4]
    polygons = [approximated[k].reshape(-1, 2) for k in kept]
    return _packed(prob, True, polygons, [ranks[k] for k in kept], POLYGON_SHIFT, None)


def _box_candidates(prob: np.ndarray, contours: list[np.ndarray], order: list[int], min_size: float) -> Candidates:
    """Ordered minAreaRect quads whose shorter side is >= ``min_size``."""
    rects = list(map(cv2.minAreaRect, [contours[i] for i in order]))
    ranks = [rank for rank, (_, size, _) in enumerate(rects) if min(size) >= min_size]
    quads = ordered_quads(box_points(rect_array([rects[rank] for rank in ranks])))
    fixed = quad_to_fixed(quads)
    return _packed(prob, False, list(fixed), ranks, BOX_SHIFT, quads.reshape(-1, 2))


def _packed(
    prob: np.ndarray, use_polygon: bool, outlines: list[np.ndarray], ranks: list[int], shift: int,
    measured: np.ndarray | None,
) -> Candidates:
    """Candidates from int32 outlines (``shift`` fractional bits); their areas and perimeters are those
    of ``measured`` float32 points (default: the outlines themselves)."""
    sizes = [len(outline) for outline in outlines]
    starts = np.zeros(len(outlines) + 1, np.int64)
    np.cumsum(sizes, out=starts[1:])
    points = np.concatenate(outlines) if outlines else np.zeros((0, 2), np.int32)
    measured = points.astype(np.float32) if measured is None else measured
    areas, perimeters = outline_measures(measured, starts)
    boxes = pixel_boxes(points, starts, shift, prob.shape[0], prob.shape[1])
    return Candidates(
        use_polygon, points, starts, np.array(ranks, np.int64), region_scores(prob, outlines, boxes, shift),
        areas, perimeters, prob.shape,
    )


def expand(
    found: Candidates, box_thresh: float, unclip_ratio: float, min_size: float, scale: float = 1.0,
    orig_hw: tuple[int, int] | None = None,
) -> Result:
    """Stage 2: polygons (float32 (K, 2), original-image pixels) and scores of the candidates that
    survive (see the module docstring). ``orig_hw`` is the original (height, width) to clip to; by
    default (round(h / scale), round(w / scale)) of the map."""
    check_box_thresh(box_thresh)
    check_non_negative("polygon_unclip_ratio" if found.use_polygon else "box_unclip_ratio", unclip_ratio)
    check_non_negative("min_size", min_size)
    check_scale(scale)
    orig_hw = default_orig_hw(found.map_hw, scale, orig_hw)
    keep = np.flatnonzero((found.scores >= box_thresh) & (found.perimeters > 0))
    offsets = found.areas[keep] * unclip_ratio / found.perimeters[keep]
    if found.use_polygon:
        kept, points, ends = _grown_polygons(found, keep, offsets, min_size)
        shift = POLYGON_SHIFT
    else:
        kept, points = _grown_boxes(found, keep, offsets, min_size)
        ends, shift = list(range(4, len(points) + 1, 4)), BOX_SHIFT
    mapped = to_original(points, shift, scale, orig_hw)
    return [mapped[start:end] for start, end in zip([0, *ends], ends)], found.scores[kept].tolist()


@paused_gc()  # pyclipper's lists of [x, y] lists (see ocr.utils.collector)
def _grown_polygons(
    found: Candidates, keep: np.ndarray, offsets: np.ndarray, min_size: float
) -> tuple[list[int], np.ndarray, list[int]]:
    """Polygon mode: (kept candidates, their unclipped outlines packed as int32 (P, 2) pixels, where each
    outline ends). The minAreaRect check is skipped when the offset alone guarantees it (the outline
    then contains a disk of radius offset - ``OFFSET_SLACK_PX``)."""
    clipper = new_clipper(POLYGON_SHIFT)
    min_side = min_size + 2
    sure_offset = min_side / 2 + OFFSET_SLACK_PX
    points, starts = found.outlines.tolist(), found.starts.tolist()
    kept, outlines = [], []
    for i, offset in zip(keep.tolist(), offsets.tolist()):
        clipper.Clear()
        clipper.AddPath(points[starts[i] : starts[i + 1]], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        grown = clipper.Execute(offset)
        if len(grown) != 1:
            continue
        if offset < sure_offset and short_side(cv2.minAreaRect(np.array(grown[0], np.int32))) < min_side:
            continue
        kept.append(i)
        outlines.append(grown[0])
    ends = np.cumsum([len(outline) for outline in outlines], dtype=np.int64).tolist()
    flat = chain.from_iterable(chain.from_iterable(outlines))
    return kept, np.fromiter(flat, np.int32, 2 * ends[-1] if ends else 0).reshape(-1, 2), ends


def _grown_boxes(
    found: Candidates, keep: np.ndarray, offsets: np.ndarray, min_size: float
) -> tuple[list[int], np.ndarray]:
    """Box mode: (kept candidates, (4 * kept, 2) float32 ordered quads in fixed-point units). Offsets
    come from ``round_offset`` (pyclipper where it declines)."""
    quads = found.outlines.reshape(-1, 4, 2)[keep]
    points, starts, done = offset_convex_quads(quads, offsets * FIXED_ONE, ARC_TOLERANCE_PX * FIXED_ONE)
    outlines = [points[start:end] for start, end in zip(starts[:-1].tolist(), starts[1:].tolist())]
    clipper = new_clipper(BOX_SHIFT)
    for j in np.flatnonzero(~done).tolist():
        grown = grow(clipper, quads[j].tolist(), offsets[j], BOX_SHIFT)
        outlines[j] = np.concatenate(grown) if grown else None
    grown_at = [j for j, outline in enumerate(outlines) if outline is not None]
    rects = list(map(cv2.minAreaRect, [outlines[j] for j in grown_at]))
    min_side = (min_size + 2) * FIXED_ONE
    wide = [k for k, (_, size, _) in enumerate(rects) if min(size) >= min_side]
    kept = [int(keep[grown_at[k]]) for k in wide]
    return kept, ordered_quads(box_points(rect_array([rects[k] for k in wide]))).reshape(-1, 2)
