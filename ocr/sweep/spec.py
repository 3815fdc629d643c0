"""The sweep YAML: loading, checks against W&B's sweep schema and the Hydra config, command-line narrowing."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ocr.config.checks import (
    DEFAULT_CONFIGS_DIR, check_parameters, check_value, did_you_mean, discrete_values, sweep_metrics,
)
from ocr.utils.compat import import_sweeps, range_values, sweep_schema
from ocr.utils.errors import UserError, is_finite_number, yaml_error_text

HYDRA_ARG_MACROS = ("${args_no_hyphens}", "${args_append_hydra}", "${args_override_hydra}")  # W&B's, as key=value
METHODS = ("bayes", "random", "grid")
ENGINE_UNKNOWN_KEYS = ("run_cap",)  # keys W&B's server accepts that sweeps 0.2.0's schema predates
PROBE_QUANTILES = (0.001, 0.01, 0.5, 0.99, 0.999)  # where a range is probed for values training refuses
MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
EXAMPLE_COMMAND = "command: [${env}, ${interpreter}, -m, ${program}, ${args_no_hyphens}] with program: ocr.train"


def read_yaml_mapping(path: str | Path, what: str = "sweep config") -> dict[str, Any]:
    """A YAML mapping from `path`; a missing file, malformed YAML or a non-mapping is one `UserError` line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path} (pass --config PATH, a W&B sweep YAML)")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserError(yaml_error_text(path, err)) from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a mapping of sweep settings (method, metric, parameters, ...)")
    return config


def load_sweep_config(path: str | Path) -> dict[str, Any]:
    """A checked sweep YAML (W&B schema); `UserError` naming the file on any problem."""
    config = read_yaml_mapping(path)
    check_sweep_config(config, str(path))
    return config


def known_distributions() -> tuple[str, ...]:
    """Distribution names W&B's sweep schema defines (read from the installed `sweeps` package)."""
    properties = [d.get("properties", {}) for d in sweep_schema()["definitions"].values()]
    return tuple(sorted({name for p in properties for name in p.get("distribution", {}).get("enum", [])}))


def engine_view(config: dict[str, Any]) -> dict[str, Any]:
    """The config as sweeps 0.2.0 accepts it: no `run_cap`, no `early_terminate.strict`, no null top-level keys."""
    view = {k: copy.deepcopy(v) for k, v in config.items() if v is not None and k not in ENGINE_UNKNOWN_KEYS}
    if isinstance(view.get("early_terminate"), dict):
        view["early_terminate"].pop("strict", None)
    return view


def check_parameter(name: str, spec: Any, where: str) -> None:
    """One parameter: a mapping, a known distribution, min below max, valid for W&B's schema."""
    if not isinstance(spec, dict):
        raise UserError(f"{where}: parameter {name!r} must be a mapping (values:, value:, or distribution/min/max)")
    if "parameters" in spec:
        raise UserError(f"{where}: parameter {name!r} is nested; use dotted Hydra keys (e.g. {name}.lr) instead")
    distribution = spec.get("distribution")
    if distribution is not None and distribution not in known_distributions():
        raise UserError(f"{where}: parameter {name!r}: unknown distribution {distribution!r} "
                        f"(known: {', '.join(known_distributions())})")
    for end in ("min", "max"):
        if end in spec and not is_finite_number(spec[end]):
            raise UserError(f"{where}: parameter {name!r}: {end} must be a finite number, got {spec[end]!r}")
    if "min" in spec and "max" in spec and spec["min"] >= spec["max"]:
        raise UserError(f"{where}: parameter {name!r}: min {spec['min']} must be less than max {spec['max']}")
    if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
        raise UserError(f"{where}: parameter {name!r}: values must be a non-empty list")
    if import_sweeps().schema_violations_from_proposed_config({"method": "random", "parameters": {name: spec}}):
        raise UserError(f"{where}: parameter {name!r} is not a valid W&B sweep parameter: {spec} "
                        "(see https://docs.wandb.ai/guides/sweeps/sweep-config-keys#parameters)")


def check_command(config: dict[str, Any], where: str) -> None:
    """The command runs a module with `python -m` (`${program}` or its name) and hands it the parameters as Hydra
    overrides (`python -m ocr.train key=value ...`)."""
    command = config.get("command")
    if not isinstance(command, list) or not any(str(c) in HYDRA_ARG_MACROS for c in command):
        raise UserError(f"{where}: 'command' must hand parameters to Hydra as overrides, e.g. {EXAMPLE_COMMAND}")
    items = [str(c) for c in command]
    module = items[items.index("-m") + 1] if "-m" in items[:-1] else "${args}"
    if module.startswith("${") and module != "${program}":
        raise UserError(f"{where}: 'command' must run the training module with -m (it runs: {' '.join(items)}), "
                        f"e.g. {EXAMPLE_COMMAND}")
    what = f"command module {module!r}"
    if module == "${program}":
        if not config.get("program"):
            raise UserError(f"{where}: the command runs -m ${{program}} but 'program' is not set: "
                            "add program: ocr.train")
        module, what = str(config["program"]), f"program {config['program']!r}"
    if not MODULE_NAME.fullmatch(module) or module.endswith(".py"):
        raise UserError(f"{where}: {what} is not a module name, and a trial runs it as `python -m {module}`: "
                        "name the module, e.g. program: ocr.train")


