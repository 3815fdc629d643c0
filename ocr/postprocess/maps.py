"""Probability-map steps shared by the plain and fast post-processing paths: input checks, sanitising,
outer contours of the thresholded map."""

from __future__ import annotations

import cv2
import numpy as np


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
