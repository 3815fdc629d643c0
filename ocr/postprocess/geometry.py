"""Map and geometry steps of DB post-processing: input checks, contours, polygon score, unclip, output mapping.
Integer coordinates carry ``shift`` fractional bits: box-mode quads ``FIXED_SHIFT``, polygon-mode contours 0."""

from __future__ import annotations

import math
from itertools import chain

import cv2
import numpy as np
import pyclipper

FIXED_SHIFT = 8
FIXED_ONE = 1 << FIXED_SHIFT
POLYGON_SHIFT = 0
BOX_SHIFT = FIXED_SHIFT
ARC_TOLERANCE_PX = 0.25  # pyclipper's JT_ROUND arc tolerance (its default 0.25 units, at pixel scale)
APPROX_EPSILON = 0.002  # approxPolyDP tolerance, as a fraction of the contour's arc length


def polygon_score(prob: np.ndarray, points: np.ndarray, shift: int) -> float:
    """Mean of ``prob`` over the pixels inside the int32 polygon ``points``; 0.0 if no pixel is inside."""
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


def grow(clipper: pyclipper.PyclipperOffset, path: list[list[int]], offset: float, shift: int) -> list[np.ndarray]:
    """Integer polygon ``path`` grown by ``offset`` px with pyclipper JT_ROUND: int32 outlines (maybe none)."""
    clipper.Clear()
    clipper.AddPath(path, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return [
        np.fromiter(chain.from_iterable(outline), dtype=np.int32, count=2 * len(outline)).reshape(-1, 2)
        for outline in clipper.Execute(offset * (1 << shift))
    ]


def to_original(points: np.ndarray, shift: int, scale: float, orig_hw: tuple[int, int]) -> np.ndarray:
    """(N, 2) network-input points -> float32 original-image pixels, clipped to [0, W] x [0, H]."""
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


def as_map(prob: np.ndarray) -> np.ndarray:
    """``prob`` as a C-contiguous float32 (h, w) array; ``ValueError`` if it is not 2-D."""
    prob = np.ascontiguousarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"prob must be a 2-D (h, w) map, got shape {prob.shape}")
    return prob


def sanitised(prob: np.ndarray) -> np.ndarray:
    """Copy of the map with NaN -> 0, +inf -> 1, -inf -> 0 (the thresholded bitmap is unchanged by this)."""
    return np.nan_to_num(prob, nan=0.0, posinf=1.0, neginf=0.0)


def outer_contours(prob: np.ndarray, thresh: float) -> list[np.ndarray]:
    """Outer contours (RETR_EXTERNAL, CHAIN_APPROX_SIMPLE) of ``prob > thresh`` (NaN counts as 0)."""
    bitmap = np.greater(prob, np.float32(thresh)).view(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return list(contours)
