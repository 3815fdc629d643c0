"""The rules for a run's config: which keys exist, which values training accepts, which metrics a run logs.

`RULES` holds one check per key: `check_config` applies them to a composed config, `check_parameters` to
overrides and sweep parameters, so every caller refuses the same values with the same words.
"""

from __future__ import annotations

import difflib
import functools
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ocr.data.annotations import checked_limit
from ocr.data.crops import check_crop_size, check_crops_per_image, check_rotate, check_scale, crop_spec
from ocr.models.names import check_model_name
from ocr.utils.compat import config_child, lightning_precisions
from ocr.utils.errors import UserError, require_number

MODEL_KEY = "models.encoder.model_name"
IMAGE_SIZE_KEY = "image_size"
CROP_KEY = "data.augment.crop_size"
SCALE_KEY = "data.augment.scale"
BATCH_SIZE_KEY = "batch_size"
EPOCHS_KEY = "trainer.max_epochs"
OPTIMIZER_KEY = "optimizer"
SCHEDULER_KEY = "scheduler"
DEFAULT_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIG_NAME = "train"
CLEVAL_KEYS = ("recall", "precision", "hmean")  # CLEval scores, logged after each validation


def cleval_name(score: str, tuned: bool = False) -> str:
    """`val/cleval_<score>`, or its counterpart after the post-processing search (`tuning.count`)."""
    return f"val/cleval_{score}{'_tuned' if tuned else ''}"


def sweep_metrics() -> tuple[str, ...]:
    """Every epoch-level scalar a run logs (what a sweep's `metric.name` may be)."""
    from ocr.models.loss import LOSS_KEYS  # logged per stage: train/<key>_epoch, val/<key>

    cleval = [cleval_name(k, tuned) for tuned in (False, True) for k in CLEVAL_KEYS]
    return (*cleval, *(f"val/{k}" for k in LOSS_KEYS), *(f"train/{k}_epoch" for k in LOSS_KEYS))


def _image_size(value: Any) -> None:
    require_number(value, "image_size", integer=True)
    if value < 64 or value % 32:
        raise UserError(f"image_size={value} must be a multiple of 32 and >= 64 (e.g. 640, 800, 1024, 1280)")


def _at_least(key: str, low: int, value: Any, integer: bool = False, strict: bool = False, hint: str = "") -> None:
    require_number(value, key, integer=integer)
    if value < low or (strict and value == low):
        raise UserError(f"{key}={value} must be {'>' if strict else '>='} {low}{hint}")


def _max_epochs(value: Any) -> None:
    if value is not None:  # None: Lightning's default
        require_number(value, "trainer.max_epochs", integer=True)
        if value < 1 and value != -1:
            raise UserError(f"trainer.max_epochs={value} must be >= 1 (or -1: no limit)")


def _precision(value: Any) -> None:
    allowed = lightning_precisions()
    if allowed and value is not None and value not in allowed:  # None: Lightning's default
        shown = ", ".join(str(v) for v in allowed if isinstance(v, str) and not v.isdigit())
        raise UserError(f"trainer.precision={value!r} is not a Lightning precision (one of: {shown})")


