"""`tune-postprocess`: search post-processing parameters on a run's cached validation maps; the result goes to
RUN/tuned_postprocess.txt (Hydra overrides), RUN/tune_postprocess.json (every trial) and the run's W&B run."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocr.config.checks import check_value, cleval_name, discrete_values
from ocr.inference.runs import load_run_config, load_run_metrics
from ocr.inference.tuned import PREFIX, overrides, run_params, write_tuned
from ocr.training.val_cache import cache_dir
from ocr.tuning.evaluate import CacheEvaluator, Progress
from ocr.tuning.search import Trial, run_search
from ocr.tuning.space import check_values, default_config_path, read_yaml, search_config
from ocr.utils.errors import UserError, is_finite_number

RESULT_FILE = "tune_postprocess.json"
SCORES = ("hmean", "recall", "precision")
NOT_IMPROVED = "no combination beat the run's own post-processing: tuned = the run's own values"
log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    """What a search found, and where it was written."""

    run_dir: Path
    method: str
    config_path: Path
    space: dict[str, Any]  # the engine's parameters (grid: the values enumerated)
    n_images: int
    run_metrics: dict[str, float]
    default: Trial
    trials: list[Trial]
    best: Trial
    tuned: dict[str, Any]
    improved: bool
    seconds: float
    files: list[Path] = field(default_factory=list)

    @property
    def swept(self) -> list[str]:
        """The Hydra keys the search varied, sorted."""
        return sorted(self.space)

    @property
    def tuned_swept(self) -> dict[str, Any]:
        """The tuned values of the post-processing arguments the search varied."""
        return {name.removeprefix(PREFIX): self.tuned[name.removeprefix(PREFIX)] for name in self.swept}

    @property
    def tuned_scores(self) -> dict[str, float]:
        """The scores of the saved parameters."""
        return self.best.scores if self.improved else self.default.scores

    @property
    def tuned_metrics(self) -> dict[str, float]:
        """The tuned scores under their logged names (`val/cleval_hmean_tuned`, ...)."""
        return {cleval_name(k, tuned=True): v for k, v in self.tuned_scores.items()}


def edges_reached(result: TuneResult) -> list[tuple[str, Any, str]]:
    """(key, tuned value, "min" or "max") for each swept parameter tuned to an end of its searched numeric range
    that the config rules accept values beyond; empty when the search kept the run's values."""
    found = []
    for name, spec in sorted(result.space.items()) if result.improved else []:
        key = name.removeprefix(PREFIX)
        value, ends = result.tuned[key], discrete_values(spec) or [spec[k] for k in ("min", "max") if k in spec]
        if len(set(ends)) < 2 or not all(is_finite_number(v) for v in ends):
            continue
        step = 1 if isinstance(value, int) else 1e-6  # one step beyond the end
        for end, side, sign in ((min(ends), "min", -1), (max(ends), "max", 1)):
            if not np.isclose(value, end, rtol=0, atol=1e-9):
                continue
            with suppress(UserError):  # unless the end is the key's own limit
                check_value(PREFIX + key, value + sign * step)
                found.append((key, value, side))
    return found


def search(
    run_dir: Path, method: str | None, count: int, config_path: Path | None, workers: int, seed: int | None,
    progress: Callable[[int], Progress] | None = None,
) -> TuneResult:
    """Run the search and write the result files; `progress(total)` returns a callback advanced by the number of
    combinations scored."""
    cfg = load_run_config(run_dir)
    defaults = run_params(cfg)
    config_path = Path(config_path) if config_path else default_config_path()
    where = str(config_path)
    config = search_config(read_yaml(config_path), where, set(defaults), method, grid_count=count)
    # listed values and range ends are refused before any work (a log range's min and max may be exponents)
    values = {name.removeprefix(PREFIX): [*discrete_values(spec), *(spec[k] for k in ("min", "max") if k in spec)]
              for name, spec in config["parameters"].items() if "log" not in str(spec.get("distribution", ""))}
    check_values(values, defaults, where)
    start = time.perf_counter()
    with CacheEvaluator(run_dir, workers) as evaluator:
        default = Trial({}, evaluator.evaluate([defaults])[0])
        trials = run_search(config, count, defaults, evaluator.evaluate, seed=seed, progress=progress)
    best = max(trials, key=lambda t: t.hmean)  # the earliest among equals
    seconds = time.perf_counter() - start
    improved = best.hmean > default.hmean
    tuned = {**defaults, **best.values} if improved else defaults
    metrics = {k: float(v) for k, v in load_run_metrics(run_dir).items()
               if k.startswith("val/cleval") and v is not None}
    result = TuneResult(run_dir, config["method"], config_path, config["parameters"], evaluator.n_images, metrics,
                        default, trials, best, tuned, improved, seconds)
    result.files = write_results(result)
    return result


