"""Overlays of predicted (red) and true (green) polygons on an image."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def denormalize(chw: np.ndarray) -> np.ndarray:
    """ImageNet-normalised CHW float array -> HWC uint8 RGB."""
    hwc = chw.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(hwc * 255.0, 0, 255).astype(np.uint8)


def draw_polygons(
    rgb: np.ndarray, true: Sequence[np.ndarray], predicted: Sequence[np.ndarray], scale: float = 1.0
) -> np.ndarray:
    """Copy of `rgb` with `true` in green and `predicted` in red; polygons are multiplied by `scale` first."""
    canvas = np.ascontiguousarray(rgb).copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 500))
    for polys, color in ((true, (0, 200, 0)), (predicted, (230, 0, 0))):
        pts = [np.round(np.asarray(p, dtype=np.float32) * scale).astype(np.int32) for p in polys if len(p) >= 2]
        cv2.polylines(canvas, pts, isClosed=True, color=color, thickness=thickness)
    return canvas
