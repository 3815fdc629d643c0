"""W&B's search engine (PyPI `sweeps`) over our trial records: next suggestion and hyperband stops."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ocr.sweep.command import Params
from ocr.sweep.spec import engine_view, maximize, metric_name
from ocr.sweep.trial import Trial


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


def _sweep_run(trial: Trial) -> Any:
    """The engine's view of a trial. Aliases only: under pydantic 2, sweeps 0.2.0 silently drops
    `history=`/`summary_metrics=` (its population-by-field-name setting is the pydantic-1 spelling)."""
    from sweeps import SweepRun

    return SweepRun(
        name=trial.run_id,
        state=trial.state,
        config=trial.params,
        sampledHistory=trial.history,
        summaryMetrics=trial.summary,
    )


def suggest(config: dict[str, Any], trials: list[Trial]) -> tuple[Params, dict[str, Any]] | None:
    """Next parameters (and the engine's search info), or None when a grid is exhausted.

    Interrupted trials (agent killed or dead) are left out: they say nothing about their parameters.
    Pending and running trials are passed in, so bayes steers away from what other agents are trying.
    """
    from sweeps import next_run

    runs = [_sweep_run(t) for t in trials if not t.interrupted]
    with quiet_gp():
        suggestion = next_run(engine_view(config), runs, validate=False)
    if suggestion is None:
        return None
    return plain(suggestion.config), plain(suggestion.search_info or {})


def runs_to_stop(config: dict[str, Any], trials: list[Trial]) -> set[str]:
    """Run ids hyperband would stop now (empty when the sweep has no `early_terminate`)."""
    from sweeps import stop_runs

    if not config.get("early_terminate"):
        return set()
    return {run.name for run in stop_runs(engine_view(config), [_sweep_run(t) for t in trials], validate=False)}


def best_value(config: dict[str, Any], trial: Trial) -> float | None:
    """The trial's best value of the sweep metric over its epochs and final metrics, or None if it has none."""
    name = metric_name(config)
    values = [r[name] for r in [*trial.history, trial.summary] if isinstance(r.get(name), (int, float))]
    values = [float(v) for v in values if math.isfinite(v)]
    if not values:
        return None
    return max(values) if maximize(config) else min(values)
