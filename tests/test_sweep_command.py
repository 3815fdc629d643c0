"""A trial is launched exactly as `wandb agent` launches it: same argv, same parameter file, and it works offline."""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

import pytest
import wandb.wandb_agent as wandb_agent
from test_sweep_support import REPO, agent_env, fake_sweep_config, write_fake_project

from ocr.sweep.engine import suggest, trial_command
from ocr.sweep.local_agent import trial_env
from ocr.sweep.spec import load_sweep_config
from ocr.sweep.store import Trial, create_sweep
from ocr.utils.compat import sweep_macros, write_param_file


class CapturedProcess:
    """Stands in for wandb's AgentProcess: records the command instead of starting it."""

    last: dict = {}

    def __init__(self, env=None, command=None, function=None, run_id=None, in_jupyter=None, forward_signals=False):
        CapturedProcess.last = {"command": command, "env": env}


def wandb_agent_launch(monkeypatch: pytest.MonkeyPatch, config: dict, params: dict, run_id: str) -> dict:
    """Run wandb's own `Agent._command_run` for a 'run' command from the server; return what it would start."""
    monkeypatch.setattr(wandb_agent, "AgentProcess", CapturedProcess)
    monkeypatch.setenv("WANDB_RUN_ID", "placeholder")  # _command_run writes these into os.environ; restore after
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", "placeholder")
    agent = wandb_agent.Agent(api=None, queue=None, sweep_id="sweep1")
    agent._sweep_command = list(config["command"])  # what Agent.run() reads from the server's sweep config
    agent._command_run({"type": "run", "run_id": run_id, "program": config["program"], "args": params})
    return CapturedProcess.last


@pytest.mark.parametrize("path", ["sweep_config.yaml", "sweep_configs/demo_cpu.yaml"])
def test_trial_argv_and_param_file_match_wandb_agent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, path: str
) -> None:
    config = load_sweep_config(REPO / path)
    params, _ = suggest(config, [])
    launched = wandb_agent_launch(monkeypatch, config, params, "run0001")
    assert trial_command(config, params) == launched["command"]
    assert launched["command"][:4] == ["/usr/bin/env", "python", "-m", "ocr.train"]
    agent_file = Path(launched["env"]["WANDB_SWEEP_PARAM_PATH"])
    ours = tmp_path / "ours.yaml"
    write_param_file(ours, params)
    assert ours.read_text() == agent_file.read_text()


def test_the_engines_gp_convergence_warnings_stay_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    import sweeps
    from sklearn.exceptions import ConvergenceWarning

    config, real = load_sweep_config(REPO / "sweep_config.yaml"), sweeps.next_run

    def warning_next_run(*args, **kwargs):
        warnings.warn("length_scale is close to the specified lower bound", ConvergenceWarning)
        warnings.warn("something else", UserWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(sweeps, "next_run", warning_next_run)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert suggest(config, []) is not None
    assert [w.category for w in seen] == [UserWarning]  # only the GP's are silenced


def test_overrides_keep_types_hydra_reads_back() -> None:
    params = {"a.b": {"value": 0.0013359}, "n": {"value": 8}, "flag": {"value": True}, "opt": {"value": "adamw"}}
    overrides = sweep_macros(params)["args_no_hyphens"]  # what ${args_no_hyphens} expands to
    assert overrides == ["a.b=0.0013359", "n=8", "flag=True", "opt=adamw"]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    assert [o.value() for o in parsed] == [0.0013359, 8, True, "adamw"]


def test_trial_runs_offline_with_the_agent_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The launched program sees W&B's sweep parameters through wandb.init() offline, and no sweep id."""
    project, _ = write_fake_project(tmp_path)
    config = fake_sweep_config({"x": {"values": [0.7]}, "trainer.max_epochs": {"value": 2}})
    sweep = create_sweep(tmp_path / "store", config, "demo-project", None)
    trial = Trial(run_id="abcd1234", number=1, params={"x": {"value": 0.7}, "trainer.max_epochs": {"value": 2}})
    param_file = sweep.trial_dir(trial.run_id) / "config-abcd1234.yaml"
    write_param_file(param_file, trial.params)
    for key, value in {**agent_env(tmp_path), "WANDB_SWEEP_ID": "leftover", "FAKE_TRAINER_WANDB": "1"}.items():
        monkeypatch.setenv(key, value)
    env = trial_env(sweep, trial, "offline", param_file)
    done = subprocess.run(
        trial_command(config, trial.params), cwd=project.parent, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads((sweep.trial_dir(trial.run_id) / "run" / "seen.json").read_text())
    assert seen["argv"] == ["x=0.7", "trainer.max_epochs=2"]
    assert seen["mode"] == "offline" and seen["run_id"] == "abcd1234" and not seen["sweep_id_set"]
    assert seen["wandb_run_id"] == "abcd1234"
    assert seen["wandb_config"]["x"] == 0.7 and seen["wandb_config"]["untouched"] == 1  # sweep value wins, rest kept
    assert seen["project"] == "demo-project"
    assert list(tmp_path.glob("wandb/offline-run-*-abcd1234")), "an offline run for `wandb sync` exists"
    lines = [json.loads(line) for line in (sweep.trial_dir(trial.run_id) / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("epoch") for r in lines] == [0, 1, None] and lines[-1]["final"] is True


@pytest.mark.slow
def test_real_trial_through_the_embedded_controller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m ocr.train`, launched as wandb's agent would, trains offline and reports every epoch."""
    config = load_sweep_config(REPO / "sweep_configs" / "demo_cpu.yaml")
    tiny = {
        "image_size": 64,
        "batch_size": 4,
        "trainer.max_epochs": 2,
        "data.num_workers": 0,
        "metric.workers": 1,
        "data.synthetic.dir": tmp_path / "synthetic",
        "data.synthetic.n_train": 8,
        "data.synthetic.n_val": 4,
        "data.synthetic.n_test": 2,
        "cache_val_maps": "false",
        "log_val_images": 1,
    }
    program_at = config["command"].index("${program}") + 1
    kept = [c for c in config["command"][program_at:] if c.split("=", 1)[0] not in tiny]
    config["command"] = config["command"][:program_at] + [f"{k}={v}" for k, v in tiny.items()] + kept
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("DATASET_BASE_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    sweep = create_sweep(tmp_path / ".sweeps", config, "demo", None)
    lines: list[str] = []
    from ocr.sweep.local_agent import AgentOptions, run_agent

    (trial,) = run_agent(sweep, AgentOptions(count=1, poll_s=0.2), say=lines.append)
    log = (sweep.trial_dir(trial.run_id) / "output.log").read_text()
    assert trial.state == "finished", log[-3000:]
    assert [r["epoch"] for r in trial.history] == [0, 1]
    assert all("val/cleval_hmean" in r for r in trial.history), "every epoch line carries the sweep metric"
    assert "val/cleval_hmean" in trial.summary
    assert list(sweep.dir.glob(f"trials/{trial.run_id}/**/offline-run-*-{trial.run_id}")), "a W&B offline run to sync"
    from ocr.cli.sweep import sync_hint

    assert sync_hint(sweep) is not None
