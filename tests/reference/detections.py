"""Synthetic detections made from ground-truth quads, for metric agreement checks and benchmarks.

Every path of CLEval's matching gets exercised: jittered boxes (one-to-one), words split in two
(one-to-many), neighbours merged into one box (many-to-one), dropped words, boxes shrunk or shifted
across the pseudo-character centre line, and false positives (small, or large over several lines).
All output vertices are integers (the PyPI reference truncates coordinates), quads clockwise from
the top-left corner.
"""

from __future__ import annotations

import numpy as np


def _jitter(quad: np.ndarray, rng: np.random.Generator, pixels: int) -> np.ndarray:
    """The quad with each vertex moved by up to `pixels` in x and y."""
    return quad + rng.integers(-pixels, pixels + 1, size=quad.shape)


def _split(quad: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """The quad cut in two along its reading direction, at a random fraction."""
    tl, tr, br, bl = quad
    f = rng.uniform(0.25, 0.75)
    top, bottom = np.rint(tl + f * (tr - tl)), np.rint(bl + f * (br - bl))
    return [np.stack([tl, top, bottom, bl]), np.stack([top, tr, br, bottom])]


def _box(points: np.ndarray) -> np.ndarray:
    """Axis-aligned quad around points, clockwise from top-left."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _partial(quad: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A box covering part of the word: left fraction, or lower half with its top on the centre line."""
    tl, tr, br, bl = quad
    if rng.random() < 0.5:
        f = rng.uniform(0.2, 0.6)
        return np.rint(np.stack([tl, tl + f * (tr - tl), bl + f * (br - bl), bl]))
    box = _box(quad)
    box[:2, 1] = np.floor((quad[0, 1] + quad[3, 1]) / 2)  # top edge on (or just above) the PCC line
    box[2:, 1] += rng.integers(0, 4)
    return box


def perturb_detections(gt_quads: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Detections derived from (M, 4, 2) integer ground-truth quads (see module doc)."""
    dets: list[np.ndarray] = []
    m = len(gt_quads)
    i = 0
    while i < m:
        quad = np.asarray(gt_quads[i], dtype=np.float64)
        action = rng.random()
        if action < 0.50:
            dets.append(_jitter(quad, rng, 3))
        elif action < 0.62:
            dets.extend(_jitter(q, rng, 2) for q in _split(quad, rng))
        elif action < 0.74 and i + 1 < m:
            dets.append(_jitter(_box(np.vstack([quad, gt_quads[i + 1]])), rng, 2))
            i += 1
        elif action < 0.82:
            pass  # dropped
        elif action < 0.92:
            dets.append(_partial(quad, rng))
        else:
            dets.append(quad.copy())
        i += 1
    lo, hi = gt_quads.reshape(-1, 2).min(axis=0), gt_quads.reshape(-1, 2).max(axis=0)
    for _ in range(max(1, m // 15)):
        size = rng.integers(8, 60, size=2)
        corner = rng.integers(lo, np.maximum(hi - size, lo + 1))
        dets.append(_box(np.stack([corner, corner + size])))
    if m >= 3:
        first = int(rng.integers(0, m - 2))
        margin = np.array([[-20, -5], [20, -5], [20, 5], [-20, 5]])
        dets.append(_box(gt_quads[first : first + 3].reshape(-1, 2)) + margin)  # over three lines
    return [d.astype(np.float32) for d in dets]
