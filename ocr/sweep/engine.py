"""W&B's sweep machinery over our trial records: the engine's next suggestion and hyperband stops (PyPI `sweeps`),
and a trial's command line exactly as W&B's CLI agent (`wandb agent`) builds it."""

from __future__ import annotations

import math
import platform
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ocr.sweep.spec import engine_view, maximize, metric_name
from ocr.sweep.store import Trial
from ocr.utils.compat import import_sweeps, sweep_command, sweep_macros, sweep_run

Params = dict[str, dict[str, Any]]  # W&B's run-config form: {"key": {"value": v}}


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


def suggest(config: dict[str, Any], trials: list[Trial]) -> tuple[Params, dict[str, Any]] | None:
    """Next parameters (and the engine's search info), or None when a grid is exhausted. Interrupted trials are left
    out (they say nothing about their parameters); pending and running ones steer bayes away from their values."""
    with quiet_gp():
        runs = _sweep_runs([t for t in trials if not t.interrupted])
        suggestion = import_sweeps().next_run(engine_view(config), runs, validate=False)
    if suggestion is None:
        return None
    return plain(suggestion.config), plain(suggestion.search_info or {})


def runs_to_stop(config: dict[str, Any], trials: list[Trial]) -> set[str]:
    """Run ids hyperband would stop now (empty when the sweep has no `early_terminate`)."""
    if not config.get("early_terminate"):
        return set()
    return {run.name for run in import_sweeps().stop_runs(engine_view(config), _sweep_runs(trials), validate=False)}


def best_value(config: dict[str, Any], trial: Trial) -> float | None:
    """The trial's best value of the sweep metric over its epochs and final metrics, or None if it has none."""
    name = metric_name(config)
    values = [r[name] for r in [*trial.history, trial.summary] if isinstance(r.get(name), (int, float))]
    values = [float(v) for v in values if math.isfinite(v)]
    if not values:
        return None
    return max(values) if maximize(config) else min(values)


def trial_command(sweep_config: dict[str, Any], params: Params, interpreter: str = "python") -> list[str]:
    """The argv `wandb agent` would run for `params`: the sweep's `command` with W&B's macros expanded
    (`${program}` and `${env}` as wandb's agent sets them; `${interpreter}` is `interpreter`, wandb's `python`)."""
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
