"""Decisions of the embedded controller under the sweep's lock: reap trials whose agent died, reserve the next one.
A process is known by host, pid and start time (/proc, Linux), so a reused pid is not taken for it."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from ocr.sweep.engine import exhausted, suggest
from ocr.sweep.spec import best_value, target_reached
from ocr.sweep.store import LocalSweep, Trial
from ocr.utils.compat import generate_id

HEARTBEAT_TIMEOUT_S = 120.0  # an agent on another host that has not written for this long is taken as dead
MAX_RESUMES = 2  # an interrupted trial is started again at most this often, then left interrupted
METRICS_FILE = "metrics.jsonl"
STOP_FILE = "STOP"
RERUN_STATES = ("failed", "crashed")
RESUME_ENV = "OCR_RESUME"  # set to 1 for a resumed trial: `python -m ocr.train` continues from its last checkpoint


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3 (state) onwards of /proc/<pid>/stat, or None where there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # the name in (...) may hold spaces


def identity(pid: int | None = None) -> dict[str, Any]:
    """Host, pid and start time (clock ticks since boot; None without /proc) of process `pid` (default: this one)."""
    pid = os.getpid() if pid is None else pid
    fields = _stat_fields(pid)
    return {"host": socket.gethostname(), "pid": pid, "started": fields[19] if fields else None}


def is_alive(ident: dict[str, Any]) -> bool | None:
    """True/False for a process on this host; None when it ran on another host (liveness unknown here)."""
    if not ident or ident.get("host") != socket.gethostname():
        return None
    pid = int(ident["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is None:
        return not Path("/proc").is_dir()  # no /proc: the pid answering is all we know
    return fields[0] not in ("Z", "X") and (ident.get("started") is None or fields[19] == ident["started"])


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Epoch records and the final record (`{"final": true, ...}`) of a metrics file, whole lines only. A
    `{"restart": true, "from_epoch": n}` line drops the epochs from n on (n absent: all, an out-of-memory retry;
    n > 0: a resume from the checkpoint of epoch n - 1)."""
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
        if record.get("restart"):
            history = [h for h in history if h.get("epoch", 0) < record.get("from_epoch", 0)]
        elif record.pop("final", False):
            final = record
        else:
            history.append(record)
    return history, final


def reap(sweep: LocalSweep, trials: list[Trial], now: float) -> list[Trial]:
    """Mark active trials whose agent died (dead pid here, stale heartbeat elsewhere) as crashed, keeping what
    they logged; kill their orphaned process group."""
    reaped = []
    for trial in trials:
        alive = is_alive(trial.agent) if trial.active else True
        if alive or (alive is None and now - trial.heartbeat <= HEARTBEAT_TIMEOUT_S):
            continue
        if is_alive(trial.process):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(int(trial.process["pid"]), signal.SIGKILL)
        trial.history, trial.summary = read_metrics(sweep.trial_dir(trial.run_id) / METRICS_FILE)
        trial.state, trial.ended = "crashed", now
        trial.note = f"agent pid {trial.agent.get('pid')} on {trial.agent.get('host')} died"
        reaped.append(trial)
    return reaped


def why_no_more(sweep: LocalSweep, trials: list[Trial]) -> str | None:
    """Why the sweep must not start another trial (target met, run_cap reached), or None."""
    for trial in trials:
        value = best_value(sweep.config, [*trial.history, trial.summary])
        if target_reached(sweep.config, value):
            return f"metric target {sweep.config['metric']['target']} reached by {trial.run_id} ({value:.4f})"
    cap = sweep.config.get("run_cap")
    if cap is not None and sum(not t.interrupted for t in trials) >= cap:
        return f"run_cap {cap} reached"
    return None


def _new_trial(trials: list[Trial], params: dict[str, Any], agent: dict[str, Any], now: float, **extra: Any) -> Trial:
    run_id = generate_id()
    while any(t.run_id == run_id for t in trials):
        run_id = generate_id()
    number = max((t.number for t in trials), default=0) + 1
    trial = Trial(run_id, number, params, agent=agent, created=now, heartbeat=now, **extra)
    trials.append(trial)
    return trial


def reserve(sweep: LocalSweep, agent: dict[str, Any], rerun: bool = False) -> tuple[Trial | None, list[Trial], str]:
    """Atomically: reap dead trials, then reserve for `agent` an interrupted trial to resume (same run id and
    directory: training continues from its last checkpoint) or else the next suggestion; with `rerun`, a new trial
    with the parameters of the first failed or crashed trial that neither is nor has a rerun (run_cap and the metric
    target do not hold reruns back). Returns (the pending trial or None, the trials reaped, why there is none)."""
    with sweep.transaction() as trials:
        now = time.time()
        reaped = reap(sweep, trials, now)
        rerun_ids = {t.rerun_of for t in trials}
        if rerun:
            original = next((t for t in trials if t.state in RERUN_STATES and not t.rerun_of
                             and t.run_id not in rerun_ids), None)
            if original is None:
                return None, reaped, "no failed or crashed trial left to rerun"
            return _new_trial(trials, original.params, agent, now, rerun_of=original.run_id), reaped, ""
        reason = why_no_more(sweep, trials)
        if reason:
            return None, reaped, reason
        # an interrupted trial that hyperband did not stop, resumed under MAX_RESUMES times, that no rerun replaces
        trial = next((t for t in trials if t.interrupted and not t.stopped and t.resumes < MAX_RESUMES
                      and t.run_id not in rerun_ids), None)
        if trial is not None:
            trial.state, trial.agent, trial.heartbeat, trial.resumes = "pending", agent, now, trial.resumes + 1
            trial.exitcode, trial.ended, trial.note = None, None, f"resumed after: {trial.note or 'interrupted'}"
            return trial, reaped, ""
        suggestion = suggest(sweep.config, trials)
        if suggestion is None:
            return None, reaped, exhausted(sweep.config, trials)
        params, info = suggestion
        return _new_trial(trials, params, agent, now, search_info=info), reaped, ""
