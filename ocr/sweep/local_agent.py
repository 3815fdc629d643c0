"""An agent of the embedded controller: reserve a suggestion, run it as `wandb agent` would, watch, record.
Each trial is its own process (own process group, stdin closed, on the agent's interpreter), so a crash or an
out-of-memory error never ends the agent nor leaves GPU memory to the next trial."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ocr.sweep.controller import METRICS_FILE, RESUME_ENV, STOP_FILE, identity, read_metrics, reserve
from ocr.sweep.engine import runs_to_stop, trial_command
from ocr.sweep.report import epoch_line, progress_line, stop_line, trial_tag
from ocr.sweep.store import LocalSweep, Trial
from ocr.utils.compat import agent_max_initial_failures, write_param_file
from ocr.utils.display import shown_path

HEARTBEAT_EVERY_S = 10.0
MAX_INITIAL_FAILURES = 5  # wandb agent's default; WANDB_AGENT_MAX_INITIAL_FAILURES overrides it, as for wandb
TERM_GRACE_S = 10.0  # after SIGTERM, how long a trial may take to exit before SIGKILL
OUTPUT_TAIL_LINES = 5


@dataclass(frozen=True)
class AgentOptions:
    """How an agent runs: at most `count` trials (None: until the sweep says stop), W&B mode of its trials."""
    count: int | None = None
    wandb_mode: str = "offline"
    poll_s: float = 1.0
    devices: int = 1  # devices per trial: > 1 adds `trainer.devices=N` unless the sweep's command sets it
    rerun: bool = False  # run only reruns of failed and crashed trials


def trial_env(sweep: LocalSweep, trial: Trial, mode: str, param_file: Path) -> dict[str, str]:
    """The agent's environment plus what a trial needs: W&B run id and parameters, and our file contract."""
    tdir = sweep.trial_dir(trial.run_id)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SWEEP_ID"}  # no W&B sweep to point `wandb sync` at
    env.update(WANDB_MODE=mode, WANDB_RUN_ID=trial.run_id, WANDB_SWEEP_PARAM_PATH=str(param_file.resolve()),
               WANDB_PROJECT=sweep.project, OCR_METRICS_FILE=str((tdir / METRICS_FILE).resolve()),
               OCR_STOP_FILE=str((tdir / STOP_FILE).resolve()), OCR_RUN_DIR=str((tdir / "run").resolve()))
    if sweep.entity:
        env["WANDB_ENTITY"] = sweep.entity
    if trial.resumes:
        env[RESUME_ENV] = "1"
    return env


def trial_argv(sweep: LocalSweep, trial: Trial, devices: int = 1) -> list[str]:
    """The trial's command on this interpreter, with `trainer.devices=N` for N > 1 devices unless it has one."""
    argv = trial_command(sweep.config, trial.params, interpreter=sys.executable)
    if devices > 1 and not any(arg.lstrip("-+").startswith("trainer.devices=") for arg in argv):
        argv.append(f"trainer.devices={devices}")
    return argv


def start_trial(sweep: LocalSweep, trial: Trial, mode: str, devices: int = 1) -> subprocess.Popen:
    """Start the trial's process, its output going to `output.log` in the trial folder."""
    tdir = sweep.trial_dir(trial.run_id)
    tdir.mkdir(parents=True, exist_ok=True)
    param_file = tdir / f"config-{trial.run_id}.yaml"
    write_param_file(param_file, trial.params)
    argv = trial_argv(sweep, trial, devices)
    (tdir / "command.txt").write_text(shlex.join(argv) + "\n", encoding="utf-8")
    with (tdir / "output.log").open("ab") as log:
        proc = subprocess.Popen(argv, env=trial_env(sweep, trial, mode, param_file), stdin=subprocess.PIPE,
                                stdout=log, stderr=subprocess.STDOUT, process_group=0)
    proc.stdin.close()
    return proc


@contextmanager
def _changing(sweep: LocalSweep, run_id: str) -> Iterator[tuple[Trial, list[Trial]]]:
    """Under the sweep's lock: trial `run_id` and every trial, saved when the block ends."""
    with sweep.transaction() as trials:
        yield next(t for t in trials if t.run_id == run_id), trials


def _stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM the trial's process group, then SIGKILL it if it has not exited after a grace period."""
    for sig, wait in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


