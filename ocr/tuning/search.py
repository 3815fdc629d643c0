"""The search loop: the `sweeps` engine's suggestions of post-processing values; grid and random ones are scored as
one batch (sharing work), bayes asks after every result as a W&B agent would."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ocr.sweep.engine import quiet_gp
from ocr.tuning.evaluate import Progress
from ocr.tuning.space import METRIC, suggestion_values
from ocr.utils.compat import import_sweeps, sweep_run

Evaluate = Callable[[Sequence[dict[str, Any]], Progress | None], list[dict[str, float]]]


@dataclass(frozen=True)
class Trial:
    """One scored combination: the swept values and the mean per-image CLEval scores."""

    values: dict[str, Any]
    scores: dict[str, float]

    @property
    def hmean(self) -> float:
        return self.scores["hmean"]


def draw_independent(config: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """Up to `count` grid or random suggestions (grid stops early when every combination is drawn)."""
    runs = import_sweeps().next_runs(config, [], validate=False, n=count)
    return [suggestion_values(r.config) for r in runs if r is not None]


def run_search(
    config: dict[str, Any], count: int, fixed: dict[str, Any], evaluate: Evaluate, seed: int | None = None,
    progress: Callable[[int], Progress] | None = None,
) -> list[Trial]:
    """Score `count` suggestions of the engine `config`, `fixed` filling the keys not swept, with `evaluate(batch,
    tick)` (mean scores of complete parameter dicts, calling `tick(n)` as it goes); `progress(total)` makes `tick`."""
    if seed is not None:  # random uses Python's RNG, bayes numpy's global one
        random.seed(seed)
        np.random.seed(seed)
    trials: list[Trial] = []

    def record(batch: list[dict[str, Any]], tick: Progress | None) -> None:
        trials.extend(map(Trial, batch, evaluate([{**fixed, **v} for v in batch], tick)))

    if config["method"] in ("grid", "random"):
        batch = draw_independent(config, count)
        record(batch, progress(len(batch)) if progress else None)
        return trials
    sweeps = import_sweeps()
    tick = progress(count) if progress else None
    runs = []
    for index in range(count):
        with quiet_gp():
            suggestion = sweeps.next_run(config, runs, validate=False)
        record([suggestion_values(suggestion.config)], tick)
        result = {METRIC: trials[-1].hmean}
        runs.append(sweep_run(f"trial-{index}", "finished", suggestion.config, [result], result))
    return trials