RULES: dict[str, Callable[[Any], None]] = {
    "image_size": _image_size,
    "batch_size": functools.partial(_at_least, "batch_size", 1, integer=True),
    "optimizer.lr": functools.partial(_at_least, "optimizer.lr", 0, strict=True,
                                      hint=" (the reference sweeps used 0.0005 to 0.002)"),
    "optimizer.weight_decay": functools.partial(_at_least, "optimizer.weight_decay", 0),
    "trainer.max_epochs": _max_epochs,
    "trainer.precision": _precision,
    "data.limit_train": functools.partial(checked_limit, "train"),
    "data.limit_val": functools.partial(checked_limit, "val"),
    CROP_KEY: check_crop_size,
    SCALE_KEY: check_scale,
    "data.augment.rotate": check_rotate,
    "data.augment.crops_per_image": check_crops_per_image,
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
    crop_spec(cfg.image_size, cfg.data.get("augment") or {})


def train_size(cfg: DictConfig) -> int:
    """The side of a training input: the crop's (`data.augment.crop_size`) or the whole image's (`image_size`)."""
    return int(OmegaConf.select(cfg, CROP_KEY, default=None) or cfg.image_size)


def check_crop_combinations(parameters: dict[str, Any], base: DictConfig, where: str) -> None:
    """Every listed combination of image size, crop size and scale of a sweep gives crops training accepts."""
    if OmegaConf.select(base, "data.augment", default=None) is None:
        return
    listed = lambda key: discrete_values(parameters.get(key, {})) or [OmegaConf.select(base, key)]  # noqa: E731
    augment = OmegaConf.to_container(base.data.augment, resolve=True)
    for size, crop, scale in itertools.product(*map(listed, (IMAGE_SIZE_KEY, CROP_KEY, SCALE_KEY))):
        try:
            crop_spec(size, {**augment, "crop_size": crop, "scale": scale})
        except UserError as err:
            raise UserError(f"{where}: {err}") from None


def discrete_values(spec: dict[str, Any]) -> list[Any]:
    """The listed values of a parameter (`values` or `value`); empty for ranges."""
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    return []


def did_you_mean(name: str, known: list[str]) -> str:
    """` (did you mean X?)` for the closest of `known`, or ''."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_model_names(names: list[Any], where: str) -> None:
    """Refuse names timm does not know, listing the HRNet family as the likely intent."""
    for name in names:
        try:
            check_model_name(name, MODEL_KEY)
        except UserError as err:
            raise UserError(f"{where}: {err}") from None


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (not resolved: values may need Hydra's runtime, e.g. ${hydra:...})."""
    if not isinstance(node, DictConfig):
        return []
    keys = []
    for key in node.keys():
        keys += [f"{prefix}{key}", *_dotted_keys(config_child(node, key), f"{prefix}{key}.")]
    return keys


def _hydra_parses_back(key: str, value: Any) -> bool:
    """True when `key=value`, written the way W&B's agent writes it, reaches Hydra as the same value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create().parse_overrides([f"{key}={value}"])[0]
    except HydraException:
        return False
    return not override.is_sweep_override() and override.value() == value


def check_parameters(
    parameters: dict[str, Any], where: str, configs_dir: Path = DEFAULT_CONFIGS_DIR, round_trip: bool = True
) -> None:
    """Each parameter ({key: {"value": v} or a sweep spec}) is a config group (values among its options) or a key
    of the composed config, and each listed value passes `check_value`. With `round_trip`, listed values must also
    reach Hydra unchanged when written as `key=value` (as W&B's agent writes them)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    configs_dir = Path(configs_dir).resolve()
    train_yaml = configs_dir / f"{CONFIG_NAME}.yaml"
    if not train_yaml.is_file():
        raise UserError(f"Hydra configs not found: {train_yaml} (pass --configs-dir DIR)")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(configs_dir), version_base="1.3"):
            base = compose(CONFIG_NAME)
            keys = _dotted_keys(base)
            loader = GlobalHydra.instance().config_loader()
            groups = {name: loader.get_group_options(name.replace(".", "/")) for name in parameters}
            top_groups = [g for g in loader.list_groups("") if g != "hydra"]
    except HydraException as err:
        raise UserError(f"{configs_dir}: Hydra cannot compose {CONFIG_NAME!r}: {str(err).splitlines()[0]}") from None
    finally:
        GlobalHydra.instance().clear()
    for name, spec in parameters.items():
        values, options, bad = discrete_values(spec), groups[name], f"{where}: parameter {name!r}"
        if options and not values:
            raise UserError(f"{bad} is a config group: list its options under values:")
        for value in values if options else ():
            if value is None:
                raise UserError(f"{bad}: a config group cannot be null (Hydra drops a group with ~{name} on the "
                                "command line)")
            if value not in options:
                raise UserError(f"{bad}: {value!r} is not an option of config group {name!r} (options in "
                                f"{configs_dir / name.replace('.', '/')}: {', '.join(options)})")
        if not options and name not in keys:
            raise UserError(f"{bad} is not a key of the Hydra config {train_yaml} (nor a config group)"
                            f"{did_you_mean(name, keys + top_groups)}")
        for value in values:
            try:
                check_value(name, value)
            except UserError as err:
                raise UserError(f"{bad}: {err}") from None
            if round_trip and not _hydra_parses_back(name, value):
                raise UserError(f"{bad}: value {value!r} does not survive as a Hydra override '{name}={value}' "
                                "(avoid null, spaces, commas and quotes)")
    check_crop_combinations(parameters, base, where)
    if MODEL_KEY in parameters:
        check_model_names(discrete_values(parameters[MODEL_KEY]), f"{where}: parameter {MODEL_KEY!r}")
