"""pyclipper's round-join offset (Clipper 6.4.2, JT_ROUND) of many convex integer quads at once, point for point.

The raw offset path is built with Clipper's double-precision steps; when it is strictly convex, Clipper's
union only drops repeated and collinear points and returns it ending at its top-most, then right-most,
corner. Quads that this cannot vouch for are flagged for pyclipper.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Clipper's own constants (clipper.cpp): pi and its default arc tolerance as a fraction of delta.
CLIPPER_PI = 3.141592653589793238
CLIPPER_TWO_PI = CLIPPER_PI * 2
DEF_ARC_TOLERANCE = 0.25
# Below this offset (integer units) a quad goes to pyclipper: Clipper's rounded sweep may merge thin sides.
MIN_DELTA = 16.0


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
    src = np.empty((4, 2), np.int64)
    for j in range(4):
        source = 3 - j if flip else j
        src[j, 0] = quad[source, 0]
        src[j, 1] = quad[source, 1]
    sin, cos, steps_per_rad, most = _most_steps(delta, arc_tolerance)
    normals = np.empty((4, 2), np.float64)
    for j in range(4):
        dx = np.float64(src[(j + 1) % 4, 0] - src[j, 0])
        dy = np.float64(src[(j + 1) % 4, 1] - src[j, 1])
        scale = 1 * 1.0 / math.sqrt(dx * dx + dy * dy)
        dx *= scale
        dy *= scale
        normals[j, 0] = dy
        normals[j, 1] = -dx
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
