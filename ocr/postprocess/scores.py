"""Scores of many candidate outlines on one map: the mean probability inside each, equal to
``geometry.polygon_score`` on the sanitised map, with one rasterisation for all outlines whose boxes
are apart.

``polygon_score`` ends in ``cv2.mean(roi, mask)``, which adds the masked float32 values to a double one
after the other in row-major order and multiplies by 1 / count. ``_masked_means`` computes that sum:
when every value is 0, 1 or a multiple of 2**-33 in between (all but denormal-small probabilities, and
every float16-rounded map), no partial sum of up to 2**20 pixels rounds, so four interleaved partial
sums give the same double; otherwise it adds sequentially as OpenCV does. numba, because the
sequential double sum is latency-bound and a per-candidate ``cv2.mean`` call costs as much as its work.
"""

from __future__ import annotations

import math

import cv2
import numba
import numpy as np

from ocr.postprocess.geometry import polygon_score
from ocr.postprocess.maps import sanitised
from ocr.postprocess.packed import overlapping

EXACT_UNIT = 2.0**33  # values that are multiples of 1 / EXACT_UNIT in [0, 1] add without rounding
EXACT_PIXELS = 1 << 20  # ... for this many pixels (partial sums stay below 2**53 units)


def region_scores(prob: np.ndarray, outlines: list[np.ndarray], boxes: np.ndarray, shift: int) -> np.ndarray:
    """(K,) float64 mean of ``prob`` inside each int32 outline (``shift`` fractional bits), equal to
    ``polygon_score`` on the sanitised map (NaN -> 0, +inf -> 1, -inf -> 0).

    ``boxes`` are the outlines' clipped pixel boxes (``packed.pixel_boxes``). Outlines whose boxes share no
    pixel are filled into one shared mask with one ``cv2.fillPoly`` call (each one's pixels lie inside its
    own box, so within that box the mask is its own); the others are scored one by one.
    """
    if not outlines:
        return np.zeros(0, np.float64)
    alone = overlapping(boxes)
    mask = np.zeros(prob.shape, np.uint8)
    shared = [outline for outline, single in zip(outlines, alone) if not single]
    if shared:
        cv2.fillPoly(mask, shared, 1, shift=shift)
    scores = _masked_means(prob, mask, boxes, alone)
    clean = None
    for i in np.flatnonzero(alone).tolist():
        score = polygon_score(prob, outlines[i], shift)
        if not math.isfinite(score):  # a non-finite value inside: score the sanitised map instead
            clean = sanitised(prob) if clean is None else clean
            score = polygon_score(clean, outlines[i], shift)
        scores[i] = score
    return scores


@numba.njit(cache=True)
def _masked_means(prob, mask, boxes, skip):
    """Per box (not ``skip``): the mean of the sanitised ``prob`` where ``mask`` is set, as cv2.mean."""
    means = np.zeros(len(boxes), np.float64)
    for i in range(len(boxes)):
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        if skip[i] or x0 > x1 or y0 > y1:
            continue
        parts = np.zeros(4, np.float64)
        count = 0
        exact = True
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                if mask[y, x]:
                    value = np.float64(prob[y, x])
                    scaled = value * EXACT_UNIT
                    exact &= 0.0 <= value <= 1.0 and scaled == math.floor(scaled)
                    parts[count & 3] += value
                    count += 1
        if count == 0:
            continue
        if exact and count <= EXACT_PIXELS:
            total = (parts[0] + parts[1]) + (parts[2] + parts[3])
        else:
            total = _sequential_sum(prob, mask, x0, y0, x1, y1)
        means[i] = total * (1.0 / count)
    return means


@numba.njit(cache=True)
def _sequential_sum(prob, mask, x0, y0, x1, y1):
    """Row-major double sum of the sanitised values where ``mask`` is set."""
    total = 0.0
    for y in range(y0, y1 + 1):
        for x in range(x0, x1 + 1):
            if mask[y, x]:
                value = np.float64(prob[y, x])
                if math.isnan(value):
                    value = 0.0
                elif math.isinf(value):
                    value = 1.0 if value > 0 else 0.0
                total += value
    return total
