"""The rules for a run's config: which keys exist, which values training accepts, which metrics a run logs.

`RULES` holds one rule per key and `CROSS_RULES` the rules between keys: `check_config` applies them to a composed
config, `check_parameters` to overrides and sweep parameters, `check_value` / `check_combination` to any other
values users give, so every caller refuses the same values with the same words.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ocr.data.crops import CROP_KEYS
from ocr.data.paths import SYNTHETIC_DEFAULTS
from ocr.models.names import check_model_name
from ocr.utils.compat import config_child, lightning_precisions
from ocr.utils.errors import UserError, is_finite_number

MODEL_KEY = "models.encoder.model_name"
IMAGE_SIZE_KEY = "image_size"
CROP_KEY = "data.augment.crop_size"
SCALE_KEY = "data.augment.scale"
ROTATE_KEY = "data.augment.rotate"
PER_IMAGE_KEY = "data.augment.crops_per_image"
BATCH_SIZE_KEY = "batch_size"
EPOCHS_KEY = "trainer.max_epochs"
OPTIMIZER_KEY = "optimizer"
SCHEDULER_KEY = "scheduler"
POSTPROCESS_KEY = "models.head.postprocess"
THRESH_KEYS = ("collate_fn.thresh_min", "collate_fn.thresh_max")
LOSS_WEIGHT_KEYS = tuple(f"models.loss.{m}_map_loss_weight" for m in ("prob", "thresh", "binary"))
AUGMENT_KEYS = ("brightness_limit", "contrast_limit", "p", *CROP_KEYS)  # the datamodule's jitter keys and crops
DEFAULT_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIG_NAME = "train"
CLEVAL_KEYS = ("recall", "precision", "hmean")  # CLEval scores, logged after each validation
Rule = Callable[[str, Any], None]  # (key, value): raises UserError for a value the key may not take


def cleval_name(score: str, tuned: bool = False) -> str:
    """`val/cleval_<score>`, or its counterpart after the post-processing search (`tuning.count`)."""
    return f"val/cleval_{score}{'_tuned' if tuned else ''}"


def sweep_metrics() -> tuple[str, ...]:
    """Every epoch-level scalar a run logs (what a sweep's `metric.name` may be)."""
    from ocr.models.loss import LOSS_KEYS  # logged per stage: train/<key>_epoch, val/<key>

    cleval = [cleval_name(k, tuned) for tuned in (False, True) for k in CLEVAL_KEYS]
    return (*cleval, *(f"val/{k}" for k in LOSS_KEYS), *(f"train/{k}_epoch" for k in LOSS_KEYS))


@dataclass(frozen=True)
class Range:
    """A finite number from `low` to `high` (an end excluded where open), an integer if `integer`, a multiple of
    `multiple` if set; or one of `also`; or null when `null` is not None (its text says what null means). `typed`:
    a value that is no number gets its own message (`must be an integer`) and the range's message omits the kind."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    multiple: int = 0
    hint: str = ""
    null: str | None = None
    also: tuple[Any, ...] = ()
    typed: bool = True

    def contains(self, value: float) -> bool:
        """Whether the number `value` lies in the range (and is a multiple of `multiple`)."""
        above = self.low < value if self.low_open else self.low <= value
        below = value < self.high if self.high_open else value <= self.high
        return above and below and not (self.multiple and value % self.multiple)

    def __call__(self, key: str, value: Any) -> None:
        """Raise `UserError` (`KEY=VALUE must be ...`) unless `value` is one the range accepts."""
        if value is None and self.null is not None:
            return
        number, kind = is_finite_number(value, self.integer), "an integer" if self.integer else "a finite number"
        if self.typed and not number:
            raise UserError(f"{key}={value!r} must be {kind}")
        if number and (value in self.also or self.contains(value)):
            return
        if self.high == math.inf:
            bound = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            bound = f"in {left}{self.low:g}, {self.high:g}{right}"
        multiple = f"a multiple of {self.multiple}" if self.multiple else ""
        if self.typed:
            text = f"{multiple} and {bound}" if multiple else bound
        else:
            text = f"{f'null ({self.null}) or ' if self.null else ''}{multiple or kind} {bound}"
        raise UserError(f"{key}={value!r} must be {text}{self.hint}")


def _keys(allowed: tuple[str, ...]) -> Rule:
    """A mapping whose keys are among `allowed` (or null)."""

    def rule(key: str, value: Any) -> None:
        if value is not None and not isinstance(value, Mapping):
            raise UserError(f"{key}={value!r} must be a mapping with keys among {sorted(allowed)}")
        unknown = sorted(set(value or {}) - set(allowed))
        if unknown:
            raise UserError(f"{key} has unknown keys {unknown}; allowed: {sorted(allowed)}")

    return rule


def _scale(key: str, value: Any) -> None:
    """[min, max] with 0 < min <= max."""
    try:
        low, high = value
    except (TypeError, ValueError):
        low = high = None
    if not (is_finite_number(low) and is_finite_number(high) and 0 < low <= high):
        raise UserError(f"{key}={value!r} must be [min, max] with 0 < min <= max (x the whole-image fit, e.g. "
                        "[0.75, 1.25])")


def _precision(key: str, value: Any) -> None:
    """One of Lightning's precisions, or null (Lightning's default)."""
    allowed = lightning_precisions()
    if allowed and value is not None and value not in allowed:
        shown = ", ".join(str(v) for v in allowed if isinstance(v, str) and not v.isdigit())
        raise UserError(f"{key}={value!r} is not a Lightning precision (one of: {shown})")


def _strategy(key: str, value: Any) -> None:
    """Not a strategy that runs the fit in spawned or forked workers (their epochs and lines stay there)."""
    if isinstance(value, str) and any(word in value for word in ("spawn", "fork", "notebook")):
        raise UserError(f"{key}={value!r} trains in worker processes whose epochs, best epoch and progress lines do "
                        "not reach the run; use ddp (what auto picks for several devices)")


_PP, _LIMIT = f"{POSTPROCESS_KEY}.", " (the first N images by name)"
RULES: dict[str, Rule] = {
    IMAGE_SIZE_KEY: Range(64, integer=True, multiple=32, hint=" (e.g. 640, 800, 1024, 1280)"),
    BATCH_SIZE_KEY: Range(1, integer=True),
    "optimizer.lr": Range(0, low_open=True, hint=" (the reference sweeps used 0.0005 to 0.002)"),
    "optimizer.weight_decay": Range(0),
    EPOCHS_KEY: Range(1, integer=True, null="", also=(-1,), hint=" (or -1: no limit)"),  # null: Lightning's default
    "trainer.precision": _precision,
    "trainer.strategy": _strategy,
    "data.limit_train": Range(1, integer=True, null="every image", typed=False, hint=_LIMIT),
    "data.limit_val": Range(1, integer=True, null="every image", typed=False, hint=_LIMIT),
    "data.augment": _keys(AUGMENT_KEYS),
    "data.synthetic": _keys(tuple(SYNTHETIC_DEFAULTS)),
    CROP_KEY: Range(64, integer=True, multiple=32, null="whole images", typed=False, hint=" (e.g. 320, 640)"),
    SCALE_KEY: _scale,
    ROTATE_KEY: Range(0, 180, hint=" degrees (0: no rotation)"),
    PER_IMAGE_KEY: Range(1, integer=True, typed=False),
    f"{_PP}thresh": Range(0, 1, high_open=True, hint="; DBNet uses 0.3"),
    f"{_PP}box_thresh": Range(0, 1, hint="; DBNet uses 0.7"),
    f"{_PP}max_candidates": Range(1, integer=True, typed=False, hint="; DBNet uses 1000"),
    f"{_PP}box_unclip_ratio": Range(0, typed=False),
    f"{_PP}polygon_unclip_ratio": Range(0, typed=False),
    f"{_PP}min_size": Range(0, typed=False),
    "models.loss.negative_ratio": Range(0, low_open=True, hint=" (hard negatives per positive; DBNet uses 3)"),
    **{key: Range(0, typed=False) for key in LOSS_WEIGHT_KEYS},
    "collate_fn.shrink_ratio": Range(0, 1, high_open=True, hint="; DBNet uses 0.4"),
    THRESH_KEYS[0]: Range(0, 1, hint="; DBNet uses 0.3"),
    THRESH_KEYS[1]: Range(0, 1, hint="; DBNet uses 0.7"),
    "collate_fn.min_text_size": Range(0, hint="; DBNet uses 8"),
}


def _crops(values: Mapping[str, Any]) -> None:
    """Scale, rotation and crops per image act on crops; a crop fits in the smallest rescaled receipt."""
    size, scale = values.get(CROP_KEY), values.get(SCALE_KEY, (1.0, 1.0))
    if size is None:
        if tuple(scale) != (1.0, 1.0) or values.get(ROTATE_KEY, 0) or values.get(PER_IMAGE_KEY, 1) != 1:
            raise UserError("data.augment.scale, rotate and crops_per_image act on training crops: set "
                            "data.augment.crop_size too (or leave them at [1.0, 1.0], 0 and 1)")
    elif (image_size := values.get(IMAGE_SIZE_KEY)) is not None and size > image_size * scale[0]:
        raise UserError(f"{CROP_KEY}={size} is larger than the rescaled receipt (image_size={image_size} x scale "
                        f"min {scale[0]} = {image_size * scale[0]:g} px): use a crop of at most that size")


def _thresholds(values: Mapping[str, Any]) -> None:
    """The threshold map's low end is not above its high end."""
    low, high = (values.get(key) for key in THRESH_KEYS)
    if low is not None and high is not None and low > high:
        raise UserError(f"collate_fn.thresh_min={low}, thresh_max={high} must satisfy 0 <= thresh_min <= thresh_max "
                        "<= 1; DBNet uses 0.3 and 0.7")


