"""DBNet post-processing: probability map -> text polygons (or boxes) with scores.

Semantics (DBNet, Liao et al. 2020), on a float32 (h, w) map cropped to the unpadded region:

1. bitmap = prob > thresh (NaN counts as 0); outer contours (cv2.findContours, RETR_EXTERNAL,
   CHAIN_APPROX_SIMPLE; the reference DBNet uses RETR_LIST, whose hole contours turn a dip inside a
   text region into a second, overlapping detection), sorted by contour area, largest first (ties
   keep OpenCV's order); the first ``max_candidates`` are kept.
2. Polygon mode (``use_polygon``): approxPolyDP with epsilon 0.002 * arc length; skip if < 4 points;
   score = mean prob inside the polygon; drop if score < ``box_thresh``; unclip (pyclipper JT_ROUND,
   on the pixel grid as in DBNet) by D = area * ``polygon_unclip_ratio`` / perimeter; drop unless that
   gives exactly one polygon whose minAreaRect has a shorter side >= ``min_size`` + 2.
3. Box mode: minAreaRect quad of the contour; drop if its shorter side < ``min_size``; score = mean
   prob inside the quad; drop if < ``box_thresh``; unclip by ``box_unclip_ratio`` (at 1/256 px, the
   quad being float); minAreaRect quad again (ordered top-left, top-right, bottom-right, bottom-left);
   drop if its shorter side < ``min_size`` + 2.

``box_unclip_ratio`` acts only in box mode and ``polygon_unclip_ratio`` only in polygon mode.
Output polygons are float32 (K, 2) in original-image coordinates (divided by ``scale``, clipped to
[0, W] x [0, H] of ``orig_hw``, by default (round(h / scale), round(w / scale))), with their scores.
``DBPostProcessor`` and ``postprocess_plain`` return identical polygons and scores; the former runs
the two stages of ``ocr.postprocess.stages`` (``candidates`` then ``expand``), which a parameter search
can call separately.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import cv2
import numpy as np
import pyclipper

from ocr.postprocess.geometry import (
    APPROX_EPSILON, BOX_SHIFT, POLYGON_SHIFT, check_scale, default_orig_hw, grow, new_clipper, ordered_corners,
    polygon_score, quad_to_fixed, short_side, to_original, unclip_offset,
)
from ocr.postprocess.maps import as_map, outer_contours, sanitised
from ocr.postprocess.params import PostprocessParams
from ocr.postprocess.stages import Result, candidates, expand

__all__ = ["DBPostProcessor", "PostprocessParams", "Result", "postprocess_plain"]

Score = Callable[[np.ndarray, int], float]  # (int32 polygon, fractional bits) -> mean prob inside
Found = tuple[np.ndarray, float]  # (outline in integer units of POLYGON_SHIFT or BOX_SHIFT, score)


def _polygon_candidate(
    score_fn: Score, clipper: pyclipper.PyclipperOffset, contour: np.ndarray, params: PostprocessParams
) -> Found | None:
    """Polygon mode for one contour: (unclipped outline in pixels, score) or None if dropped."""
    epsilon = APPROX_EPSILON * cv2.arcLength(contour, True)
    points = cv2.approxPolyDP(contour, epsilon, True).reshape(-1, 2)
    if len(points) < 4:
        return None
    score = score_fn(points, 0)
    if not score >= params.box_thresh:
        return None
    offset = unclip_offset(points, params.polygon_unclip_ratio)
    if offset is None:
        return None
    grown = grow(clipper, points.tolist(), offset, POLYGON_SHIFT)
    if len(grown) != 1 or short_side(cv2.minAreaRect(grown[0])) < params.min_size + 2:
        return None
    return grown[0], score


def _box_candidate(
    score_fn: Score, clipper: pyclipper.PyclipperOffset, contour: np.ndarray, params: PostprocessParams
) -> Found | None:
    """Box mode for one contour: (ordered quad in fixed-point units, score) or None if dropped."""
    rect = cv2.minAreaRect(contour)
    if short_side(rect) < params.min_size:
        return None
    quad = np.array(ordered_corners(rect), dtype=np.float32)
    fixed = quad_to_fixed(quad)
    score = score_fn(fixed, BOX_SHIFT)
    if not score >= params.box_thresh:
        return None
    offset = unclip_offset(quad, params.box_unclip_ratio)
    grown = [] if offset is None else grow(clipper, fixed.tolist(), offset, BOX_SHIFT)
    if not grown:
        return None
    rect = cv2.minAreaRect(np.concatenate(grown))
    if short_side(rect) < (params.min_size + 2) * (1 << BOX_SHIFT):
        return None
    return np.array(ordered_corners(rect), dtype=np.float32), score


def postprocess_plain(
    prob: np.ndarray, scale: float, params: PostprocessParams, orig_hw: tuple[int, int] | None = None
) -> Result:
    """Reference implementation: sanitise the map, then one candidate at a time as defined above."""
    prob = as_map(prob)
    check_scale(scale)
    orig_hw = default_orig_hw(prob.shape, scale, orig_hw)
    prob = sanitised(prob)
    contours = outer_contours(prob, params.thresh)
    areas = [cv2.contourArea(c) for c in contours]
    order = sorted(range(len(contours)), key=lambda i: -areas[i])[: params.max_candidates]
    candidate, shift = (_polygon_candidate, POLYGON_SHIFT) if params.use_polygon else (_box_candidate, BOX_SHIFT)
    score_fn, clipper = partial(polygon_score, prob), new_clipper(shift)
    polygons, scores = [], []
    for i in order:
        found = candidate(score_fn, clipper, contours[i], params)
        if found is not None:
            polygons.append(to_original(found[0], shift, scale, orig_hw))
            scores.append(found[1])
    return polygons, scores


class DBPostProcessor:
    """Probability map -> (polygons, scores); see the module docstring for the exact semantics.

    Keyword names match the Hydra config ``models.head.postprocess.*``. ``box_unclip_ratio`` acts only
    when ``use_polygon`` is false and ``polygon_unclip_ratio`` only when it is true.
    """

    def __init__(
        self, thresh: float = 0.3, box_thresh: float = 0.7, max_candidates: int = 1000,
        use_polygon: bool = True, box_unclip_ratio: float = 1.5, polygon_unclip_ratio: float = 2.0,
        min_size: float = 3,
    ) -> None:
        self.params = PostprocessParams(
            thresh, box_thresh, max_candidates, use_polygon, box_unclip_ratio, polygon_unclip_ratio, min_size
        )

    def __call__(self, prob: np.ndarray, scale: float = 1.0, orig_hw: tuple[int, int] | None = None) -> Result:
        """Polygons (float32 (K, 2), original-image pixels) and scores for a map cropped to the image.

        ``orig_hw`` is the original (height, width) to clip to; by default (round(h / scale), round(w / scale)).
        """
        p = self.params
        check_scale(scale)
        found = candidates(prob, p.thresh, p.max_candidates, p.use_polygon, p.min_size)
        return expand(found, p.box_thresh, p.unclip_ratio, p.min_size, scale, orig_hw)
