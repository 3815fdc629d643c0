"""Reference DB post-processing: one candidate at a time with OpenCV and pyclipper, as the definition in
``ocr.postprocess.db_postprocess`` reads (the same polygons and scores as ``DBPostProcessor``)."""

from __future__ import annotations

from functools import partial
from typing import Callable

import cv2
import numpy as np
import pyclipper

from ocr.postprocess.db_postprocess import PostprocessParams
from ocr.postprocess.geometry import (
    APPROX_EPSILON, BOX_SHIFT, POLYGON_SHIFT, as_map, check_scale, default_orig_hw, grow, new_clipper,
    outer_contours, polygon_score, quad_to_fixed, sanitised, to_original,
)
from ocr.postprocess.stages import Result

Score = Callable[[np.ndarray, int], float]  # (int32 polygon, fractional bits) -> mean prob inside
Found = tuple[np.ndarray, float]  # (outline in integer units of POLYGON_SHIFT or BOX_SHIFT, score)


def short_side(rect: tuple) -> float:
    """Shorter side of a cv2.minAreaRect result."""
    return min(rect[1])


def unclip_offset(points: np.ndarray, ratio: float) -> float | None:
    """D = area * ratio / perimeter of the (N, 2) polygon in pixels (int32 or float32); None if no perimeter."""
    perimeter = cv2.arcLength(points, True)
    if not perimeter > 0:
        return None
    return abs(cv2.contourArea(points)) * ratio / perimeter


def ordered_corners(rect: tuple) -> list[list[float]]:
    """Corners of a cv2.minAreaRect result: top-left, top-right, bottom-right, bottom-left.

    The two leftmost corners form the left side (ties keep cv2.boxPoints order); on each side the
    corner with the smaller y is the top.
    """
    corners = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = corners[:2] if corners[0][1] <= corners[1][1] else corners[1::-1]
    right = corners[2:] if corners[2][1] <= corners[3][1] else corners[:1:-1]
    return [left[0], right[0], right[1], left[1]]


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
    """Sanitise the map, then one candidate at a time as the definition reads."""
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
