"""Geometry helpers for DB post-processing: polygon score, unclip, minimum-area box, output mapping.

Integer coordinates carry a number of fractional bits (``shift``): float quads go to pyclipper and
cv2.fillPoly in fixed point (``FIXED_SHIFT``) rather than truncated to whole pixels, while integer
contour polygons stay on the pixel grid (shift 0).
"""

from __future__ import annotations

import math
from itertools import chain

import cv2
import numpy as np
import pyclipper

FIXED_SHIFT = 8
FIXED_ONE = 1 << FIXED_SHIFT
# pyclipper's arc tolerance for JT_ROUND, in pixels (its default 0.25 units, at pixel scale).
ARC_TOLERANCE_PX = 0.25
APPROX_EPSILON = 0.002  # approxPolyDP tolerance, as a fraction of the contour's arc length
# Polygon mode unclips on the pixel grid, as DBNet does: the approximated contour is integer already,
# and pyclipper runs about twice as fast there as at 1/256 px. Box mode keeps its float quads in fixed point.
POLYGON_SHIFT = 0
BOX_SHIFT = FIXED_SHIFT


def polygon_score(prob: np.ndarray, points: np.ndarray, shift: int) -> float:
    """Mean of ``prob`` over the pixels inside the int32 polygon ``points`` (``shift`` fractional bits).

    The polygon is rasterised into a mask over its bounding box (clipped to the map); 0.0 if no pixel
    is inside. A non-finite map value inside the polygon gives a non-finite score.
    """
    height, width = prob.shape
    left, top, w, h = cv2.boundingRect(points)
    x0, y0 = max(left >> shift, 0), max(top >> shift, 0)
    x1 = min(-(-(left + w - 1) >> shift), width - 1)  # ceil of the largest coordinate
    y1 = min(-(-(top + h - 1) >> shift), height - 1)
    if x0 > x1 or y0 > y1:
        return 0.0
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    cv2.fillPoly(mask, [points], 1, shift=shift, offset=(-(x0 << shift), -(y0 << shift)))
    return cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0]


def quad_to_fixed(quad: np.ndarray) -> np.ndarray:
    """(4, 2) float corners -> int32 fixed point with ``FIXED_SHIFT`` fractional bits."""
    return np.rint(quad * np.float32(FIXED_ONE)).astype(np.int32)


def new_clipper(shift: int) -> pyclipper.PyclipperOffset:
    """A pyclipper offsetter for coordinates with ``shift`` fractional bits (``ARC_TOLERANCE_PX``)."""
    return pyclipper.PyclipperOffset(arc_tolerance=ARC_TOLERANCE_PX * (1 << shift))


def unclip_offset(points: np.ndarray, ratio: float) -> float | None:
    """D = area * ratio / perimeter of the (N, 2) polygon in pixels (int32 or float32); None if no perimeter."""
    perimeter = cv2.arcLength(points, True)
    if not perimeter > 0:
        return None
    return abs(cv2.contourArea(points)) * ratio / perimeter


def grow(clipper: pyclipper.PyclipperOffset, path: list[list[int]], offset: float, shift: int) -> list[np.ndarray]:
    """Integer polygon ``path`` (``shift`` fractional bits) grown by ``offset`` px with pyclipper JT_ROUND.

    Returns int32 outlines in the same units (empty if nothing is left).
    """
    clipper.Clear()
    clipper.AddPath(path, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return [
        np.fromiter(chain.from_iterable(outline), dtype=np.int32, count=2 * len(outline)).reshape(-1, 2)
        for outline in clipper.Execute(offset * (1 << shift))
    ]


def short_side(rect: tuple) -> float:
    """Shorter side of a cv2.minAreaRect result."""
    return min(rect[1])


def ordered_corners(rect: tuple) -> list[list[float]]:
    """Corners of a cv2.minAreaRect result: top-left, top-right, bottom-right, bottom-left.

    The two leftmost corners form the left side (ties keep cv2.boxPoints order); on each side the
    corner with the smaller y is the top.
    """
    corners = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = corners[:2] if corners[0][1] <= corners[1][1] else corners[1::-1]
    right = corners[2:] if corners[2][1] <= corners[3][1] else corners[:1:-1]
    return [left[0], right[0], right[1], left[1]]


def to_original(points: np.ndarray, shift: int, scale: float, orig_hw: tuple[int, int]) -> np.ndarray:
    """(N, 2) points in network-input pixels with ``shift`` fractional bits -> float32 original-image
    pixels, clipped to [0, W] x [0, H]."""
    out = points.astype(np.float32)
    out /= np.float32(1 << shift)
    out /= np.float32(scale)
    np.clip(out[:, 0], 0, orig_hw[1], out=out[:, 0])
    np.clip(out[:, 1], 0, orig_hw[0], out=out[:, 1])
    return out


def default_orig_hw(shape: tuple[int, int], scale: float, orig_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """``orig_hw`` as ints, or else the original image size implied by a cropped map of ``shape`` at ``scale``."""
    if orig_hw is not None:
        return int(orig_hw[0]), int(orig_hw[1])
    return round(shape[0] / scale), round(shape[1] / scale)


def check_scale(scale: float) -> None:
    """Raise ``ValueError`` unless ``scale`` is a finite positive number."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite positive number, got {scale}")
