"""`tune-postprocess`: search post-processing parameters on a run's cached validation maps.

Writes `RUN/tuned_postprocess.txt` (Hydra overrides) and `RUN/tune_postprocess.json` (every trial), logs
`val/cleval_hmean_tuned` and the tuned values to the run's W&B run when one is attached, and optionally
draws overlays of the run's own and the tuned post-processing on chosen validation images.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocr.sweep.hydra_check import discrete_values
from ocr.training.logged import cleval_name
from ocr.tuning.cache import load_val_cache
from ocr.tuning.evaluate import CacheEvaluator, Check
from ocr.tuning.runs import load_run_config, load_run_metrics, resolve_run
from ocr.tuning.search import Trial, best_trial, run_search
from ocr.tuning.space import PREFIX, default_config_path, overrides, read_yaml, search_config
from ocr.tuning.tuned import run_params, write_tuned
from ocr.utils.errors import UserError, is_finite_number

RESULT_FILE = "tune_postprocess.json"


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
    check: Check
    tuned: dict[str, Any]
    improved: bool
    seconds: float
    files: list[Path] = field(default_factory=list)

    @property
    def swept(self) -> list[str]:
        """The Hydra keys the search varied, sorted."""
        return sorted(self.space)

    @property
    def swept_keys(self) -> list[str]:
        """The post-processing argument names the search varied."""
        return [name.removeprefix(PREFIX) for name in self.swept]

    @property
    def tuned_scores(self) -> dict[str, float]:
        """The scores of the saved parameters, as the direct path (validation's) computes them."""
        return self.check.scores if self.improved else self.default.scores


def range_ends(spec: dict[str, Any]) -> tuple[float, float] | None:
    """(lowest, highest) value an engine parameter can take, or None when it is not a numeric range."""
    ends = discrete_values(spec) or [spec[k] for k in ("min", "max") if k in spec]
    if len(ends) < 2 or not all(is_finite_number(v) for v in ends) or min(ends) == max(ends):
        return None
    return min(ends), max(ends)


def edges_reached(result: TuneResult) -> list[tuple[str, Any, str]]:
    """(key, tuned value, "min" or "max") for each swept parameter whose tuned value is an end of its searched range
    that could be widened (DBPostProcessor accepts values beyond it); empty when the search kept the run's values."""
    from ocr.postprocess.db_postprocess import DBPostProcessor

    if not result.improved:
        return []
    found = []
    for name, spec in sorted(result.space.items()):
        key, ends = name.removeprefix(PREFIX), range_ends(spec)
        if ends is None:
            continue
        value = result.tuned[key]
        for end, side, sign in ((ends[0], "min", -1), (ends[1], "max", 1)):
            if not np.isclose(value, end, rtol=0, atol=1e-9):
                continue
            step = 1 if isinstance(value, int) else 1e-6  # one step beyond the end
            try:
                DBPostProcessor(**{**result.tuned, key: value + sign * step})
            except UserError:
                continue
            found.append((key, value, side))
    return found


def _json_ready(trial: Trial) -> dict[str, Any]:
    return {"values": trial.values, "scores": trial.scores}


def search(
    run_dir: Path,
    method: str | None,
    count: int,
    config_path: Path | None,
    workers: int,
    seed: int | None,
    progress: Callable[[int], Callable[[int], None]] | None = None,
) -> TuneResult:
    """Run the search and write the result files (no W&B, no overlays).

    `progress(total)` returns a callback advanced by the number of combinations scored.
    """
    cfg = load_run_config(run_dir)
    defaults = run_params(cfg)
    config_path = Path(config_path) if config_path else default_config_path()
    config = search_config(read_yaml(config_path), str(config_path), set(defaults), method, grid_count=count)
    check_values(config, defaults, str(config_path))
    start = time.perf_counter()
    with CacheEvaluator(run_dir, workers) as evaluator:
        default = Trial({}, evaluator.evaluate([defaults])[0])
        trials = run_search(config, count, defaults, evaluator.evaluate, seed=seed, progress=progress)
        best = best_trial(trials)
        check = evaluator.check({**defaults, **best.values})
    seconds = time.perf_counter() - start
    improved = best.hmean > default.hmean
    tuned = {**defaults, **best.values} if improved else defaults
    metrics = {k: float(v) for k, v in load_run_metrics(run_dir).items() if k.startswith("val/cleval") and v is not None}
    result = TuneResult(
        run_dir, config["method"], config_path, config["parameters"], evaluator.n_images, metrics,
        default, trials, best, check, tuned, improved, seconds,
    )
    result.files = write_results(result)
    return result


def check_values(config: dict[str, Any], defaults: dict[str, Any], where: str) -> None:
    """Refuse listed values and range ends that DBPostProcessor rejects (e.g. thresh above 1), before any work."""
    from ocr.postprocess.db_postprocess import DBPostProcessor

    for name, spec in config["parameters"].items():
        ends = [spec[k] for k in ("min", "max") if k in spec and "log" not in str(spec.get("distribution", ""))]
        for value in [*discrete_values(spec), *ends]:
            try:
                DBPostProcessor(**{**defaults, name.removeprefix(PREFIX): value})
            except UserError as err:
                raise UserError(f"{where}: parameter {name!r}: {err}") from None
            except TypeError:
                raise UserError(f"{where}: parameter {name!r}: {value!r} is not a valid value") from None


def write_results(result: TuneResult) -> list[Path]:
    """`tuned_postprocess.txt` and `tune_postprocess.json` in the run directory."""
    scores = result.tuned_scores
    header = [
        f"tune-postprocess: {result.method}, {len(result.trials)} combinations on {result.n_images} cached validation images",
        f"val/cleval_hmean_tuned={scores['hmean']:.6f} (run's own post-processing on the cache: {result.default.hmean:.6f})",
        "use: python -m ocr.train $(grep -v '^#' tuned_postprocess.txt)   or   predict --postprocess tuned",
    ]
    if not result.improved:
        header.append("no combination beat the run's own post-processing: these are its own values")
    txt = write_tuned(result.run_dir, {k: result.tuned[k] for k in result.swept_keys}, header)
    summary = {
        "method": result.method,
        "config": str(result.config_path),
        "swept": result.swept,
        "images": result.n_images,
        "seconds": result.seconds,
        "run_metrics": result.run_metrics,
        "default": {"values": {}, "scores": result.default.scores},
        "best": _json_ready(result.best),
        "improved": result.improved,
        "tuned": result.tuned,
        "tuned_overrides": overrides({k: result.tuned[k] for k in result.swept_keys}),
        "direct_check": asdict(result.check),
        "trials": [_json_ready(t) for t in result.trials],
    }
    path = result.run_dir / RESULT_FILE
    path.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return [txt, path]


def log_to_wandb(result: TuneResult, run: Any) -> None:
    """Log the tuned hmean (and recall/precision), the tuned values and a table of trials to `run`."""
    import wandb

    scores = result.tuned_scores
    logged = {cleval_name(k, tuned=True): v for k, v in scores.items()}
    logged.update({f"tuned/{k}": v for k, v in result.tuned.items()})
    columns = [*result.swept, "hmean", "recall", "precision"]
    rows = [[t.values.get(k.removeprefix(PREFIX)) for k in result.swept] + [t.hmean, t.scores["recall"], t.scores["precision"]]
            for t in result.trials]
    run.log({**logged, "tuned/trials": wandb.Table(columns=columns, data=rows)})
    run.summary.update(logged)
    run.config.update({"tuned_postprocess": result.tuned}, allow_val_change=True)


def cached_overlays(run_dir: Path, data: Path | None, names: list[str], params_by_label: dict[str, dict[str, Any]]):
    """{label: [(name, RGB overlay)]} for cached validation images post-processed with each parameter set."""
    from ocr.data.dataset import ReceiptDataset
    from ocr.postprocess.db_postprocess import DBPostProcessor
    from ocr.tuning.inference import dataset_root
    from ocr.tuning.overlays import render

    cfg = load_run_config(run_dir)
    images = {im.name: im for im in load_val_cache(run_dir).images}
    dataset = ReceiptDataset(dataset_root(cfg, data), "val", int(cfg.image_size))
    out = {}
    for label, params in params_by_label.items():
        post = DBPostProcessor(**params)
        out[label] = []
        for name in names:
            image = images[name]
            polygons, _ = post(np.asarray(image.prob, np.float32), image.scale, image.orig_hw)
            out[label].append((name, render(dataset, name, polygons)))
    return out


def resolve_run_dir(path: Path) -> Path:
    """The run directory of a run path or checkpoint path (the cache lives there)."""
    run_dir = resolve_run(path).run_dir
    load_run_config(run_dir)  # a clear error when it is not a run directory
    return run_dir

