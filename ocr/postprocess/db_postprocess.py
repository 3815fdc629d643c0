"""DBNet post-processing: probability map -> text polygons (or boxes) with scores.

Semantics (DBNet, Liao et al. 2020), on a float32 (h, w) map cropped to the unpadded region:

1. bitmap = prob > thresh (NaN counts as 0); outer contours (cv2.findContours, RETR_EXTERNAL rather than
   DBNet's RETR_LIST, CHAIN_APPROX_SIMPLE), sorted by contour area, largest first (ties keep OpenCV's
   order); the first ``max_candidates`` are kept.
2. Polygon mode (``use_polygon``): approxPolyDP with epsilon 0.002 * arc length; skip if < 4 points;
   score = mean prob inside the polygon; drop if score < ``box_thresh``; unclip (pyclipper JT_ROUND,
   on the pixel grid as in DBNet) by D = area * ``polygon_unclip_ratio`` / perimeter; drop unless that
   gives exactly one polygon whose minAreaRect has a shorter side >= ``min_size`` + 2.
3. Box mode: minAreaRect quad of the contour; drop if its shorter side < ``min_size``; score = mean
   prob inside the quad; drop if < ``box_thresh``; unclip by ``box_unclip_ratio`` (at 1/256 px);
   minAreaRect quad again (ordered top-left, top-right, bottom-right, bottom-left); drop if its shorter
   side < ``min_size`` + 2.

Output polygons are float32 (K, 2) in original-image coordinates (divided by ``scale``, clipped to
[0, W] x [0, H] of ``orig_hw``, by default (round(h / scale), round(w / scale))), with their scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocr.postprocess.geometry import check_scale
from ocr.postprocess.stages import Result, candidates, expand


@dataclass(frozen=True)
class PostprocessParams:
    """Post-processing settings (Hydra: ``models.head.postprocess.*``, whose values ``ocr.config`` checks)."""

    thresh: float = 0.3
    box_thresh: float = 0.7
    max_candidates: int = 1000
    use_polygon: bool = True
    box_unclip_ratio: float = 1.5
    polygon_unclip_ratio: float = 2.0
    min_size: float = 3

    @property
    def unclip_ratio(self) -> float:
        """The unclip ratio of the active mode."""
        return self.polygon_unclip_ratio if self.use_polygon else self.box_unclip_ratio


class DBPostProcessor:
    """Probability map -> (polygons, scores) as the module docstring defines; keywords: the fields of
    ``PostprocessParams`` (Hydra: ``models.head.postprocess.*``)."""

    def __init__(self, **settings: float | bool) -> None:
        self.params = PostprocessParams(**settings)

    def __call__(self, prob: np.ndarray, scale: float = 1.0, orig_hw: tuple[int, int] | None = None) -> Result:
        """Polygons (float32 (K, 2), original-image pixels) and scores of a map cropped to the image."""
        p = self.params
        check_scale(scale)
        found = candidates(prob, p.thresh, p.max_candidates, p.use_polygon, p.min_size)
        return expand(found, p.box_thresh, p.unclip_ratio, p.min_size, scale, orig_hw)
