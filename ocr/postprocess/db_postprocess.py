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
``DBPostProcessor`` and ``postprocess_plain`` return identical polygons and scores.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import partial
from typing import Callable

import cv2
import numpy as np
import pyclipper

from ocr.postprocess.geometry import (
    ARC_TOLERANCE_PX, FIXED_SHIFT, check_scale, default_orig_hw, grow, new_clipper,
    ordered_corners, polygon_score, quad_to_fixed, short_side, to_original, unclip_offset,
)
from ocr.utils.errors import UserError

APPROX_EPSILON = 0.002  # approxPolyDP tolerance, as a fraction of the contour's arc length

Result = tuple[list[np.ndarray], list[float]]


@dataclass(frozen=True)
class PostprocessParams:
    """Post-processing settings (Hydra: ``models.head.postprocess.*``)."""

    thresh: float = 0.3
    box_thresh: float = 0.7
    max_candidates: int = 1000
    use_polygon: bool = True
    box_unclip_ratio: float = 1.5
    polygon_unclip_ratio: float = 2.0
    min_size: float = 3

    def __post_init__(self) -> None:
        _check_number("thresh", self.thresh, 0.0, 1.0, "in [0, 1); DBNet uses 0.3", high_open=True)
        _check_number("box_thresh", self.box_thresh, 0.0, 1.0, "in [0, 1]; DBNet uses 0.7")
        count = self.max_candidates
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
            raise UserError(f"{_KEY}.max_candidates={count!r} must be an integer >= 1; DBNet uses 1000")
        for name in ("box_unclip_ratio", "polygon_unclip_ratio", "min_size"):
            _check_number(name, getattr(self, name), 0.0, math.inf, "a finite number >= 0")


_KEY = "models.head.postprocess"


def _check_number(name: str, value: object, low: float, high: float, rule: str, high_open: bool = False) -> None:
    """Raise ``UserError`` unless ``value`` is a finite real in [low, high] (or [low, high))."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and low <= value and (value < high if high_open else value <= high)):
        raise UserError(f"{_KEY}.{name}={value!r} must be {rule}")


def _prepare(prob: np.ndarray, scale: float, orig_hw: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    prob = np.ascontiguousarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"prob must be a 2-D (h, w) map, got shape {prob.shape}")
    check_scale(scale)
    return prob, (default_orig_hw(prob.shape, scale) if orig_hw is None else (int(orig_hw[0]), int(orig_hw[1])))


def _sanitised(prob: np.ndarray) -> np.ndarray:
    """Copy of the map with NaN -> 0, +inf -> 1, -inf -> 0 (the bitmap is unchanged by this)."""
    return np.nan_to_num(prob, nan=0.0, posinf=1.0, neginf=0.0)


def _contours(prob: np.ndarray, thresh: float) -> list[np.ndarray]:
    bitmap = np.greater(prob, np.float32(thresh)).view(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return list(contours)


Score = Callable[[np.ndarray, int], float]  # (int32 polygon, fractional bits) -> mean prob inside
Found = tuple[np.ndarray, float]  # (outline in integer units of POLYGON_SHIFT or BOX_SHIFT, score)

# Polygon mode unclips on the pixel grid, as DBNet does: the approximated contour is integer already,
# and pyclipper runs about twice as fast there as at 1/256 px. Box mode keeps its float quads in fixed point.
POLYGON_SHIFT = 0
BOX_SHIFT = FIXED_SHIFT


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
    prob, orig_hw = _prepare(prob, scale, orig_hw)
    prob = _sanitised(prob)
    contours = _contours(prob, params.thresh)
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


# ----------------------------------------------------------------------------- fast path


class _LazyScore:
    """``polygon_score`` on the raw map; only a candidate that meets a non-finite value is rescored
    on a sanitised copy (made once), which gives the same number as scoring the sanitised map."""

    def __init__(self, prob: np.ndarray) -> None:
        self.prob = prob
        self.clean: np.ndarray | None = None

    def __call__(self, points: np.ndarray, shift: int) -> float:
        score = polygon_score(self.prob, points, shift)
        if math.isfinite(score):
            return score
        if self.clean is None:
            self.clean = _sanitised(self.prob)
        return polygon_score(self.clean, points, shift)


# A pyclipper JT_ROUND outline lies at most this far (px) inside the exact offset: a round join's chord
# spans at most 1.5 arc steps (2.25 x the arc tolerance of sagitta), plus rounding to the pixel grid.
OFFSET_SLACK_PX = 2.25 * ARC_TOLERANCE_PX + 0.75


def _fast_polygons(
    score_fn: Score, contours: list[np.ndarray], order: list[int], params: PostprocessParams
) -> list[Found]:
    """Polygon mode over the candidates, with two shortcuts that cannot change the outcome: contours
    of < 4 points are skipped before approxPolyDP (it never adds points), and the minAreaRect check
    is skipped when D alone guarantees it (the outline then contains a disk of radius D - slack)."""
    clipper = new_clipper(POLYGON_SHIFT)
    min_side = params.min_size + 2
    sure_offset = min_side / 2 + OFFSET_SLACK_PX
    found = []
    for i in order:
        contour = contours[i]
        if len(contour) < 4:
            continue
        points = cv2.approxPolyDP(contour, APPROX_EPSILON * cv2.arcLength(contour, True), True).reshape(-1, 2)
        if len(points) < 4:
            continue
        score = score_fn(points, 0)
        if not score >= params.box_thresh:
            continue
        offset = unclip_offset(points, params.polygon_unclip_ratio)
        if offset is None:
            continue
        grown = grow(clipper, points.tolist(), offset, POLYGON_SHIFT)
        if len(grown) != 1 or (offset < sure_offset and short_side(cv2.minAreaRect(grown[0])) < min_side):
            continue
        found.append((grown[0], score))
    return found


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
        params = self.params
        prob, orig_hw = _prepare(prob, scale, orig_hw)
        contours = _contours(prob, params.thresh)
        areas = np.fromiter((cv2.contourArea(c) for c in contours), dtype=np.float64, count=len(contours))
        order = np.argsort(-areas, kind="stable")[: params.max_candidates].tolist()
        score_fn = _LazyScore(prob)
        if params.use_polygon:
            kept, shift = _fast_polygons(score_fn, contours, order, params), POLYGON_SHIFT
        else:
            clipper, shift = new_clipper(BOX_SHIFT), BOX_SHIFT
            found = [_box_candidate(score_fn, clipper, contours[i], params) for i in order]
            kept = [f for f in found if f is not None]
        if not kept:
            return [], []
        counts = np.cumsum([len(points) for points, _ in kept[:-1]])
        mapped = to_original(np.concatenate([points for points, _ in kept]), shift, scale, orig_hw)
        return np.split(mapped, counts), [score for _, score in kept]
