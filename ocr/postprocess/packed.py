"""OpenCV's per-outline results (area, perimeter, pixel box, box corners and their order, masked mean) for many
outlines at once, with the same values (same float32 / double arithmetic and order of summation), and pyclipper's
JT_ROUND offset (Clipper 6.4.2) of many convex integer quads, point for point (the quads it cannot vouch for are
left to pyclipper). Outlines are packed: (P, 2) points and (K + 1,) start offsets, outline ``i`` being
``points[starts[i]:starts[i + 1]]``.
"""

from __future__ import annotations

import math
from functools import cache

import cv2
import numba
import numpy as np

from ocr.postprocess.geometry import polygon_score, sanitised

EXACT_UNIT = 2.0**33  # values that are multiples of 1 / EXACT_UNIT in [0, 1] add without rounding
EXACT_PIXELS = 1 << 20  # ... for this many pixels (partial sums stay below 2**53 units)
# Clipper's own constants (clipper.cpp): pi and its default arc tolerance as a fraction of delta.
CLIPPER_PI = 3.141592653589793238
CLIPPER_TWO_PI = CLIPPER_PI * 2
DEF_ARC_TOLERANCE = 0.25
# Below this offset (integer units) a quad goes to pyclipper: Clipper's rounded sweep may merge thin sides.
MIN_DELTA = 16.0


@numba.njit(cache=True)
def outline_measures(points: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|cv2.contourArea|, cv2.arcLength(closed=True)) of each outline of float32 ``points``."""
    count = len(starts) - 1
    areas = np.zeros(count, np.float64)
    perimeters = np.zeros(count, np.float64)
    for i in range(count):
        first, end = starts[i], starts[i + 1]
        if end == first:
            continue
        area = length = 0.0
        prev_x, prev_y = points[end - 1, 0], points[end - 1, 1]
        for j in range(first, end):
            x, y = points[j, 0], points[j, 1]
            area += np.float64(prev_x) * y - np.float64(prev_y) * x
            dx, dy = x - prev_x, y - prev_y  # float32, as in cv::arcLength
            length += np.sqrt(dx * dx + dy * dy)
            prev_x, prev_y = x, y
        areas[i] = abs(area * 0.5)
        perimeters[i] = length
    return areas, perimeters


def rect_array(rects: list[tuple]) -> np.ndarray:
    """(K, 5) float32 ``cx, cy, w, h, angle`` of cv2.minAreaRect results (exactly their float32 values)."""
    return np.array([(c[0], c[1], s[0], s[1], a) for c, s, a in rects], np.float32).reshape(-1, 5)


def box_points(rects: np.ndarray) -> np.ndarray:
    """(K, 4, 2) float32 ``cv2.boxPoints`` of each (cx, cy, w, h, angle) row."""
    return _box_corners(rects) if _opencv_uses_box_corners() else _box_points_opencv(rects)


def _box_points_opencv(rects: np.ndarray) -> np.ndarray:
    """(K, 4, 2) float32 ``cv2.boxPoints`` of each (cx, cy, w, h, angle) row, one OpenCV call per rect."""
    corners = [cv2.boxPoints(((r[0], r[1]), (r[2], r[3]), r[4])) for r in rects.tolist()]
    return np.array(corners, np.float32).reshape(-1, 4, 2)


@cache
def _opencv_uses_box_corners() -> bool:
    """Whether cv2.boxPoints equals ``_box_corners`` (OpenCV 5's formula) on probe rects."""
    rng = np.random.default_rng(0)
    probe = (rng.random((256, 5)) * [1000, 1000, 300, 40, 180] - [0, 0, 0, 0, 90]).astype(np.float32)
    return bool(np.array_equal(_box_corners(probe), _box_points_opencv(probe)))


@numba.njit(cache=True)
def _box_corners(rects):
    """OpenCV 5's RotatedRect::points in float32."""
    out = np.empty((len(rects), 4, 2), np.float32)
    half = np.float32(0.5)
    for k in range(len(rects)):
        cx, cy, w, h = rects[k, 0], rects[k, 1], rects[k, 2], rects[k, 3]
        radians = np.float64(rects[k, 4]) * math.pi / 180.0
        b = np.float32(math.cos(radians)) * half
        a = np.float32(math.sin(radians)) * half
        out[k, 0, 0], out[k, 0, 1] = cx - a * h - b * w, cy + b * h - a * w
        out[k, 1, 0], out[k, 1, 1] = cx + a * h - b * w, cy - b * h - a * w
        out[k, 2, 0], out[k, 2, 1] = cx + a * h + b * w, cy - b * h + a * w
        out[k, 3, 0], out[k, 3, 1] = cx - a * h + b * w, cy + b * h + a * w
    return out


@numba.njit(cache=True)
def ordered_quads(corners: np.ndarray) -> np.ndarray:
    """(K, 4, 2) float32 cv2.boxPoints corners -> top-left, top-right, bottom-right, bottom-left: the two
    leftmost form the left side (ties keeping the given order), on each side the smaller y is the top."""
    out = np.empty_like(corners)
    index = np.empty(4, np.int64)
    for k in range(len(corners)):
        for i in range(4):  # stable insertion sort on x
            index[i] = i
            j = i
            while j > 0 and corners[k, index[j - 1], 0] > corners[k, i, 0]:
                index[j] = index[j - 1]
                j -= 1
            index[j] = i
        top_left, bottom_left = index[0], index[1]
        if corners[k, top_left, 1] > corners[k, bottom_left, 1]:
            top_left, bottom_left = bottom_left, top_left
        top_right, bottom_right = index[2], index[3]
        if corners[k, top_right, 1] > corners[k, bottom_right, 1]:
            top_right, bottom_right = bottom_right, top_right
        for corner, source in enumerate((top_left, top_right, bottom_right, bottom_left)):
            out[k, corner, 0] = corners[k, source, 0]
            out[k, corner, 1] = corners[k, source, 1]
    return out


@numba.njit(cache=True)
def pixel_boxes(points: np.ndarray, starts: np.ndarray, shift: int, height: int, width: int) -> np.ndarray:
    """(K, 4) int64 ``x0, y0, x1, y1``: the inclusive pixel box of each integer outline with ``shift``
    fractional bits, clipped to the map (``polygon_score``'s box); empty (x0 > x1) if outside or no points."""
    count = len(starts) - 1
    boxes = np.empty((count, 4), np.int64)
    for i in range(count):
        first, end = starts[i], starts[i + 1]
        if end == first:
            boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3] = 0, 0, -1, -1
            continue
        left, top = np.int64(points[first, 0]), np.int64(points[first, 1])
        right, bottom = left, top
        for j in range(first + 1, end):
            left, right = min(left, np.int64(points[j, 0])), max(right, np.int64(points[j, 0]))
            top, bottom = min(top, np.int64(points[j, 1])), max(bottom, np.int64(points[j, 1]))
        boxes[i, 0] = max(left >> shift, 0)
        boxes[i, 1] = max(top >> shift, 0)
        boxes[i, 2] = min(-((-right) >> shift), width - 1)
        boxes[i, 3] = min(-((-bottom) >> shift), height - 1)
    return boxes


