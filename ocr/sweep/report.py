"""What users read: progress lines, the leaderboard, and the best trial as Hydra overrides."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

from ocr.sweep.command import Params, trial_command
from ocr.sweep.engine import best_value
from ocr.sweep.spec import maximize, metric_name
from ocr.sweep.trial import INTERRUPTED_STATES, Trial

PARAMS_WIDTH = 100


def short_key(key: str) -> str:
    """Last part of a dotted Hydra key (`models.encoder.model_name` -> `model_name`)."""
    return key.rsplit(".", 1)[-1]


def short_metric(config: dict[str, Any]) -> str:
    """Last part of the metric's name (`val/cleval_hmean` -> `cleval_hmean`)."""
    return metric_name(config).rsplit("/", 1)[-1]


def fmt_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def fmt_metric(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def varying(config: dict[str, Any]) -> list[str]:
    """The parameters that take more than one value in this sweep (the ones worth showing per trial)."""
    return [k for k, spec in config["parameters"].items() if "value" not in spec]


def short_params(config: dict[str, Any], params: Params, width: int = PARAMS_WIDTH) -> str:
    """`key=value` for the varying parameters, short keys, cut to `width` characters."""
    text = " ".join(f"{short_key(k)}={fmt_value(params[k]['value'])}" for k in varying(config) if k in params)
    return text if len(text) <= width else text[: width - 1] + "…"


def epoch_line(config: dict[str, Any], trial: Trial, record: dict[str, Any]) -> str:
    value = record.get(metric_name(config))
    shown = fmt_metric(value) if isinstance(value, (int, float)) else "-"
    epoch = record.get("epoch")
    number = epoch + 1 if isinstance(epoch, int) else "?"  # Lightning counts from 0; people (and ocr.train) from 1
    return f"  {trial.run_id} epoch {number}: {short_metric(config)} {shown}"


def stop_line(config: dict[str, Any], trial: Trial) -> str:
    return (
        f"  {trial.run_id} hyperband: below the band threshold after {len(trial.history)} epochs "
        f"(best {short_metric(config)} {fmt_metric(best_value(config, trial))}); asked to stop at its next epoch end"
    )


def trial_tag(config: dict[str, Any], trial: Trial, counted: int) -> str:
    """`N/CAP`, or `N (K/CAP of run_cap)` once interrupted trials (which run_cap does not count) were replaced;
    `counted` is K, this trial's place among the trials run_cap counts."""
    cap = config.get("run_cap")
    if not cap:
        return str(trial.number)
    return f"{trial.number}/{cap}" if counted == trial.number else f"{trial.number} ({counted}/{cap} of run_cap)"


def counted_place(trial: Trial, trials: list[Trial]) -> int:
    """How many trials run_cap counts up to and including `trial` (interrupted ones are not counted)."""
    return sum(1 for t in trials if t.number <= trial.number and not t.interrupted)


def progress_line(config: dict[str, Any], trial: Trial, counted: int | None = None) -> str:
    """One line per finished trial: number, id, state, best metric, epochs, time, parameters."""
    number = trial_tag(config, trial, trial.number if counted is None else counted)
    seconds = trial.ended - trial.started if trial.ended and trial.started else None
    return (
        f"trial {number} {trial.run_id} {trial.label:<8} {short_metric(config)} "
        f"{fmt_metric(best_value(config, trial))}  epochs {len(trial.history)}  {fmt_duration(seconds)}  "
        f"{short_params(config, trial.params)}"
    )


@dataclass(frozen=True)
class Row:
    """One trial as the leaderboard shows it, whether from the local store or from W&B."""

    run_id: str
    state: str
    value: float | None
    epochs: int | None
    seconds: float | None
    params: Params


def rows_from_trials(config: dict[str, Any], trials: list[Trial]) -> list[Row]:
    return [
        Row(
            t.run_id,
            t.label,
            best_value(config, t),
            len(t.history),
            t.ended - t.started if t.ended and t.started else None,
            t.params,
        )
        for t in trials
    ]


def ranked(config: dict[str, Any], rows: list[Row], complete: bool = False) -> list[Row]:
    """Rows with a metric value, best first (with `complete`, none that was interrupted before its end)."""
    scored = [r for r in rows if r.value is not None and math.isfinite(r.value)
              and not (complete and r.state in INTERRUPTED_STATES)]
    return sorted(scored, key=lambda r: r.value, reverse=maximize(config))


def leaderboard(config: dict[str, Any], rows: list[Row], top: int = 10) -> str:
    """A table of the `top` best trials, then a count of those without a metric."""
    best = ranked(config, rows)[:top]
    head = f"{'#':>3}  {'run':<10} {'state':<9} {short_metric(config):>12} {'epochs':>6} {'time':>7}  parameters"
    lines = [head, "-" * len(head)]
    for i, r in enumerate(best, 1):
        epochs = "-" if r.epochs is None else r.epochs
        lines.append(
            f"{i:>3}  {r.run_id:<10} {r.state:<9} {fmt_metric(r.value):>12} {epochs:>6} "
            f"{fmt_duration(r.seconds):>7}  {short_params(config, r.params)}"
        )
    unscored = len(rows) - len(ranked(config, rows))
    if unscored:
        lines.append(
            f"({unscored} trial(s) without a {metric_name(config)} value: pending, running, failed, killed or crashed)"
        )
    return "\n".join(lines)


def best_command(config: dict[str, Any], row: Row) -> str:
    """The command that retrains the best trial: the sweep's command with its Hydra overrides."""
    argv = trial_command(config, row.params)
    if argv and argv[0] == "/usr/bin/env":
        argv = argv[1:]
    return shlex.join(argv)


def best_summary(config: dict[str, Any], rows: list[Row]) -> str:
    """The best trial's metric and the command (Hydra overrides) that reproduces its configuration."""
    best = ranked(config, rows, complete=True)
    if not best:
        return f"no trial that ran to its end has a {metric_name(config)} value yet"
    top = best[0]
    return (
        f"best: {metric_name(config)} = {fmt_metric(top.value)} (run {top.run_id}); reproduce with:\n"
        f"  {best_command(config, top)}"
    )