def _loss_weights(values: Mapping[str, Any]) -> None:
    """Some map loss has weight."""
    if all(values.get(key) == 0 for key in LOSS_WEIGHT_KEYS):
        raise UserError("models.loss: the three map loss weights are all 0, so nothing would be learned")


# the keys each rule between keys reads (absent ones: their defaults) -> the rule
CROSS_RULES: dict[tuple[str, ...], Callable[[Mapping[str, Any]], None]] = {
    (IMAGE_SIZE_KEY, CROP_KEY, SCALE_KEY, ROTATE_KEY, PER_IMAGE_KEY): _crops,
    THRESH_KEYS: _thresholds,
    LOSS_WEIGHT_KEYS: _loss_weights,
}


def check_value(key: str, value: Any) -> None:
    """Raise `UserError` if config key `key` may not take `value` (keys without a rule accept anything)."""
    rule = RULES.get(key)
    if rule is not None:
        rule(key, value)


def check_combination(values: Mapping[str, Any]) -> None:
    """Raise `UserError` unless `values` ({key: value}) pass their keys' rules and the `CROSS_RULES` that read them."""
    for key, value in values.items():
        check_value(key, value)
    for keys, rule in CROSS_RULES.items():
        if not values.keys().isdisjoint(keys):
            rule(values)


