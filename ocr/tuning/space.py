"""The post-processing search space: the `models.head.postprocess.*` parameters of a W&B sweep YAML (other
parameters are ignored, so the training sweep's own file can be passed as is)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from ocr.config.checks import check_combination, cleval_name, discrete_values
from ocr.inference.tuned import PREFIX
from ocr.sweep.engine import plain
from ocr.sweep.spec import METHODS, check_parameter, read_yaml_mapping
from ocr.utils.compat import import_sweeps
from ocr.utils.errors import UserError

METRIC = cleval_name("hmean")
GRID_DISTRIBUTIONS = ("categorical", "constant", "int_uniform", "q_uniform")
# Continuous ranges that `--method grid` spreads over evenly spaced values (linear, and geometric for log).
SPREAD_DISTRIBUTIONS = ("uniform", "log_uniform_values")
MAX_SPREAD = 1000  # values per spread range at most: finer than the float16 maps resolve (6e-5 vs 1.2e-4 near 0.2)
DEFAULT_CONFIG_NAME = "sweep_config.yaml"
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_config_path() -> Path:
    """`sweep_config.yaml` in the working directory if there is one, else the repository's."""
    here = Path.cwd() / DEFAULT_CONFIG_NAME
    return here if here.is_file() else REPO_ROOT / DEFAULT_CONFIG_NAME


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from `path`, with one-line errors for a missing or malformed file."""
    return read_yaml_mapping(path, what="search config")


def _int_range(spec: dict[str, Any]) -> bool:
    """Whether the spec's min and max are both integers."""
    return all(isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool) for k in ("min", "max"))


def _distribution(spec: dict[str, Any]) -> str | None:
    """The spec's distribution as the engine reads it (min/max without one: int_uniform for ints, else uniform)."""
    if "distribution" in spec:
        return spec["distribution"]
    if "min" in spec and "max" in spec:
        return "int_uniform" if _int_range(spec) else "uniform"
    return None


def _enumerated(spec: dict[str, Any]) -> int | None:
    """About how many values the grid engine enumerates for `spec`; None for a range it cannot enumerate."""
    if "values" in spec or "value" in spec:
        return max(1, len(discrete_values(spec)))
    distribution = _distribution(spec)
    if distribution == "q_uniform":
        return int((spec["max"] - spec["min"]) // spec.get("q", 1.0)) + 1
    return int(spec["max"]) - int(spec["min"]) + 1 if distribution in GRID_DISTRIBUTIONS else None


def grid_points(spread: int, budget: int) -> list[int]:
    """Values for each of `spread` continuous ranges so that their product is at most `budget` (at least 2 each):
    the same number for all, then one more for the first ones while the product still fits (100, 3 -> 5, 5, 4)."""
    if spread == 0:
        return []
    n = max(2, round(budget ** (1 / spread)))
    while n > 2 and n**spread > budget:
        n -= 1
    while (n + 1) ** spread <= budget:
        n += 1
    points = [n] * spread
    for i in range(spread):
        if np.prod(points) // points[i] * (points[i] + 1) <= budget:
            points[i] += 1
    return points


def spread_values(spec: dict[str, Any], n: int) -> list[float]:
    """`n` evenly spaced values over a uniform (linear) or log_uniform_values (geometric) range, 6 decimals."""
    low, high = float(spec["min"]), float(spec["max"])
    space = np.geomspace if _distribution(spec) == "log_uniform_values" else np.linspace
    return list(dict.fromkeys(round(float(v), 6) for v in space(low, high, n)))


def ends_and_middle(name: str, spec: dict[str, Any], where: str) -> list[Any]:
    """A sweep parameter's listed values, or its range's ends and middle (geometric for log ranges, integers for an
    integer range)."""
    if listed := discrete_values(spec):
        return listed
    if "min" not in spec or "max" not in spec:
        raise UserError(f"{where}: parameter {name!r} has no min/max to take ends and middle from: give min and max, "
                        "or list values")
    values = spread_values(spec, 3)
    return sorted({int(round(v)) for v in values}) if _int_range(spec) else values


def _as_grid(chosen: dict[str, dict[str, Any]], where: str, count: int) -> dict[str, dict[str, Any]]:
    """`chosen` with its continuous ranges spread over values, about `count` combinations in all."""
    spread = [name for name, spec in chosen.items() if _enumerated(spec) is None]
    for name in spread:
        if _distribution(chosen[name]) not in SPREAD_DISTRIBUTIONS:
            raise UserError(
                f"{where}: --method grid spreads {' and '.join(SPREAD_DISTRIBUTIONS)} ranges over evenly spaced "
                f"values; {name!r} has distribution {_distribution(chosen[name])!r}: list values for it, or use "
                "--method random or bayes"
            )
    listed = int(np.prod([_enumerated(spec) for name, spec in chosen.items() if name not in spread]))
    points = [min(n, MAX_SPREAD) for n in grid_points(len(spread), max(1, count // max(1, listed)))]
    return {name: ({"values": spread_values(spec, points[spread.index(name)])} if name in spread else spec)
            for name, spec in chosen.items()}


def search_config(
    raw: dict[str, Any], where: str, known_keys: set[str], method: str | None = None, grid_count: int = 100
) -> dict[str, Any]:
    """The engine config (method, metric, parameters) for the post-processing keys (`known_keys`) of sweep YAML `raw`;
    `method` overrides the YAML's; for grid, ranges become evenly spaced values, about `grid_count` combinations."""
    sweeps = import_sweeps()
    method = method or raw.get("method") or "bayes"
    if method not in METHODS:
        raise UserError(f"{where}: method must be one of {', '.join(METHODS)}, got {method!r}")
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict):
        raise UserError(f"{where}: 'parameters' must be a mapping of Hydra keys to sweep ranges")
    chosen = {k: copy.deepcopy(v) for k, v in parameters.items() if str(k).startswith(PREFIX)}
    if not chosen:
        raise UserError(
            f"{where} has no parameters named {PREFIX}*: add e.g. {PREFIX}thresh: {{min: 0.19, max: 0.25}} "
            "or pass --config with a search YAML"
        )
    for name, spec in chosen.items():
        key = name[len(PREFIX):]
        if key not in known_keys:
            raise UserError(f"{where}: {name!r} is not a post-processing key (known: {', '.join(sorted(known_keys))})")
        check_parameter(name, spec, where)
    config = {"method": method, "metric": {"name": METRIC, "goal": "maximize"}, "parameters": chosen}
    violations = sweeps.schema_violations_from_proposed_config(config)
    if violations:
        raise UserError(f"{where}: {violations[0]}")
    if method == "grid":
        config["parameters"] = _as_grid(chosen, where, grid_count)
    try:
        sweeps.next_run(config, [], validate=False)
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{where}: the sweep engine refuses these parameters: {err}") from None
    return config


def check_values(values: dict[str, list[Any]], base: dict[str, Any], where: str) -> None:
    """Refuse values (post-processing key -> values) the config rules reject beside the `base` values."""
    for key, listed in values.items():
        for value in listed:
            try:
                check_combination({PREFIX + k: v for k, v in {**base, key: value}.items()})
            except UserError as err:
                raise UserError(f"{where}: parameter {PREFIX + key!r}: {err}") from None


def suggestion_values(run_config: dict[str, Any]) -> dict[str, Any]:
    """`{key: {"value": v}}` of a suggested run -> `{postprocess key: plain value}`."""
    return {name[len(PREFIX):]: plain(entry["value"]) for name, entry in run_config.items()}