def watch_trial(sweep: LocalSweep, trial: Trial, proc: subprocess.Popen, opts: AgentOptions, say: Callable) -> Trial:
    """Poll the trial until it exits: record epochs and heartbeat; ask hyperband at each new epoch whether to stop it
    (the trial sees the stop file before its next training step)."""
    tdir = sweep.trial_dir(trial.run_id)
    seen, last_beat = 0, 0.0
    while True:
        exitcode = proc.poll()
        history, final = read_metrics(tdir / METRICS_FILE)
        now = time.time()
        if len(history) != seen or now - last_beat >= HEARTBEAT_EVERY_S or exitcode is not None:  # fewer: a retry
            with _changing(sweep, trial.run_id) as (trial, trials):
                trial.history, trial.summary, trial.heartbeat = history, final, now
                stop = exitcode is None and not trial.stopped and trial.run_id in runs_to_stop(sweep.config, trials)
                if stop:
                    (tdir / STOP_FILE).touch()
                    trial.stopped = True
            for record in history[seen:]:
                say(epoch_line(sweep.config, trial, record))
            if stop:
                say(stop_line(sweep.config, trial))
            seen, last_beat = len(history), now
        if exitcode is not None:
            return trial
        with suppress(subprocess.TimeoutExpired):  # an exit ends the wait at once
            proc.wait(timeout=opts.poll_s)


def run_one(sweep: LocalSweep, trial: Trial, opts: AgentOptions, say: Callable) -> Trial:
    """Run a reserved trial to its end (or until the agent is interrupted) and record the outcome."""
    proc = start_trial(sweep, trial, opts.wandb_mode, opts.devices)
    try:
        with _changing(sweep, trial.run_id) as (trial, _):
            trial.state, trial.process, trial.started = "running", identity(proc.pid), time.time()
            trial.heartbeat = trial.started
        trial = watch_trial(sweep, trial, proc, opts, say)
    except KeyboardInterrupt:
        _stop_process(proc)
        with _changing(sweep, trial.run_id) as (trial, _):
            trial.state, trial.exitcode, trial.ended = "killed", proc.returncode, time.time()
        raise
    with _changing(sweep, trial.run_id) as (trial, _):  # watch_trial read its metrics after it exited
        trial.exitcode, trial.ended = proc.returncode, time.time()
        trial.state = "finished" if proc.returncode == 0 else "failed"
    say(progress_line(sweep.config, trial, sweep.trials()))
    log = sweep.trial_dir(trial.run_id) / "output.log"
    if trial.state == "failed":
        tail = log.read_text(encoding="utf-8", errors="replace").rstrip("\n").split("\n") if log.is_file() else []
        for line in tail[-OUTPUT_TAIL_LINES:]:
            say(f"    | {line}")
        say(f"    full output: {log}")
    return trial


def failing(done: list[Trial]) -> bool:
    """wandb agent's rule: give up once failures reach the limit and outnumber the trials that finished."""
    failed = sum(t.state == "failed" for t in done)
    return failed >= agent_max_initial_failures(MAX_INITIAL_FAILURES) and failed >= len(done) - failed


def exit_status(done: list[Trial]) -> int:
    """An agent's exit status: 1 when it stopped because trials kept failing or every trial it ran failed."""
    return int(bool(done) and (failing(done) or all(t.state == "failed" for t in done)))


def run_agent(
    sweep: LocalSweep, opts: AgentOptions, say: Callable[[str], None] = print, done: list[Trial] | None = None
) -> list[Trial]:
    """Run trials of `sweep` until `opts.count` is done, the sweep has no more, or trials keep failing; returns
    the trials run to their end (appended to `done` as they end, for a caller whose agent is interrupted)."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM ends the agent as Ctrl-C does
    agent = identity()
    done = [] if done is None else done
    try:
        while opts.count is None or len(done) < opts.count:
            trial, reaped, reason = reserve(sweep, agent, opts.rerun)
            for dead in reaped:
                say(f"{dead.run_id}: marked crashed ({dead.note}); its {len(dead.history)} logged epochs are kept")
            if trial is None:
                say(f"sweep {sweep.id}: {reason}; no more trials")
                break
            where = shown_path(sweep.trial_dir(trial.run_id))
            verb = ("resuming from its last checkpoint" if trial.resumes
                    else f"starting as a rerun of {trial.rerun_of}" if trial.rerun_of else "starting")
            say(f"trial {trial_tag(sweep.config, trial, sweep.trials())} {trial.run_id} {verb} (output: {where})")
            done.append(run_one(sweep, trial, opts, say))
            if failing(done):
                say(f"{len(done)} trials, most of them failed: this agent stops (see the output.log files above)")
                break
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.stdout.flush()
    return done
