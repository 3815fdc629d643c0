"""Decisions of the embedded controller, made under the sweep's lock: reap dead trials, reserve the next one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ocr.sweep import procs
from ocr.sweep.engine import best_value, suggest
from ocr.sweep.spec import target_reached
from ocr.sweep.store import LocalSweep
from ocr.sweep.trial import Trial

HEARTBEAT_TIMEOUT_S = 120.0  # an agent on another host that has not written for this long is taken as dead
METRICS_FILE = "metrics.jsonl"
STOP_FILE = "STOP"


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Epoch records and the final record (`{"final": true, ...}`) of a metrics file; whole lines only."""
    history: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return history, final
    for line in text.split("\n")[:-1]:  # the part after the last newline may still be being written
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        if record.pop("final", False):
            final = record
        else:
            history.append(record)
    return history, final


def agent_is_dead(trial: Trial, now: float) -> bool:
    """True when the agent that reserved `trial` is gone (dead pid here, or a stale heartbeat elsewhere)."""
    alive = procs.is_alive(trial.agent)
    if alive is None:
        return now - trial.heartbeat > HEARTBEAT_TIMEOUT_S
    return not alive


def reap(sweep: LocalSweep, trials: list[Trial], now: float) -> list[Trial]:
    """Mark active trials whose agent died as crashed (keeping what they logged); kill their orphaned process."""
    reaped = []
    for trial in trials:
        if trial.active and agent_is_dead(trial, now):
            procs.kill_group(trial.process)
            trial.history, trial.summary = read_metrics(sweep.trial_dir(trial.run_id) / METRICS_FILE)
            trial.state, trial.ended = "crashed", now
            trial.note = f"agent pid {trial.agent.get('pid')} on {trial.agent.get('host')} died"
            reaped.append(trial)
    return reaped


def why_no_more(sweep: LocalSweep, trials: list[Trial]) -> str | None:
    """Why the sweep must not start another trial (target met, run_cap reached), or None."""
    for trial in trials:
        value = best_value(sweep.config, trial)
        if target_reached(sweep.config, value):
            return f"metric target {sweep.config['metric']['target']} reached by {trial.run_id} ({value:.4f})"
    cap = sweep.run_cap
    if cap is not None and sum(not t.interrupted for t in trials) >= cap:
        return f"run_cap {cap} reached"
    return None


def reserve(sweep: LocalSweep, agent: dict[str, Any]) -> tuple[Trial | None, list[Trial], str]:
    """Atomically: reap dead trials, then reserve the next suggestion for `agent`.

    Returns (the new pending trial or None, the trials reaped, why there is none).
    """
    from wandb.sdk.lib.runid import generate_id

    with sweep.transaction() as trials:
        now = time.time()
        reaped = reap(sweep, trials, now)
        reason = why_no_more(sweep, trials)
        if reason:
            return None, reaped, reason
        suggestion = suggest(sweep.config, trials)
        if suggestion is None:
            return None, reaped, "the grid is exhausted"
        params, info = suggestion
        taken = {t.run_id for t in trials}
        run_id = generate_id()
        while run_id in taken:
            run_id = generate_id()
        trial = Trial(
            run_id=run_id,
            number=max((t.number for t in trials), default=0) + 1,
            params=params,
            search_info=info,
            agent=agent,
            created=now,
            heartbeat=now,
        )
        trials.append(trial)
        return trial, reaped, ""