@numba.njit(cache=True)
def overlapping(boxes: np.ndarray) -> np.ndarray:
    """(K,) bool: whether each non-empty inclusive box shares a pixel with another non-empty box."""
    count = len(boxes)
    out = np.zeros(count, np.bool_)
    for i in range(count):
        if boxes[i, 0] > boxes[i, 2] or boxes[i, 1] > boxes[i, 3]:
            continue
        for j in range(i + 1, count):
            if boxes[j, 0] > boxes[j, 2] or boxes[j, 1] > boxes[j, 3]:
                continue
            if (boxes[i, 0] <= boxes[j, 2] and boxes[j, 0] <= boxes[i, 2]
                    and boxes[i, 1] <= boxes[j, 3] and boxes[j, 1] <= boxes[i, 3]):
                out[i] = True
                out[j] = True
    return out


def region_scores(prob: np.ndarray, outlines: list[np.ndarray], boxes: np.ndarray, shift: int) -> np.ndarray:
    """(K,) float64 ``polygon_score`` on the sanitised map of each int32 outline; ``boxes``: their ``pixel_boxes``.
    Outlines whose boxes overlap no other box are drawn on one mask and averaged together."""
    if not outlines:
        return np.zeros(0, np.float64)
    crowded = overlapping(boxes)
    mask = np.zeros(prob.shape, np.uint8)
    apart = [outline for outline, near in zip(outlines, crowded) if not near]
    if apart:
        cv2.fillPoly(mask, apart, 1, shift=shift)
    scores = _masked_means(prob, mask, boxes, crowded)
    clean = None
    for i in np.flatnonzero(crowded).tolist():
        score = polygon_score(prob, outlines[i], shift)
        if not math.isfinite(score):  # a non-finite value inside: score the sanitised map instead
            clean = sanitised(prob) if clean is None else clean
            score = polygon_score(clean, outlines[i], shift)
        scores[i] = score
    return scores


