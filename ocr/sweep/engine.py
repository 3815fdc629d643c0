"""W&B's `sweeps` engine over our trials (next suggestion, hyperband stops) and a trial's command line exactly as
`wandb agent` builds it."""

from __future__ import annotations

import json
import math
import platform
import shlex
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ocr.sweep.spec import engine_view
from ocr.sweep.store import Trial
from ocr.utils.compat import import_sweeps, sweep_command, sweep_macros, sweep_run

Params = dict[str, dict[str, Any]]  # W&B's run-config form: {"key": {"value": v}}
MAX_DRAWS = 100  # random search on a discrete space: draws of already-tried configurations before it is exhausted


def plain(value: Any) -> Any:
    """Python scalars instead of numpy ones (YAML/JSON writers refuse numpy); NaN/inf become None."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextmanager
def quiet_gp() -> Iterator[None]:
    """Silence the bayes engine's Gaussian-process ConvergenceWarnings (scikit-learn's; nothing a user can act on)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _sweep_runs(trials: list[Trial]) -> list[Any]:
    return [sweep_run(t.run_id, t.state, t.params, t.history, t.summary) for t in trials]


def config_key(params: Params) -> str:
    """The configuration of `params` as a comparable string (values only)."""
    return json.dumps({k: v.get("value") for k, v in params.items()}, sort_keys=True, default=str)


def discrete_size(config: dict[str, Any]) -> int | None:
    """The number of configurations when every parameter is discrete (value, values, int_uniform), else None."""
    import_sweeps()
    from sweeps.params import HyperParameter

    size = 1
    for name, spec in config["parameters"].items():
        param = HyperParameter(name, spec)
        if param.type == HyperParameter.INT_UNIFORM:
            size *= param.config["max"] - param.config["min"] + 1
        elif param.type in (HyperParameter.CATEGORICAL, HyperParameter.CATEGORICAL_PROB):
            size *= len(param.config["values"])
        elif param.type != HyperParameter.CONSTANT:
            return None
    return size


def _next_run(config: dict[str, Any], trials: list[Trial]) -> tuple[Params, dict[str, Any]] | None:
    with quiet_gp():
        suggestion = import_sweeps().next_run(engine_view(config), _sweep_runs(trials), validate=False)
    if suggestion is None:
        return None
    return plain(suggestion.config), plain(suggestion.search_info or {})


def suggest(config: dict[str, Any], trials: list[Trial]) -> tuple[Params, dict[str, Any]] | None:
    """Next parameters and the engine's search info, or None when the search is exhausted. Grid skips the
    configurations in `trials`; random on a discrete space redraws one already tried (at most `MAX_DRAWS` times);
    random and bayes ignore interrupted trials (pending and running ones steer bayes away from their values)."""
    method = config["method"]
    if method == "grid":
        return _next_run(config, trials)
    runs = [t for t in trials if not t.interrupted]
    size = discrete_size(config) if method == "random" else None
    if size is None:
        return _next_run(config, runs)
    tried = {config_key(t.params) for t in trials}
    for _ in range(MAX_DRAWS if len(tried) < size else 0):
        suggestion = _next_run(config, runs)
        if suggestion is not None and config_key(suggestion[0]) not in tried:
            return suggestion
    return None


def exhausted(config: dict[str, Any], trials: list[Trial]) -> str:
    """Why `suggest` has no next configuration."""
    if config["method"] == "grid":
        return "the grid is exhausted"
    tried, size = len({config_key(t.params) for t in trials}), discrete_size(config)
    more = "" if tried >= size else f"; no untried one in {MAX_DRAWS} draws"
    return f"the random search is exhausted: {tried} of its {size} configurations tried or running{more}"


def runs_to_stop(config: dict[str, Any], trials: list[Trial]) -> set[str]:
    """Run ids hyperband would stop now (empty when the sweep has no `early_terminate`)."""
    if not config.get("early_terminate"):
        return set()
    return {run.name for run in import_sweeps().stop_runs(engine_view(config), _sweep_runs(trials), validate=False)}


def trial_command(sweep_config: dict[str, Any], params: Params, interpreter: str = "python") -> list[str]:
    """The argv `wandb agent` runs for `params`: the sweep's `command` with W&B's macros expanded as it expands them
    (`${interpreter}` is `interpreter`, wandb's `python`)."""
    macros = {**sweep_macros(params), "interpreter": [interpreter], "program": [sweep_config.get("program")]}
    if platform.system() != "Windows":
        macros["env"] = ["/usr/bin/env"]
    argv: list[str] = []
    for chunk in map(str, sweep_command(list(sweep_config.get("command") or []))):
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += [str(v) for v in macros.get(chunk[2:-1]) or []]
        else:
            argv.append(chunk)
    return argv


def reproduce_command(sweep_config: dict[str, Any], params: Params) -> str:
    """The shell command that trains `params` again: the trial's argv without `/usr/bin/env`."""
    argv = trial_command(sweep_config, params)
    return shlex.join(argv[1:] if argv[:1] == ["/usr/bin/env"] else argv)
