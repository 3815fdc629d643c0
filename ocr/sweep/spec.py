"""The sweep YAML: loading, checking it against W&B's sweep schema, and command-line narrowing."""

from __future__ import annotations

import copy
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ocr.utils.errors import UserError, is_finite_number

# Macros that hand the parameters to a Hydra program as `key=value` overrides (W&B's own names).
HYDRA_ARG_MACROS = ("${args_no_hyphens}", "${args_append_hydra}", "${args_override_hydra}")
METHODS = ("bayes", "random", "grid")
# Keys a sweep YAML may carry that sweeps 0.2.0's schema predates (W&B's server accepts them).
ENGINE_UNKNOWN_KEYS = ("run_cap",)

MODEL_KEY = "models.encoder.model_name"
IMAGE_SIZE_KEY = "image_size"
BATCH_SIZE_KEY = "batch_size"
EPOCHS_KEY = "trainer.max_epochs"
OPTIMIZER_KEY = "optimizer"
SCHEDULER_KEY = "scheduler"


def yaml_error_text(path: Path, err: yaml.YAMLError) -> str:
    """`PATH: malformed YAML at line L, column C: problem` for a parse error."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{path}: malformed YAML{where}: {problem}"


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
    """Read a sweep YAML (W&B schema) and check it; raise `UserError` naming the file on any problem."""
    config = read_yaml_mapping(path)
    check_sweep_config(config, str(path))
    return config


@functools.cache
def _schema() -> dict[str, Any]:
    import sweeps

    return json.loads((Path(sweeps.__file__).parent / "config" / "schema.json").read_text(encoding="utf-8"))


@functools.cache
def known_distributions() -> tuple[str, ...]:
    """Distribution names W&B's sweep schema defines (read from the installed `sweeps` package)."""
    names: set[str] = set()
    for definition in _schema()["definitions"].values():
        names.update(definition.get("properties", {}).get("distribution", {}).get("enum", []))
    return tuple(sorted(names))


def engine_view(config: dict[str, Any]) -> dict[str, Any]:
    """The config as sweeps 0.2.0 accepts it: no `run_cap`, no `early_terminate.strict`, no null top-level keys."""
    view = {k: copy.deepcopy(v) for k, v in config.items() if v is not None and k not in ENGINE_UNKNOWN_KEYS}
    if isinstance(view.get("early_terminate"), dict):
        view["early_terminate"].pop("strict", None)
    return view


def check_parameter(name: str, spec: Any, where: str) -> None:
    """One parameter: a mapping, a known distribution, min below max, valid for W&B's schema."""
    from sweeps import schema_violations_from_proposed_config

    if not isinstance(spec, dict):
        raise UserError(f"{where}: parameter {name!r} must be a mapping (values:, value:, or distribution/min/max)")
    if "parameters" in spec:
        raise UserError(f"{where}: parameter {name!r} is nested; use dotted Hydra keys (e.g. {name}.lr) instead")
    distribution = spec.get("distribution")
    if distribution is not None and distribution not in known_distributions():
        raise UserError(
            f"{where}: parameter {name!r}: unknown distribution {distribution!r} "
            f"(known: {', '.join(known_distributions())})"
        )
    low, high = spec.get("min"), spec.get("max")
    for end, value in (("min", low), ("max", high)):
        if end in spec and not is_finite_number(value):
            raise UserError(f"{where}: parameter {name!r}: {end} must be a finite number, got {value!r}")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and low >= high:
        raise UserError(f"{where}: parameter {name!r}: min {low} must be less than max {high}")
    if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
        raise UserError(f"{where}: parameter {name!r}: values must be a non-empty list")
    probe = {"method": "random", "parameters": {name: spec}}
    if schema_violations_from_proposed_config(probe):
        raise UserError(
            f"{where}: parameter {name!r} is not a valid W&B sweep parameter: {spec} "
            "(see https://docs.wandb.ai/guides/sweeps/sweep-config-keys#parameters)"
        )


def check_sweep_config(config: dict[str, Any], where: str) -> None:
    """Schema, metric, command and a dry-run suggestion; raise `UserError` with the first problem found."""
    from sweeps import next_run, schema_violations_from_proposed_config

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
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap < 1):
        raise UserError(f"{where}: run_cap must be a positive integer, got {run_cap!r}")
    command = config.get("command")
    if not isinstance(command, list) or not any(str(c) in HYDRA_ARG_MACROS for c in command):
        raise UserError(
            f"{where}: 'command' must hand parameters to Hydra as overrides, e.g. "
            "command: [${env}, ${interpreter}, -m, ${program}, ${args_no_hyphens}]"
        )
    violations = schema_violations_from_proposed_config(engine_view(config))
    if violations:
        raise UserError(f"{where}: {violations[0]}")
    try:
        next_run(engine_view(config), [], validate=False)
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{where}: the sweep engine refuses this config: {err}") from None


def metric_name(config: dict[str, Any]) -> str:
    """The metric the sweep optimises."""
    return str(config["metric"]["name"])


def maximize(config: dict[str, Any]) -> bool:
    """True when the sweep's goal is to maximise the metric (W&B's default is minimise)."""
    return config["metric"].get("goal", "minimize") == "maximize"


def target_reached(config: dict[str, Any], value: float | None) -> bool:
    """True when `value` meets `metric.target` (no new trials after that)."""
    target = config["metric"].get("target")
    if target is None or value is None or not math.isfinite(value):
        return False
    return value >= target if maximize(config) else value <= target


@dataclass(frozen=True)
class Narrowing:
    """Command-line replacements for parts of the sweep YAML (None = keep the YAML's)."""

    method: str | None = None
    run_cap: int | None = None
    models: tuple[str, ...] | None = None
    image_sizes: tuple[int, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None
    max_epochs: tuple[int, ...] | None = None
    optimizers: tuple[str, ...] | None = None
    schedulers: tuple[str, ...] | None = None

    def parameter_values(self) -> dict[str, tuple[Any, ...]]:
        """The parameters this narrowing replaces, with their new values."""
        pairs = {
            MODEL_KEY: self.models,
            IMAGE_SIZE_KEY: self.image_sizes,
            BATCH_SIZE_KEY: self.batch_sizes,
            EPOCHS_KEY: self.max_epochs,
            OPTIMIZER_KEY: self.optimizers,
            SCHEDULER_KEY: self.schedulers,
        }
        return {key: values for key, values in pairs.items() if values is not None}


def apply_narrowing(config: dict[str, Any], narrowing: Narrowing, where: str) -> dict[str, Any]:
    """A copy of `config` with the command-line replacements applied and the result re-checked."""
    out = copy.deepcopy(config)
    if narrowing.method is not None:
        out["method"] = narrowing.method
    if narrowing.run_cap is not None:
        out["run_cap"] = narrowing.run_cap
    narrowed = narrowing.parameter_values()
    for key, values in narrowed.items():
        out["parameters"][key] = {"value": values[0]} if len(values) == 1 else {"values": list(values)}
    if isinstance(out.get("command"), list):  # a value fixed in the command gives way to the option that replaces it
        out["command"] = [c for c in out["command"] if not (isinstance(c, str) and c.split("=", 1)[0] in narrowed)]
    if out != config:
        check_sweep_config(out, f"{where} with the command-line options")
    return out
