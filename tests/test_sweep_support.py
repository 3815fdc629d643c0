"""Helpers for the sweep tests: a fake trainer honouring the trial contract, its Hydra config, sweep YAMLs.

The fake trainer stands in for `python -m ocr.train` where a real run would be too slow for the property
under test (locking, hyperband, resume). It parses `key=value` overrides, logs one metrics line per "epoch"
(`val/cleval_hmean` = x * epoch / epochs, `val/loss` = 1 - that), checks the stop file before each of its `steps`
an epoch, as ocr.train does, and writes what it saw to `seen.json` and the steps it trained to `steps.json`. With
`handshake=1` it waits, after logging an epoch, until the agent has recorded it (and so made its hyperband
decision), which makes the step a stop lands on deterministic. It fails at once (exit status 4) when its `x` is
listed in FAKE_TRAINER_FAIL_X (comma-separated), so a rerun without that variable succeeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

FAKE_TRAINER = """
import json, os, sys, time
from pathlib import Path

import yaml

args = dict(a.split("=", 1) for a in sys.argv[1:])
values = {k: yaml.safe_load(v) for k, v in args.items()}
x = float(values.get("x", 0.5))
epochs = int(values.get("trainer.max_epochs", 3))
pause = float(values.get("sleep", 0.0))
crash = int(values.get("crash", 0))
run_dir = Path(os.environ["OCR_RUN_DIR"])
run_dir.mkdir(parents=True, exist_ok=True)
param_path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
seen = {
    "argv": sys.argv[1:],
    "run_id": os.environ.get("WANDB_RUN_ID"),
    "mode": os.environ.get("WANDB_MODE"),
    "sweep_id_set": "WANDB_SWEEP_ID" in os.environ,
    "param_file": Path(param_path).read_text() if param_path else None,
    "project": os.environ.get("WANDB_PROJECT"),
}
if os.environ.get("FAKE_TRAINER_WANDB") == "1":
    import wandb
    run = wandb.init(config={"x": 0.0, "untouched": 1})
    seen["wandb_config"] = dict(run.config)
    seen["wandb_run_id"] = run.id
    seen["wandb_dir"] = run.dir
    run.finish()
(run_dir / "seen.json").write_text(json.dumps(seen))
if str(x) in os.environ.get("FAKE_TRAINER_FAIL_X", "").split(","):
    print("simulated failure", file=sys.stderr)
    sys.exit(4)
metrics = Path(os.environ["OCR_METRICS_FILE"])
stop = Path(os.environ["OCR_STOP_FILE"])
steps, handshake = int(values.get("steps", 1)), int(values.get("handshake", 0))
state = run_dir.parents[2] / "state.json"
meet = int(values.get("meet", 0))  # wait until this many agents hold trials (their pids in the store)


def agents():
    return {t["agent"]["pid"] for t in json.loads(state.read_text())["trials"] if t.get("agent")}


deadline = time.monotonic() + 60
while meet and len(agents()) < meet and time.monotonic() < deadline:
    time.sleep(0.01)


def recorded(epochs):
    trials = json.loads(state.read_text())["trials"]
    return any(t["run_id"] == seen["run_id"] and len(t["history"]) >= epochs for t in trials)


trained, best, stopped = [], None, False
for epoch in range(epochs):
    for step in range(steps):
        if stop.exists():
            stopped = True
            break
        time.sleep(pause / steps)
        trained.append([epoch, step])
    if stopped:
        break
    value = x * (epoch + 1) / epochs
    best = value if best is None else max(best, value)
    with metrics.open("a") as fh:
        fh.write(json.dumps({"epoch": epoch, "val/cleval_hmean": value, "val/loss": 1 - value}) + "\\n")
    if crash:
        print("simulated failure", file=sys.stderr)
        sys.exit(crash)
    deadline = time.monotonic() + 60
    while handshake and not recorded(epoch + 1) and time.monotonic() < deadline:
        time.sleep(0.01)
(run_dir / "steps.json").write_text(json.dumps(trained))
with metrics.open("a") as fh:
    fh.write(json.dumps({"final": True, "val/cleval_hmean": best, "val/loss": 1 - (best or 0)}) + "\\n")
"""

FAKE_TRAIN_CONFIG = """
defaults:
  - optimizer: adam
  - _self_
x: 0.5
sleep: 0.0
crash: 0
steps: 1
handshake: 0
meet: 0
trainer:
  max_epochs: 3
models:
  encoder:
    model_name: hrnet_w18
"""


def write_fake_project(root: Path) -> tuple[Path, Path]:
    """`fake_train.py` (the trial program) and a Hydra config dir describing its keys; returns both."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "fake_train.py").write_text(FAKE_TRAINER)
    configs = root / "configs"
    (configs / "optimizer").mkdir(parents=True, exist_ok=True)
    (configs / "train.yaml").write_text(FAKE_TRAIN_CONFIG)
    (configs / "optimizer" / "adam.yaml").write_text("lr: 0.001\n")
    (configs / "optimizer" / "adamw.yaml").write_text("lr: 0.001\n")
    return root / "fake_train.py", configs


def fake_sweep_config(parameters: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A sweep YAML (as a dict) whose trials run the fake trainer."""
    config = {
        "program": "fake_train",
        "command": ["${env}", "${interpreter}", "-m", "${program}", "${args_no_hyphens}"],
        "method": "grid",
        "metric": {"name": "val/cleval_hmean", "goal": "maximize"},
        "parameters": parameters,
    }
    config.update(top)
    return config


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def agent_env(project_dir: Path) -> dict[str, str]:
    """Environment for agent processes: the fake trainer importable, no W&B server, no API key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "OCR_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(project_dir), str(REPO)]),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        HOME=str(project_dir),  # no ~/.netrc key
    )
    return env


AGENT_SNIPPET = """
import sys
from pathlib import Path
from ocr.sweep.local_agent import AgentOptions, run_agent
from ocr.sweep.store import open_sweep
sweep = open_sweep(Path(sys.argv[1]), sys.argv[2])
count = int(sys.argv[3]) if sys.argv[3] != "none" else None
rerun = sys.argv[4:] == ["rerun"]
run_agent(sweep, AgentOptions(count=count, poll_s=0.05, rerun=rerun), say=lambda line: print(line, flush=True))
"""


def start_agent(project_dir: Path, store: Path, sweep_id: str, count: int | None, rerun: bool = False,
                **env: str) -> subprocess.Popen:
    """An agent process on a local sweep, polling fast (cwd = project_dir, so `python -m fake_train` works), running
    only reruns of failed trials with `rerun`; `env` adds to or replaces its environment."""
    return subprocess.Popen(
        [sys.executable, "-c", AGENT_SNIPPET, str(store), sweep_id, str(count) if count else "none",
         *(["rerun"] if rerun else [])],
        cwd=project_dir,
        env={**agent_env(project_dir), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(predicate, timeout: float = 60.0, every: float = 0.05) -> None:
    """Poll `predicate` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(every)
