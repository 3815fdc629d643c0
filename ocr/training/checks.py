"""Config checks run before anything heavy is imported or built, so mistakes surface in a second.

`RULES` holds one check per config key (`data.limit_*` from `ocr.data`); training applies them to its composed config and the sweep
launcher to every value a sweep parameter can take, so both refuse the same values with the same words.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ocr.data.annotations import checked_limit
from ocr.models.names import check_model_name
from ocr.utils.errors import UserError, require_number


def _image_size(value: Any) -> None:
    require_number(value, "image_size", integer=True)
    if value < 64 or value % 32:
        raise UserError(f"image_size={value} must be a multiple of 32 and >= 64 (e.g. 640, 800, 1024, 1280)")


def _batch_size(value: Any) -> None:
    require_number(value, "batch_size", integer=True)
    if value < 1:
        raise UserError(f"batch_size={value} must be >= 1")


def _learning_rate(value: Any) -> None:
    require_number(value, "optimizer.lr")
    if value <= 0:
        raise UserError(f"optimizer.lr={value} must be > 0 (the reference sweeps used 0.0005 to 0.002)")


def _weight_decay(value: Any) -> None:
    require_number(value, "optimizer.weight_decay")
    if value < 0:
        raise UserError(f"optimizer.weight_decay={value} must be >= 0")


def _max_epochs(value: Any) -> None:
    if value is None:  # Lightning's default
        return
    require_number(value, "trainer.max_epochs", integer=True)
    if value < 1 and value != -1:
        raise UserError(f"trainer.max_epochs={value} must be >= 1 (or -1: no limit)")


@functools.cache
def lightning_precisions() -> tuple[Any, ...]:
    """The `precision` values Lightning's Trainer accepts (read from Lightning; empty if it moved them)."""
    try:
        from lightning.fabric.connector import _PRECISION_INPUT
    except ImportError:
        return ()

    def flatten(hint: Any) -> list[Any]:
        args = typing.get_args(hint)
        return [v for a in args for v in flatten(a)] if args else [hint]

    return tuple(flatten(_PRECISION_INPUT))


def _precision(value: Any) -> None:
    allowed = lightning_precisions()
    if allowed and value is not None and value not in allowed:  # None: Lightning's default
        shown = ", ".join(str(v) for v in allowed if isinstance(v, str) and not v.isdigit())
        raise UserError(f"trainer.precision={value!r} is not a Lightning precision (one of: {shown})")


RULES: dict[str, Callable[[Any], None]] = {
    "image_size": _image_size,
    "batch_size": _batch_size,
    "optimizer.lr": _learning_rate,
    "optimizer.weight_decay": _weight_decay,
    "trainer.max_epochs": _max_epochs,
    "trainer.precision": _precision,
    "data.limit_train": functools.partial(checked_limit, "train"),
    "data.limit_val": functools.partial(checked_limit, "val"),
}


def check_value(key: str, value: Any) -> None:
    """Raise `UserError` if config key `key` may not take `value` (keys without a rule accept anything)."""
    rule = RULES.get(key)
    if rule is not None:
        rule(value)


def check_config(cfg: DictConfig) -> None:
    """Refuse values that would fail late or silently (the `RULES`, the post-processing search, the model name)."""
    absent = object()
    for key in RULES:
        value = OmegaConf.select(cfg, key, default=absent, throw_on_missing=False)
        if value is not absent:
            check_value(key, value)
    if not cfg.get("optimizer"):
        raise UserError("no optimizer configured: training needs one (optimizer=adam or optimizer=adamw)")
    tuning = cfg.get("tuning") or {}
    if tuning.get("count", 0) and not cfg.get("cache_val_maps"):
        raise UserError(f"tuning.count={tuning.count} searches the cached validation maps: set cache_val_maps=true "
                        "(or tuning.count=0)")
    check_model_name(cfg.models.encoder.model_name)
