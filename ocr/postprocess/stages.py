"""DB post-processing in two stages, so that a parameter search can share work. ``candidates`` does what depends on
the map, ``thresh``, ``max_candidates`` and ``use_polygon`` (contours, area order, approximated polygons or ordered
quads, scores; box mode also drops quads with a shorter side < ``min_size``); ``expand`` the ``box_thresh`` filter,
the unclip, the final ``min_size`` check and the mapping to original-image pixels, leaving its ``Candidates``
unchanged. Together they give ``ocr.postprocess.db_postprocess``'s result (box mode: with the same ``min_size``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain, repeat

import cv2
import numpy as np
import pyclipper

from ocr.postprocess.geometry import (
    APPROX_EPSILON, ARC_TOLERANCE_PX, BOX_SHIFT, FIXED_ONE, POLYGON_SHIFT, as_map, check_scale,
    default_orig_hw, grow, new_clipper, outer_contours, quad_to_fixed, to_original,
)
from ocr.postprocess.packed import (
    box_points, offset_convex_quads, ordered_quads, outline_measures, pixel_boxes, rect_array, region_scores,
)
from ocr.utils.collector import paused_gc

# How far (px) a pyclipper JT_ROUND outline can lie inside the exact offset (round-join chords, grid rounding).
OFFSET_SLACK_PX = 2.25 * ARC_TOLERANCE_PX + 0.75

Result = tuple[list[np.ndarray], list[float]]
Grown = tuple[list[int], np.ndarray, list[int]]  # kept candidates, their outlines packed (P, 2), where each ends


@dataclass(frozen=True, eq=False)
class Candidates:
    """The candidates of one map for one (thresh, max_candidates, use_polygon[, min_size in box mode]),
    in area order (largest contour first); candidate ``i`` is ``outlines[starts[i]:starts[i + 1]]``."""

    use_polygon: bool
    outlines: np.ndarray  # int32 (P, 2): polygons in map pixels, or quads (top-left first) at FIXED_SHIFT bits
    starts: np.ndarray  # int64 (K + 1,)
    scores: np.ndarray  # float64 (K,): mean probability inside (NaN counting 0, +inf 1, -inf 0)
    areas: np.ndarray  # float64 (K,): the unclip distance is areas * unclip_ratio / perimeters px
    perimeters: np.ndarray
    map_hw: tuple[int, int]

    def __len__(self) -> int:
        return len(self.scores)


def candidates(prob: np.ndarray, thresh: float, max_candidates: int, use_polygon: bool, min_size: float) -> Candidates:
    """Stage 1: the candidates of a float32 (h, w) map (see the module docstring)."""
    prob = as_map(prob)
    contours = outer_contours(prob, thresh)
    areas = np.fromiter(map(cv2.contourArea, contours), dtype=np.float64, count=len(contours))
    order = np.argsort(-areas, kind="stable")[:max_candidates].tolist()
    if not use_polygon:  # ordered minAreaRect quads whose shorter side is >= min_size
        rects = list(map(cv2.minAreaRect, [contours[i] for i in order]))
        quads = ordered_quads(box_points(rect_array([rect for rect in rects if min(rect[1]) >= min_size])))
        return _packed(prob, False, list(quad_to_fixed(quads)), BOX_SHIFT, quads.reshape(-1, 2))
    # approxPolyDP polygons of >= 4 points
    chosen = [contours[i] for i in order if len(contours[i]) >= 4]
    epsilons = [APPROX_EPSILON * length for length in map(cv2.arcLength, chosen, repeat(True))]
    approximated = list(map(cv2.approxPolyDP, chosen, epsilons, repeat(True)))
    polygons = [points.reshape(-1, 2) for points in approximated if len(points) >= 4]
    return _packed(prob, True, polygons, POLYGON_SHIFT, None)


def _packed(
    prob: np.ndarray, use_polygon: bool, outlines: list[np.ndarray], shift: int, measured: np.ndarray | None,
) -> Candidates:
    """Candidates from int32 outlines, measured on ``measured`` float32 points (default: the outlines)."""
    starts = np.zeros(len(outlines) + 1, np.int64)
    np.cumsum([len(outline) for outline in outlines], out=starts[1:])
    points = np.concatenate(outlines) if outlines else np.zeros((0, 2), np.int32)
    measured = points.astype(np.float32) if measured is None else measured
    areas, perimeters = outline_measures(measured, starts)
    boxes = pixel_boxes(points, starts, shift, prob.shape[0], prob.shape[1])
    return Candidates(
        use_polygon, points, starts, region_scores(prob, outlines, boxes, shift), areas, perimeters, prob.shape,
    )


def expand(
    found: Candidates, box_thresh: float, unclip_ratio: float, min_size: float, scale: float = 1.0,
    orig_hw: tuple[int, int] | None = None,
) -> Result:
    """Stage 2: polygons (float32 (K, 2), original-image pixels) and scores of the surviving candidates."""
    check_scale(scale)
    orig_hw = default_orig_hw(found.map_hw, scale, orig_hw)
    keep = np.flatnonzero((found.scores >= box_thresh) & (found.perimeters > 0))
    offsets = found.areas[keep] * unclip_ratio / found.perimeters[keep]
    grown = _grown_polygons if found.use_polygon else _grown_boxes
    kept, points, ends = grown(found, keep, offsets, min_size)
    mapped = to_original(points, POLYGON_SHIFT if found.use_polygon else BOX_SHIFT, scale, orig_hw)
    return [mapped[start:end] for start, end in zip([0, *ends], ends)], found.scores[kept].tolist()


@paused_gc()
def _grown_polygons(found: Candidates, keep: np.ndarray, offsets: np.ndarray, min_size: float) -> Grown:
    """Polygon mode: the unclipped outlines, in pixels."""
    clipper = new_clipper(POLYGON_SHIFT)
    min_side = min_size + 2
    sure_offset = min_side / 2 + OFFSET_SLACK_PX  # the outline then holds a disk of diameter >= min_side
    points, starts = found.outlines.tolist(), found.starts.tolist()
    kept, outlines = [], []
    for i, offset in zip(keep.tolist(), offsets.tolist()):
        clipper.Clear()
        clipper.AddPath(points[starts[i] : starts[i + 1]], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        grown = clipper.Execute(offset)  # plain lists (not grow()): faster here
        if len(grown) != 1:
            continue
        if offset >= sure_offset or min(cv2.minAreaRect(np.array(grown[0], np.int32))[1]) >= min_side:
            kept.append(i)
            outlines.append(grown[0])
    ends = np.cumsum([len(outline) for outline in outlines], dtype=np.int64).tolist()
    flat = chain.from_iterable(chain.from_iterable(outlines))
    return kept, np.fromiter(flat, np.int32, 2 * ends[-1] if ends else 0).reshape(-1, 2), ends


def _grown_boxes(found: Candidates, keep: np.ndarray, offsets: np.ndarray, min_size: float) -> Grown:
    """Box mode: ordered minAreaRect quads of the unclipped quads, float32 in fixed-point units."""
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
    corners = ordered_quads(box_points(rect_array([rects[k] for k in wide]))).reshape(-1, 2)
    return [int(keep[grown_at[k]]) for k in wide], corners, list(range(4, len(corners) + 1, 4))
