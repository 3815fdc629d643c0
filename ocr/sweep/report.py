"""What users read: the preview of a sweep, progress lines, the leaderboard, the best trial as Hydra overrides."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ocr.sweep.engine import reproduce_command, suggest, trial_command
from ocr.sweep.insight import TrialRow, local_rows, varying
from ocr.sweep.spec import best_value, maximize, metric_name
from ocr.sweep.store import INTERRUPTED_STATES, Trial
from ocr.utils.errors import is_finite_number


@dataclass(frozen=True)
class Destination:
    """Where a sweep goes: W&B's server or the embedded controller, and the W&B mode of its trials."""

    backend: str  # "wandb" | "embedded"
    trial_mode: str  # "online" | "offline" | "disabled"
    project: str
    entity: str | None
    key_set: bool
    store: Path

    def describe(self) -> str:
        who = f"entity={self.entity or '(your default)'}, project={self.project}"
        key = f"W&B API key: {'set' if self.key_set else 'not set'}"
        if self.backend == "wandb":
            hint = "" if self.key_set else " (creating it would stop here: run `wandb login`, or add --offline)"
            return f"W&B server (online), {who}; {key}{hint}"
        runs = "W&B logging disabled" if self.trial_mode == "disabled" else "each trial is a W&B offline run"
        return f"embedded controller (no W&B server), store {self.store}/, {runs}; {who}; {key}"


def preview_text(config: dict[str, Any], source: str, destination: Destination, caps: str, create: str) -> str:
    """Everything the no-action mode prints; `caps` is the batch-size table, `create` the command that creates it."""
    sample = suggest(config, [])
    example = shlex.join(trial_command(config, sample[0])) if sample else "(grid is empty)"
    return "\n".join([
        f"# sweep that would be created (from {source}, after command-line and environment overrides)",
        yaml.safe_dump(config, sort_keys=False, allow_unicode=True, default_flow_style=None).rstrip(),
        "",
        f"destination: {destination.describe()}",
        f"one trial would run: {example}",
        "",
        caps,
        "",
        f"create it with:  {create}   (add --count N to also run N trials here)",
    ])


def short_metric(config: dict[str, Any]) -> str:
    """Last part of the metric's name (`val/cleval_hmean` -> `cleval_hmean`)."""
    return metric_name(config).rsplit("/", 1)[-1]


def fmt_metric(value: float | None) -> str:
    return f"{value:.4f}" if is_finite_number(value) else "-"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def short_params(config: dict[str, Any], params: dict[str, Any], width: int = 100) -> str:
    """`key=value` for the parameters the sweep varies (last part of the key, floats to 3 digits), cut to `width`."""
    shown = {k.rsplit(".", 1)[-1]: params[k] for k in varying(config) if k in params}
    text = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def epoch_line(config: dict[str, Any], trial: Trial, record: dict[str, Any]) -> str:
    epoch = record.get("epoch")
    number = epoch + 1 if isinstance(epoch, int) else "?"  # Lightning counts from 0; people (and ocr.train) from 1
    return f"  {trial.run_id} epoch {number}: {short_metric(config)} {fmt_metric(record.get(metric_name(config)))}"


def stop_line(config: dict[str, Any], trial: Trial) -> str:
    best = fmt_metric(best_value(config, [*trial.history, trial.summary]))
    return (f"  {trial.run_id} hyperband: below the band threshold after {len(trial.history)} epochs "
            f"(best {short_metric(config)} {best}); asked to stop at its next training step")


def trial_tag(config: dict[str, Any], trial: Trial, trials: list[Trial]) -> str:
    """`N/CAP`, or `N (K/CAP of run_cap)` once interrupted trials were replaced: K is the trial's place among the
    `trials` run_cap counts (it does not count interrupted ones)."""
    cap = config.get("run_cap")
    if not cap:
        return str(trial.number)
    counted = sum(1 for t in trials if t.number <= trial.number and not t.interrupted)
    return f"{trial.number}/{cap}" if counted == trial.number else f"{trial.number} ({counted}/{cap} of run_cap)"


def progress_line(config: dict[str, Any], trial: Trial, trials: list[Trial]) -> str:
    """One line per finished trial: number, id, state, best metric, epochs, time, parameters, what it reruns."""
    (row,) = local_rows(config, [trial])
    rerun = f"  (rerun of {trial.rerun_of})" if trial.rerun_of else ""
    return (
        f"trial {trial_tag(config, trial, trials)} {row.run_id} {row.state:<8} {short_metric(config)} "
        f"{fmt_metric(row.value)}  epochs {len(row.history)}  {fmt_duration(row.seconds)}  "
        f"{short_params(config, row.params)}{rerun}"
    )


def ranked(config: dict[str, Any], rows: list[TrialRow], complete: bool = False) -> list[TrialRow]:
    """Rows with a metric value, best first (with `complete`, none that was interrupted before its end)."""
    scored = [r for r in rows if r.value is not None and not (complete and r.state in INTERRUPTED_STATES)]
    return sorted(scored, key=lambda r: r.value, reverse=maximize(config))


def reproduce(config: dict[str, Any], row: TrialRow) -> str:
    """The command line that trains the row's configuration again (as `wandb agent` would start it)."""
    return reproduce_command(config, {k: {"value": v} for k, v in row.params.items() if k in config["parameters"]})


def leaderboard(config: dict[str, Any], rows: list[TrialRow], top: int = 10) -> str:
    """A table of the `top` best trials (epochs `-` where unknown), then a count of those without a metric."""
    best = ranked(config, rows)
    head = f"{'#':>3}  {'run':<10} {'state':<9} {short_metric(config):>12} {'epochs':>6} {'time':>7}  parameters"
    lines = [head, "-" * len(head)]
    for i, r in enumerate(best[:top], 1):
        lines.append(f"{i:>3}  {r.run_id:<10} {r.state:<9} {fmt_metric(r.value):>12} {len(r.history) or '-':>6} "
                     f"{fmt_duration(r.seconds):>7}  {short_params(config, r.params)}")
    if len(rows) > len(best):
        lines.append(f"({len(rows) - len(best)} trial(s) without a {metric_name(config)} value: pending, running, "
                     "failed, killed or crashed)")
    return "\n".join(lines)


def best_summary(config: dict[str, Any], rows: list[TrialRow]) -> str:
    """The best trial's metric and the command (Hydra overrides) that reproduces its configuration."""
    best = ranked(config, rows, complete=True)
    if not best:
        return f"no trial that ran to its end has a {metric_name(config)} value yet"
    return (f"best: {metric_name(config)} = {fmt_metric(best[0].value)} (run {best[0].run_id}); reproduce with:\n"
            f"  {reproduce(config, best[0])}")
