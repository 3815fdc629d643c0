"""Check sweep parameters against the Hydra config the trials will compose (keys, group options, models,
the values training accepts) and the sweep's metric against what a run logs."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from ocr.models.names import check_model_name
from ocr.sweep.spec import MODEL_KEY
from ocr.training.checks import check_value
from ocr.utils.errors import UserError

DEFAULT_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIG_NAME = "train"


def discrete_values(spec: dict[str, Any]) -> list[Any]:
    """The listed values of a parameter (`values` or `value`); empty for ranges."""
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    return []


# Quantiles at which a range is probed for values training would refuse (its ends and inside).
PROBE_QUANTILES = (0.001, 0.01, 0.5, 0.99, 0.999)


def probe_values(name: str, spec: dict[str, Any]) -> list[Any]:
    """Values the sweep can give `name`: the listed ones, or those W&B's engine draws at `PROBE_QUANTILES`."""
    listed = discrete_values(spec)
    if listed:
        return listed
    from sweeps.params import HyperParameter

    parameter = HyperParameter(name, spec)
    return [value.item() if hasattr(value, "item") else value for value in map(parameter.ppf, PROBE_QUANTILES)]


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a config (not resolved)."""
    if not isinstance(node, DictConfig):
        return []
    keys = []
    for key in node.keys():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        keys += _dotted_keys(node._get_node(key), dotted + ".")
    return keys


def did_you_mean(name: str, known: list[str]) -> str:
    """` (did you mean X?)` for the closest of `known`, or ''."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_metric(config: dict[str, Any], where: str) -> None:
    """The sweep's metric must be one a training run logs, or the search and hyperband see nothing."""
    from ocr.training.logged import sweep_metrics

    name = str(config["metric"]["name"])
    known = list(sweep_metrics())
    if name not in known:
        raise UserError(
            f"{where}: metric {name!r} is never logged by a training run{did_you_mean(name, known)}; "
            f"logged: {', '.join(known)}"
        )


def _has_key(cfg: DictConfig, dotted: str) -> bool:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig):
            return False
        try:  # no resolving: values may need Hydra's runtime (${hydra:...})
            node = node._get_node(part, throw_on_missing_key=False)
        except (ConfigAttributeError, ConfigKeyError):  # struct configs raise instead of returning None
            return False
        if node is None:
            return False
    return True


def _hydra_parses_back(key: str, value: Any) -> bool:
    """True when `key=value`, written the way W&B's agent writes it, reaches Hydra as the same value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        override = OverridesParser.create().parse_overrides([f"{key}={value}"])[0]
    except HydraException:
        return False
    return not override.is_sweep_override() and override.value() == value


def command_overrides(config: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Fixed `key=value` Hydra overrides written into the sweep's `command`, as constant parameters."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    fixed = {}
    for chunk in map(str, config.get("command") or []):
        if "=" not in chunk or chunk.startswith(("${", "-")):
            continue
        try:
            override = OverridesParser.create().parse_overrides([chunk])[0]
        except HydraException:
            raise UserError(f"{where}: command item {chunk!r} is not a valid Hydra override") from None
        fixed[override.key_or_group] = {"value": override.value()}
    return fixed


def check_model_names(names: list[Any], where: str) -> None:
    """Refuse names timm does not know, listing the HRNet family as the likely intent."""
    for name in names:
        try:
            check_model_name(name, MODEL_KEY)
        except UserError as err:
            raise UserError(f"{where}: {err}") from None


def check_parameters(
    parameters: dict[str, Any], where: str, configs_dir: Path = DEFAULT_CONFIGS_DIR, round_trip: bool = True
) -> None:
    """Each parameter is a config group (values among its options) or a key of the composed config, and every
    value it can take passes training's check for that key. With `round_trip`, listed values must also reach
    Hydra unchanged when written as `key=value` (as W&B's agent writes them)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    configs_dir = Path(configs_dir).resolve()
    if not (configs_dir / f"{CONFIG_NAME}.yaml").is_file():
        raise UserError(f"Hydra configs not found: {configs_dir / (CONFIG_NAME + '.yaml')} (pass --configs-dir DIR)")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(configs_dir), version_base="1.3"):
            cfg = compose(CONFIG_NAME)
            loader = GlobalHydra.instance().config_loader()
            groups = {name: loader.get_group_options(name.replace(".", "/")) for name in parameters}
            top_groups = [g for g in loader.list_groups("") if g != "hydra"]
    except HydraException as err:
        raise UserError(f"{configs_dir}: Hydra cannot compose {CONFIG_NAME!r}: {str(err).splitlines()[0]}") from None
    finally:
        GlobalHydra.instance().clear()
    for name, spec in parameters.items():
        values = discrete_values(spec)
        options = groups[name]
        if options:
            for value in values:
                if value is None:
                    raise UserError(f"{where}: parameter {name!r}: a config group cannot be null "
                                    f"(Hydra drops a group with ~{name} on the command line)")
                if value not in options:
                    raise UserError(
                        f"{where}: parameter {name!r}: {value!r} is not an option of config group {name!r} "
                        f"(options in {configs_dir / name.replace('.', '/')}: {', '.join(options)})"
                    )
            if not values:
                raise UserError(f"{where}: parameter {name!r} is a config group: list its options under values:")
        elif not _has_key(cfg, name):
            known = _dotted_keys(cfg) + top_groups
            raise UserError(
                f"{where}: parameter {name!r} is not a key of the Hydra config "
                f"{configs_dir / (CONFIG_NAME + '.yaml')} (nor a config group){did_you_mean(name, known)}"
            )
        for value in probe_values(name, spec):
            try:
                check_value(name, value)
            except UserError as err:
                listed = "" if values else " (a value this range produces)"
                raise UserError(f"{where}: parameter {name!r}: {err}{listed}") from None
        for value in values if round_trip else ():
            if not _hydra_parses_back(name, value):
                raise UserError(
                    f"{where}: parameter {name!r}: value {value!r} does not survive as a Hydra override "
                    f"'{name}={value}' (avoid null, spaces, commas and quotes)"
                )
    if MODEL_KEY in parameters:
        check_model_names(discrete_values(parameters[MODEL_KEY]), f"{where}: parameter {MODEL_KEY!r}")