@numba.njit(cache=True)
def _masked_means(prob, mask, boxes, skip):
    """Per box (not ``skip``): the mean of the sanitised ``prob`` where ``mask`` is set, as cv2.mean (row by row in
    double): four interleaved partial sums give the same double when every value is a multiple of 2**-33 in [0, 1]
    (float16 maps included), else the sum is sequential."""
    means = np.zeros(len(boxes), np.float64)
    for i in range(len(boxes)):
        x0, y0, x1, y1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        if skip[i] or x0 > x1 or y0 > y1:
            continue
        parts = np.zeros(4, np.float64)
        count, exact = 0, True
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


def offset_convex_quads(
    quads: np.ndarray, deltas: np.ndarray, arc_tolerance: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pyclipper.PyclipperOffset(arc_tolerance)``'s JT_ROUND ``Execute(delta)`` of (K, 4, 2) integer quads
    by (K,) ``deltas``: ``(points, starts, done)``, quad ``i``'s outline being int32 ``points[starts[i]:starts[i + 1]]``
    where ``done[i]``; the others (empty slices) must be offset by pyclipper."""
    quads = np.ascontiguousarray(quads, dtype=np.int64).reshape(-1, 4, 2)
    deltas = np.ascontiguousarray(deltas, dtype=np.float64).reshape(-1)
    return _offset_quads(quads, deltas, float(arc_tolerance))


@numba.njit(cache=True)
def _clipper_round(value: float) -> int:
    """Clipper's Round(): half away from zero, then truncation."""
    return np.int64(value - 0.5) if value < 0 else np.int64(value + 0.5)


@numba.njit(cache=True)
def _most_steps(delta: float, arc_tolerance: float) -> tuple[float, float, float, int]:
    """(sin, cos) of one arc step, steps per radian, and a bound on the points around one vertex."""
    size = abs(delta)
    tolerance = size * DEF_ARC_TOLERANCE if arc_tolerance > size * DEF_ARC_TOLERANCE else arc_tolerance
    steps = CLIPPER_PI / math.acos(1 - tolerance / size)
    if steps > size * CLIPPER_PI:
        steps = size * CLIPPER_PI
    angle = CLIPPER_TWO_PI / steps
    return math.sin(angle), math.cos(angle), steps / CLIPPER_TWO_PI, int(steps / 2) + 3


@numba.njit(cache=True)
def _offset_quads(quads, deltas, arc_tolerance):
    count = len(quads)
    done = np.zeros(count, np.bool_)
    bound = 0
    for i in range(count):
        delta = deltas[i]
        if delta >= MIN_DELTA:  # false for NaN
            bound += 4 * _most_steps(delta, arc_tolerance)[3]
    out = np.empty((bound, 2), np.int32)
    starts = np.zeros(count + 1, np.int64)
    for i in range(count):
        size = _offset_quad(quads[i], deltas[i], arc_tolerance, out, starts[i])
        done[i] = size > 0
        starts[i + 1] = starts[i] + size
    return out[: starts[count]].copy(), starts, done


@numba.njit(cache=True)
def _offset_quad(quad, delta, arc_tolerance, out, at):
    """Writes the outline of one quad to ``out[at:]``; returns its length, or 0 if pyclipper must do it."""
    if not delta >= MIN_DELTA:
        return 0
    for j in range(4):
        if quad[j, 0] == quad[(j + 1) % 4, 0] and quad[j, 1] == quad[(j + 1) % 4, 1]:
            return 0
    twice_neg_area = 0.0  # Clipper's Area() is -this / 2; Orientation() is Area() >= 0
    for j in range(4):
        before = (j + 3) % 4
        twice_neg_area += (np.float64(quad[before, 0]) + quad[j, 0]) * (np.float64(quad[before, 1]) - quad[j, 1])
    flip = -twice_neg_area * 0.5 < 0  # FixOrientations then reverses the path
    src = quad[::-1].copy() if flip else quad.copy()
    sin, cos, steps_per_rad, most = _most_steps(delta, arc_tolerance)
    normals = np.empty((4, 2), np.float64)
    for j in range(4):
        dx = np.float64(src[(j + 1) % 4, 0] - src[j, 0])
        dy = np.float64(src[(j + 1) % 4, 1] - src[j, 1])
        scale = 1.0 / math.sqrt(dx * dx + dy * dy)
        normals[j, 0], normals[j, 1] = dy * scale, -dx * scale
    raw = np.empty((4 * most, 2), np.int64)
    size = 0
    k = 3
    for j in range(4):
        sin_a = normals[k, 0] * normals[j, 1] - normals[j, 0] * normals[k, 1]
        if abs(sin_a * delta) < 1.0:
            return 0  # Clipper would place one point and keep the old normal: not a proper corner
        sin_a = min(max(sin_a, -1.0), 1.0)
        if sin_a * delta < 0:
            return 0  # a notch: not convex
        angle = math.atan2(sin_a, normals[k, 0] * normals[j, 0] + normals[k, 1] * normals[j, 1])
        steps = max(_clipper_round(steps_per_rad * abs(angle)), 1)
        x, y = normals[k, 0], normals[k, 1]
        for _ in range(steps):
            raw[size, 0] = _clipper_round(np.float64(src[j, 0]) + x * delta)
            raw[size, 1] = _clipper_round(np.float64(src[j, 1]) + y * delta)
            size += 1
            x, y = x * cos - sin * y, x * sin + y * cos
        raw[size, 0] = _clipper_round(np.float64(src[j, 0]) + normals[j, 0] * delta)
        raw[size, 1] = _clipper_round(np.float64(src[j, 1]) + normals[j, 1] * delta)
        size += 1
        k = j
    return _write_convex_union(raw, size, out, at)


@numba.njit(cache=True)
def _write_convex_union(raw, size, out, at):
    """The union of the strictly convex ring ``raw[:size]`` as Clipper returns it (corners only, ending at
    the top-most, then right-most, corner), written to ``out[at:]``; its length, or 0 if the ring is not."""
    ring = np.empty((size, 2), np.int64)
    count = 0
    for i in range(size):
        if count == 0 or raw[i, 0] != ring[count - 1, 0] or raw[i, 1] != ring[count - 1, 1]:
            ring[count, 0] = raw[i, 0]
            ring[count, 1] = raw[i, 1]
            count += 1
    while count > 1 and ring[0, 0] == ring[count - 1, 0] and ring[0, 1] == ring[count - 1, 1]:
        count -= 1
    corners = np.empty((count, 2), np.int64)
    kept = 0
    for i in range(count):
        before, after = (i + count - 1) % count, (i + 1) % count
        in_x, in_y = ring[i, 0] - ring[before, 0], ring[i, 1] - ring[before, 1]
        out_x, out_y = ring[after, 0] - ring[i, 0], ring[after, 1] - ring[i, 1]
        cross = in_x * out_y - in_y * out_x
        if cross < 0 or (cross == 0 and in_x * out_x + in_y * out_y < 0):
            return 0
        if cross > 0:
            corners[kept, 0] = ring[i, 0]
            corners[kept, 1] = ring[i, 1]
            kept += 1
    if kept < 3 or _half_plane_changes(corners, kept) != 2:
        return 0
    top_right = 0
    for i in range(kept):
        if corners[i, 1] < corners[top_right, 1] or (
            corners[i, 1] == corners[top_right, 1] and corners[i, 0] > corners[top_right, 0]
        ):
            top_right = i
    for i in range(kept):
        source = (top_right + 1 + i) % kept
        out[at + i, 0] = corners[source, 0]
        out[at + i, 1] = corners[source, 1]
    return kept


@numba.njit(cache=True)
def _half_plane_changes(corners, count):
    """How often consecutive edge directions of the ring ``corners[:count]`` switch between the upper
    half-plane (angle in [0, pi)) and the lower one: 2 for a ring of left turns that goes round once."""
    changes = 0
    previous = False
    for i in range(count + 1):
        dx = corners[(i + 1) % count, 0] - corners[i % count, 0]
        dy = corners[(i + 1) % count, 1] - corners[i % count, 1]
        upper = dy > 0 or (dy == 0 and dx > 0)
        if i > 0 and upper != previous:
            changes += 1
        previous = upper
    return changes
