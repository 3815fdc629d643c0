"""Post-processing settings and their checks (Hydra: ``models.head.postprocess.*``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ocr.utils.errors import UserError, is_finite_number, require_number

KEY = "models.head.postprocess"


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
        check_thresh(self.thresh)
        check_box_thresh(self.box_thresh)
        check_max_candidates(self.max_candidates)
        for name in ("box_unclip_ratio", "polygon_unclip_ratio", "min_size"):
            check_non_negative(name, getattr(self, name))

    @property
    def unclip_ratio(self) -> float:
        """The unclip ratio of the active mode."""
        return self.polygon_unclip_ratio if self.use_polygon else self.box_unclip_ratio


def check_thresh(value: object) -> None:
    """Raise ``UserError`` unless ``thresh`` is in [0, 1)."""
    _check_number("thresh", value, 0.0, 1.0, "in [0, 1); DBNet uses 0.3", high_open=True)


def check_box_thresh(value: object) -> None:
    """Raise ``UserError`` unless ``box_thresh`` is in [0, 1]."""
    _check_number("box_thresh", value, 0.0, 1.0, "in [0, 1]; DBNet uses 0.7")


def check_max_candidates(value: object) -> None:
    """Raise ``UserError`` unless ``max_candidates`` is an integer >= 1."""
    if not is_finite_number(value, integer=True) or value < 1:
        raise UserError(f"{KEY}.max_candidates={value!r} must be an integer >= 1; DBNet uses 1000")


def check_non_negative(name: str, value: object) -> None:
    """Raise ``UserError`` unless ``value`` (an unclip ratio or ``min_size``) is a finite number >= 0."""
    _check_number(name, value, 0.0, math.inf, "a finite number >= 0")


def _check_number(name: str, value: object, low: float, high: float, rule: str, high_open: bool = False) -> None:
    """Raise ``UserError`` unless ``value`` is a finite real in [low, high] (or [low, high))."""
    require_number(value, f"{KEY}.{name}")
    if not (low <= value and (value < high if high_open else value <= high)):
        raise UserError(f"{KEY}.{name}={value!r} must be {rule}")