def check_config(cfg: DictConfig) -> None:
    """Refuse values that would fail late or silently (the rules, the post-processing search, the model name)."""
    absent = object()
    values = {key: OmegaConf.select(cfg, key, default=absent, throw_on_missing=False) for key in RULES}
    check_combination({key: value for key, value in values.items() if value is not absent})
    if not cfg.get("optimizer"):
        raise UserError("no optimizer configured: training needs one (optimizer=adam or optimizer=adamw)")
    tuning = cfg.get("tuning") or {}
    if tuning.get("count", 0) and not cfg.get("cache_val_maps"):
        raise UserError(f"tuning.count={tuning.count} searches the cached validation maps: set cache_val_maps=true "
                        "(or tuning.count=0)")
    check_model_name(cfg.models.encoder.model_name)


def train_size(cfg: DictConfig) -> int:
    """The side of a training input: the crop's (`data.augment.crop_size`) or the whole image's (`image_size`)."""
    return int(OmegaConf.select(cfg, CROP_KEY, default=None) or cfg.image_size)


def check_combinations(parameters: dict[str, Any], base: DictConfig, where: str) -> None:
    """Every combination of the listed values of the keys a `CROSS_RULES` rule reads (other keys: `base`'s) passes."""
    absent = object()
    for keys in CROSS_RULES:
        listed = [discrete_values(parameters.get(key, {})) or [OmegaConf.select(base, key, default=absent)]
                  for key in keys]
        for combination in itertools.product(*listed):
            try:
                check_combination({key: value for key, value in zip(keys, combination) if value is not absent})
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


def sweep_base_config(parameters: dict[str, Any], configs_dir: Path = DEFAULT_CONFIGS_DIR) -> DictConfig:
    """The training config with a sweep's fixed values: its single-valued parameters and the `key=value` items of its
    command (`ocr.sweep.spec.sweep_parameters`), e.g. `experiment=...`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    fixed = {k: v[0] for k, spec in parameters.items() if len(v := discrete_values(spec)) == 1}
    overrides = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in fixed.items()]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(configs_dir).resolve()), version_base="1.3"):
            return compose(CONFIG_NAME, overrides=overrides)
    except HydraException as err:
        raise UserError(f"{configs_dir}: Hydra cannot compose {CONFIG_NAME!r} with the sweep's fixed values: "
                        f"{str(err).splitlines()[0]}") from None
    finally:
        GlobalHydra.instance().clear()


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
            keys = _dotted_keys(compose(CONFIG_NAME))
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
    check_combinations(parameters, sweep_base_config(parameters, configs_dir), where)  # with what the sweep fixes
    if MODEL_KEY in parameters:
        check_model_names(discrete_values(parameters[MODEL_KEY]), f"{where}: parameter {MODEL_KEY!r}")