def write_results(result: TuneResult) -> list[Path]:
    """`tuned_postprocess.txt` and `tune_postprocess.json` in the run directory."""
    scores = result.tuned_scores
    header = [
        f"tune-postprocess: {result.method}, {len(result.trials)} combinations on {result.n_images} "
        "cached validation images",
        f"val/cleval_hmean_tuned={scores['hmean']:.6f} "
        f"(run's own post-processing on the cache: {result.default.hmean:.6f})",
        "use: python -m ocr.train $(grep -v '^#' tuned_postprocess.txt)   or   predict --postprocess tuned",
    ]
    if not result.improved:
        header.append(NOT_IMPROVED)
    txt = write_tuned(result.run_dir, result.tuned_swept, header)
    summary = {
        "method": result.method, "config": str(result.config_path), "swept": result.swept, "images": result.n_images,
        "seconds": result.seconds, "run_metrics": result.run_metrics, "default": asdict(result.default),
        "best": asdict(result.best), "improved": result.improved, "tuned": result.tuned,
        "tuned_overrides": overrides(result.tuned_swept), "trials": [asdict(t) for t in result.trials],
    }
    path = result.run_dir / RESULT_FILE
    path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return [txt, path]


def log_to_wandb(result: TuneResult, run: Any) -> None:
    """Log the tuned hmean (and recall/precision), the tuned values and a table of trials to `run`."""
    import wandb

    logged = {**result.tuned_metrics, **{f"tuned/{k}": v for k, v in result.tuned.items()}}
    rows = [[t.values.get(k.removeprefix(PREFIX)) for k in result.swept] + [t.scores[k] for k in SCORES]
            for t in result.trials]
    run.log({**logged, "tuned/trials": wandb.Table(columns=[*result.swept, *SCORES], data=rows)})
    run.summary.update(logged)
    run.config.update({"tuned_postprocess": result.tuned}, allow_val_change=True)


def report(result: TuneResult) -> str:
    """The search's summary: scores table, best parameters as Hydra overrides, files written."""
    lines = [f"{result.method} search over {', '.join(result.swept)}"]
    grid = [f"{name.removeprefix(PREFIX)} {len(values)} values ({values[0]} .. {values[-1]})"
            for name, values in ((n, discrete_values(spec)) for n, spec in result.space.items()) if len(values) > 1]
    if result.method == "grid" and grid:
        lines.append("grid: " + ", ".join(grid))
    lines += [
        f"{len(result.trials)} combinations x {result.n_images} cached validation images in {result.seconds:.1f} s",
        "",
        f"{'':32} {'hmean':>8} {'recall':>8} {'precision':>9}",
    ]
    rows = {"run (metrics.json)": {k: result.run_metrics.get(cleval_name(k)) for k in SCORES},
            "run's post-processing, cached": result.default.scores, "tuned": result.tuned_scores}
    for label, scores in rows.items():
        if scores["hmean"] is not None:
            lines.append(f"{label:32} " + " ".join(f"{scores[k]:>8.4f}" if scores[k] is not None else f"{'-':>8}"
                                                   for k in SCORES))
    lines.append("")
    edges = edges_reached(result)
    if edges:
        one = len(edges) == 1
        lines.append(
            "hint: " + ", ".join(f"{key}={value} (the {side})" for key, value, side in edges)
            + f" {'is' if one else 'are'} at the edge of the searched range: a better value may lie beyond; "
            f"widen {'it' if one else 'them'} under {PREFIX}* in {result.config_path} "
            "(or in a copy passed as --config) and tune again"
        )
    if not result.improved:
        lines.append(NOT_IMPROVED)
    lines.append("best post-processing (Hydra overrides):")
    lines += [f"  {o}" for o in overrides(result.tuned_swept)]
    lines.append("written: " + ", ".join(str(p) for p in result.files))
    return "\n".join(lines)


def after_training(tuning: Any, seed: int) -> Callable[[Path, Any], dict[str, float]] | None:
    """The search a run's `tuning` config asks for once training ends (None for `tuning.count=0`)."""
    if not tuning or not tuning.count:
        return None

    def tune(run_dir: Path, logger: Any) -> dict[str, float]:
        if not cache_dir(run_dir).is_dir():  # no cache after a SIGTERM
            return {}
        config = Path(tuning.config) if tuning.config else None
        result = search(run_dir, tuning.method, int(tuning.count), config, int(tuning.workers), seed)
        log.info("post-processing search: val/cleval_hmean %.4f -> %.4f tuned (%d combinations, %.1f s; %s)",
                 result.default.hmean, result.tuned_scores["hmean"], len(result.trials), result.seconds,
                 result.files[0])
        if logger:
            log_to_wandb(result, logger.experiment)
        return result.tuned_metrics

    return tune