def check_sweep_config(config: dict[str, Any], where: str) -> None:
    """Schema, metric, command and a dry-run suggestion; `UserError` with the first problem found."""
    sweeps = import_sweeps()
    method = config.get("method")
    if method not in METHODS:
        raise UserError(f"{where}: method must be one of {', '.join(METHODS)}, got {method!r}")
    parameters = config.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise UserError(f"{where}: 'parameters' must be a non-empty mapping of Hydra keys to sweep ranges")
    for name, spec in parameters.items():
        check_parameter(str(name), spec, where)
    metric = config.get("metric")
    if not isinstance(metric, dict) or not metric.get("name"):
        raise UserError(f"{where}: 'metric' needs a name, e.g. metric: {{name: val/cleval_hmean, goal: maximize}}")
    run_cap = config.get("run_cap")
    if run_cap is not None and not (is_finite_number(run_cap, integer=True) and run_cap >= 1):
        raise UserError(f"{where}: run_cap must be a positive integer, got {run_cap!r}")
    check_command(config, where)
    violations = sweeps.schema_violations_from_proposed_config(engine_view(config))
    if violations:
        raise UserError(f"{where}: {violations[0]}")
    try:
        sweeps.next_run(engine_view(config), [], validate=False)
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{where}: the sweep engine refuses this config: {err}") from None


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


def sweep_parameters(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The sweep's parameters plus the `key=value` overrides fixed in its command, as constant parameters."""
    return {**command_overrides(config, where), **config.get("parameters", {})}


def check_against_training(config: dict[str, Any], where: str, configs_dir: Path = DEFAULT_CONFIGS_DIR) -> None:
    """Parameters and fixed command overrides are Hydra keys or group options with values training accepts (ranges
    probed at `PROBE_QUANTILES`), and the metric is one a run logs."""
    parameters = sweep_parameters(config, where)
    check_parameters(parameters, where, configs_dir)
    for name, spec in parameters.items():
        for value in [] if discrete_values(spec) else range_values(name, spec, PROBE_QUANTILES):
            try:
                check_value(name, value)
            except UserError as err:
                raise UserError(f"{where}: parameter {name!r}: {err} (a value this range produces)") from None
    name, known = metric_name(config), list(sweep_metrics())
    if name not in known:
        raise UserError(f"{where}: metric {name!r} is never logged by a training run{did_you_mean(name, known)}; "
                        f"logged: {', '.join(known)}")


def metric_name(config: dict[str, Any]) -> str:
    return str(config["metric"]["name"])


def maximize(config: dict[str, Any]) -> bool:
    """True when the sweep maximises its metric (W&B's default: minimise)."""
    return config["metric"].get("goal", "minimize") == "maximize"


def best_value(config: dict[str, Any], records: list[dict[str, Any]]) -> float | None:
    """The best finite value of the sweep metric in `records` (epoch records, final record), or None."""
    name = metric_name(config)
    values = [float(r[name]) for r in records if is_finite_number(r.get(name))]
    return (max if maximize(config) else min)(values) if values else None


def target_reached(config: dict[str, Any], value: float | None) -> bool:
    """True when `value` meets `metric.target` (no new trials after that)."""
    target = config["metric"].get("target")
    if target is None or not is_finite_number(value):
        return False
    return value >= target if maximize(config) else value <= target


@dataclass(frozen=True)
class Narrowing:
    """Command-line replacements for parts of the sweep YAML (None, or no entry: keep the YAML's)."""
    method: str | None = None
    run_cap: int | None = None
    parameters: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # Hydra key -> its new values


def apply_narrowing(config: dict[str, Any], narrowing: Narrowing, where: str) -> dict[str, Any]:
    """A copy of `config` with the command-line replacements applied and the result re-checked."""
    out = copy.deepcopy(config)
    if narrowing.method is not None:
        out["method"] = narrowing.method
    if narrowing.run_cap is not None:
        out["run_cap"] = narrowing.run_cap
    for key, values in narrowing.parameters.items():
        out["parameters"][key] = {"value": values[0]} if len(values) == 1 else {"values": list(values)}
    if isinstance(out.get("command"), list):  # a value fixed in the command gives way to the option that replaces it
        out["command"] = [c for c in out["command"]
                          if not (isinstance(c, str) and c.split("=", 1)[0] in narrowing.parameters)]
    if out != config:
        check_sweep_config(out, f"{where} with the command-line options")
    return out
