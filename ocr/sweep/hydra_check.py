"""Check sweep parameters against the Hydra config the trials will compose (keys, group options, models)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from ocr.sweep.spec import MODEL_KEY
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


@functools.cache
def timm_models() -> frozenset[str]:
    """Every model name timm knows."""
    import timm

    return frozenset(timm.list_models())


def check_model_names(names: list[Any], where: str) -> None:
    """Refuse names timm does not know, listing the HRNet family as the likely intent."""
    for name in names:
        if not isinstance(name, str) or name not in timm_models():
            hrnets = ", ".join(sorted(m for m in timm_models() if m.startswith("hrnet")))
            raise UserError(f"{where}: unknown model {name!r}: not a timm model (HRNet models: {hrnets})")


def check_parameters(parameters: dict[str, Any], where: str, configs_dir: Path = DEFAULT_CONFIGS_DIR) -> None:
    """Each parameter is a config group (values among its options) or a key of the composed config."""
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
    except HydraException as err:
        raise UserError(f"{configs_dir}: Hydra cannot compose {CONFIG_NAME!r}: {str(err).splitlines()[0]}") from None
    finally:
        GlobalHydra.instance().clear()
    for name, spec in parameters.items():
        values = discrete_values(spec)
        options = groups[name]
        if options:
            for value in values:
                if value not in options:
                    raise UserError(
                        f"{where}: parameter {name!r}: {value!r} is not an option of config group {name!r} "
                        f"(options in {configs_dir / name.replace('.', '/')}: {', '.join(options)})"
                    )
            if not values:
                raise UserError(f"{where}: parameter {name!r} is a config group: list its options under values:")
        elif not _has_key(cfg, name):
            raise UserError(
                f"{where}: parameter {name!r} is not a key of the Hydra config "
                f"{configs_dir / (CONFIG_NAME + '.yaml')} (nor a config group); check the spelling"
            )
        for value in values:
            if not _hydra_parses_back(name, value):
                raise UserError(
                    f"{where}: parameter {name!r}: value {value!r} does not survive as a Hydra override "
                    f"'{name}={value}' (avoid null, spaces, commas and quotes)"
                )
    if MODEL_KEY in parameters:
        check_model_names(discrete_values(parameters[MODEL_KEY]), f"{where}: parameter {MODEL_KEY!r}")
