"""The embedded controller: agents share a sweep safely, hyperband stops, run_cap/target hold, resume works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_sweep_support import REPO, agent_env, fake_sweep_config, start_agent, wait_for, write_fake_project

from ocr.sweep.controller import is_alive, read_metrics
from ocr.sweep.engine import runs_to_stop
from ocr.sweep.local_agent import AgentOptions, exit_status, run_agent, trial_argv
from ocr.sweep.insight import local_rows
from ocr.sweep.report import best_summary, leaderboard
from ocr.sweep.store import LocalSweep, Trial, create_sweep, open_sweep

HMEAN = "val/cleval_hmean"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the fake trainer; the test runs from it so `python -m fake_train` resolves."""
    write_fake_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def new_sweep(project: Path, parameters: dict, **top) -> LocalSweep:
    return create_sweep(project / ".sweeps", fake_sweep_config(parameters, **top), "test-project", None)


def run_here(sweep: LocalSweep, count: int | None = None) -> list[str]:
    lines: list[str] = []
    run_agent(sweep, AgentOptions(count=count, poll_s=0.05), say=lines.append)
    return lines


def final_x(sweep: LocalSweep) -> list[float]:
    return [t.params["x"]["value"] for t in sweep.trials()]


def test_one_agent_runs_the_grid_and_reports_the_best(project: Path) -> None:
    sweep = new_sweep(project, {"x": {"values": [0.3, 0.9, 0.6]}, "trainer.max_epochs": {"value": 2}})
    lines = run_here(sweep)
    trials = sweep.trials()
    assert [t.state for t in trials] == ["finished"] * 3 and final_x(sweep) == [0.3, 0.9, 0.6]
    assert [t.summary[HMEAN] for t in trials] == [0.3, 0.9, 0.6] and all(len(t.history) == 2 for t in trials)
    assert any(line.startswith("trial 2 ") and "finished" in line and "0.9000" in line for line in lines)
    assert lines[-1].endswith("the grid is exhausted; no more trials")
    rows = local_rows(sweep.config, trials)
    table = leaderboard(sweep.config, rows).splitlines()
    assert "0.9000" in table[2] and "x=0.9" in table[2] and "0.3000" in table[4]
    assert best_summary(sweep.config, rows).endswith("python -m fake_train trainer.max_epochs=2 x=0.9")


def test_two_agents_never_share_a_config_and_lose_no_result(project: Path) -> None:
    xs = [round(0.1 * i, 1) for i in range(1, 9)]
    sweep = new_sweep(project, {"x": {"values": xs}, "trainer.max_epochs": {"value": 2}, "meet": {"value": 2}})
    agents = [start_agent(project, project / ".sweeps", sweep.id, None) for _ in range(2)]
    outputs = [a.communicate(timeout=120)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], outputs
    trials = sweep.trials()
    assert sorted(final_x(sweep)) == xs, "every grid point exactly once, across both agents"
    assert all(t.state == "finished" and t.summary[HMEAN] == t.params["x"]["value"] for t in trials)
    assert len({t.run_id for t in trials}) == 8 and sorted(t.number for t in trials) == list(range(1, 9))
    assert len({t.agent["pid"] for t in trials}) == 2, "both agents took trials"


def test_trials_run_on_the_agents_interpreter_whatever_python_is_on_path(project: Path) -> None:
    fake_bin = project / "bin"  # the only `python` on PATH, one that cannot run a trial
    fake_bin.mkdir()
    (fake_bin / "python").write_text("#!/bin/sh\necho 'not this python' >&2\nexit 1\n")
    (fake_bin / "python").chmod(0o755)
    sweep = new_sweep(project, {"x": {"values": [0.3, 0.6]}, "trainer.max_epochs": {"value": 1}})
    agent = start_agent(project, project / ".sweeps", sweep.id, None, PATH=str(fake_bin))
    output = agent.communicate(timeout=120)[0]
    assert agent.returncode == 0 and [t.state for t in sweep.trials()] == ["finished"] * 2, output
    command = (sweep.trial_dir(sweep.trials()[0].run_id) / "command.txt").read_text().split()
    assert command[:4] == ["/usr/bin/env", sys.executable, "-m", "fake_train"]


def test_a_trial_of_several_devices_gets_trainer_devices_unless_the_sweep_sets_it(project: Path) -> None:
    plain = new_sweep(project, {"x": {"value": 0.3}})
    trial = Trial("r1", 1, {"x": {"value": 0.3}})
    assert trial_argv(plain, trial, 2)[-2:] == ["x=0.3", "trainer.devices=2"]
    assert trial_argv(plain, trial, 1)[-1] == "x=0.3"
    fixed = new_sweep(project, {"x": {"value": 0.3}, "trainer.devices": {"value": 4}})
    argv = trial_argv(fixed, Trial("r2", 1, {"x": {"value": 0.3}, "trainer.devices": {"value": 4}}), 2)
    assert [a for a in argv if "devices" in a] == ["trainer.devices=4"]


SHIPPED = ["sweep_config.yaml", "sweep_configs/demo_cpu.yaml"]
STEPS = 3  # fake training steps an epoch


def test_the_engine_checks_band_b_after_b_plus_one_logged_epochs() -> None:
    """sweeps' hyperband_stop_runs compares a running trial once `band < len(history)`: bands min_iter * eta^k."""
    config = fake_sweep_config({"x": {"values": [1]}}, early_terminate={"type": "hyperband", "min_iter": 3, "eta": 2})

    def stopped_after(epochs: int) -> bool:
        good = [Trial(f"g{i}", i, {}, state="finished", history=[{HMEAN: 0.9}] * 16) for i in range(2)]
        poor = Trial("p", 3, {}, state="running", history=[{HMEAN: 0.1}] * epochs)
        return "p" in runs_to_stop(config, [*good, poor])

    assert [n for n in range(1, 9) if stopped_after(n)][0] == 4


@pytest.mark.parametrize("shipped", SHIPPED)
@pytest.mark.parametrize("metric, goal", [(HMEAN, "maximize"), ("val/loss", "minimize")])
def test_hyperband_with_the_shipped_bands_stops_a_poor_trial_before_its_next_step(
    project: Path, shipped: str, metric: str, goal: str
) -> None:
    early = yaml.safe_load((REPO / shipped).read_text())["early_terminate"]
    decided = early["min_iter"] + 1  # logged epochs before the first band is checked
    epochs = 2 * decided
    sweep = new_sweep(project, {"x": {"values": [0.9, 0.8, 0.1]}, "trainer.max_epochs": {"value": epochs},
                                "steps": {"value": STEPS}, "handshake": {"value": 1}},
                      early_terminate=early, metric={"name": metric, "goal": goal})
    lines = run_here(sweep)
    trials = sweep.trials()

    def trained(trial: Trial) -> list[list[int]]:
        return json.loads((sweep.trial_dir(trial.run_id) / "run" / "steps.json").read_text())

    full = [[e, s] for e in range(epochs) for s in range(STEPS)]
    assert [(t.state, t.stopped, trained(t) == full) for t in trials[:2]] == [("finished", False, True)] * 2
    poor = trials[2]
    assert poor.state == "finished" and poor.stopped and poor.label == "stopped" and poor.exitcode == 0
    assert len(poor.history) == decided < epochs, "no epoch logged after the decision"
    assert trained(poor) == full[: decided * STEPS], "no training step after the decision"
    assert any(f"{poor.run_id} hyperband: below the band threshold after {decided} epochs" in line for line in lines)
    assert f"epochs {decided} " in lines[-2] and f"epochs {epochs} " in lines[1 + epochs]


def test_run_cap_counts_every_trial_of_the_sweep(project: Path) -> None:
    sweep = new_sweep(project, {"x": {"values": [0.1, 0.2, 0.3, 0.4]}, "trainer.max_epochs": {"value": 1}}, run_cap=2)
    lines = run_here(sweep, count=1)
    assert len(sweep.trials()) == 1  # --count is per agent
    lines = run_here(sweep)
    assert len(sweep.trials()) == 2 and lines[-1].endswith("run_cap 2 reached; no more trials")
    assert any(line.startswith("trial 2/2 ") for line in lines)


def test_metric_target_ends_the_sweep(project: Path) -> None:
    metric = {"name": HMEAN, "goal": "maximize", "target": 0.8}
    sweep = new_sweep(project, {"x": {"values": [0.2, 0.9, 0.3]}, "trainer.max_epochs": {"value": 1}}, metric=metric)
    lines = run_here(sweep)
    assert final_x(sweep) == [0.2, 0.9]
    assert "metric target 0.8 reached by" in lines[-1]


def test_a_failing_trial_does_not_end_the_agent(project: Path) -> None:
    sweep = new_sweep(project, {"crash": {"values": [3, 0]}, "trainer.max_epochs": {"value": 2}})
    lines = run_here(sweep)
    failed, ok = sweep.trials()
    assert exit_status([failed, ok]) == 0
    assert (failed.state, failed.exitcode, len(failed.history)) == ("failed", 3, 1)
    assert ok.state == "finished" and len(ok.history) == 2
    assert any("| simulated failure" in line for line in lines)
    assert any("full output:" in line and "output.log" in line for line in lines)


def test_an_agent_whose_trials_keep_failing_gives_up_like_wandbs(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_AGENT_MAX_INITIAL_FAILURES", "2")
    sweep = new_sweep(project, {"x": {"values": [0.1, 0.2, 0.3, 0.4]}, "crash": {"value": 1}})
    lines = run_here(sweep)
    assert [t.state for t in sweep.trials()] == ["failed", "failed"]
    assert lines[-1].startswith("2 trials, most of them failed: this agent stops")
    assert exit_status(sweep.trials()) == 1  # wandb_sweep.py exits 1: scripts see the sweep went wrong


def test_resume_after_a_killed_agent_marks_its_trial_crashed_and_runs_it_again(project: Path) -> None:
    sweep = new_sweep(project, {"sleep": {"values": [0.02, 0.5, 0.03]}, "trainer.max_epochs": {"value": 6}})
    first = start_agent(project, project / ".sweeps", sweep.id, None)

    def second_trial_logging() -> bool:
        trials = sweep.trials()
        return len(trials) == 2 and trials[0].state == "finished" and trials[1].state == "running" and trials[1].history

    wait_for(second_trial_logging, timeout=60)
    first.kill()  # kill -9: no cleanup, its trial process is orphaned
    first.wait()
    orphan = sweep.trials()[1].process
    assert is_alive(orphan), "the trial outlives its agent"

    second = start_agent(project, project / ".sweeps", sweep.id, None)
    output = second.communicate(timeout=120)[0]
    assert second.returncode == 0, output
    trials = sweep.trials()
    assert [t.state for t in trials] == ["finished", "finished", "finished"]
    resumed = trials[1]
    assert "died" in resumed.note and resumed.resumes == 1
    assert f"{resumed.run_id}: marked crashed" in output and f"{resumed.run_id} resuming from its last checkpoint" in output
    assert not is_alive(orphan), "the orphaned trial was killed"
    assert [t.params["sleep"]["value"] for t in trials] == [0.02, 0.5, 0.03], "the crashed trial is run again as itself"
    assert len(trials[0].history) == 6 and trials[0].summary[HMEAN] == 0.5


def test_sigterm_to_the_cli_agent_kills_its_trial_and_records_it(project: Path) -> None:
    sweep = new_sweep(project, {"sleep": {"value": 5.0}, "trainer.max_epochs": {"value": 20}})
    agent = subprocess.Popen(
        [sys.executable, str(REPO / "wandb_sweep.py"), "--sweep-id", sweep.id, "--store", str(project / ".sweeps")],
        cwd=project,
        env=agent_env(project),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: [t.state for t in sweep.trials()] == ["running"], timeout=60)
    trial_proc = sweep.trials()[0].process
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=60)
    assert agent.returncode == 130
    assert f"resume with: python wandb_sweep.py --sweep-id {sweep.id}" in err
    assert sweep.trials()[0].state == "killed" and not is_alive(trial_proc)


def test_open_unknown_local_sweep_lists_known_ones(project: Path) -> None:
    sweep = new_sweep(project, {"x": {"value": 0.1}})
    from ocr.utils.errors import UserError

    with pytest.raises(UserError, match=f"unknown sweep id 'local-nope'.*local sweeps: {sweep.id}"):
        open_sweep(project / ".sweeps", "local-nope")


def test_an_out_of_memory_restart_line_drops_the_failed_attempts_epochs(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [{"epoch": 0, HMEAN: 0.5}, {"epoch": 1, HMEAN: 0.6}, {"restart": True, "batch/used": 2},
             {"epoch": 0, HMEAN: 0.4}, {"final": True, HMEAN: 0.4}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert read_metrics(path) == ([{"epoch": 0, HMEAN: 0.4}], {HMEAN: 0.4})


def test_a_trial_killed_mid_training_resumes_from_its_last_checkpoint(project: Path) -> None:
    """kill -9 of the agent and of a real training run after its first validated epoch; the next agent starts the
    same trial again, which continues after the checkpoint's epoch."""
    fixed = [
        "models.encoder.model_name=hrnet_w18_small", "models.encoder.pretrained=false", "image_size=64",
        "batch_size=4", "trainer.enable_progress_bar=false", "data.num_workers=0", "data.synthetic.n_train=8",
        f"data.synthetic.dir={project / 'synthetic'}", "data.synthetic.n_val=4", "data.synthetic.n_test=2",
        "dataset_base_path=null", "metric.workers=1", "cache_val_maps=false",
    ]
    config = fake_sweep_config({"trainer.max_epochs": {"value": 3}}, program="ocr.train")
    config["command"][4:4] = fixed
    sweep = create_sweep(project / ".sweeps", config, "test-project", None)
    first = start_agent(project, project / ".sweeps", sweep.id, None)
    run_id = None

    def first_epoch_checkpointed() -> bool:
        nonlocal run_id
        trials = sweep.trials()
        if not trials or not trials[0].history:
            return False
        run_id = trials[0].run_id
        return (sweep.trial_dir(run_id) / "run" / "checkpoints" / "last.ckpt").is_file()

    try:
        wait_for(first_epoch_checkpointed, timeout=300, every=0.2)
    finally:
        first.kill()
        first.wait()
    os.killpg(int(sweep.trials()[0].process["pid"]), signal.SIGKILL)
    checkpoint = torch.load(sweep.trial_dir(run_id) / "run" / "checkpoints" / "last.ckpt", weights_only=False)

    second = start_agent(project, project / ".sweeps", sweep.id, None)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output
    (trial,) = sweep.trials()
    assert (trial.run_id, trial.state, trial.resumes) == (run_id, "finished", 1), output
    assert [h["epoch"] for h in trial.history] == [0, 1, 2]
    lines = [json.loads(line) for line in (sweep.trial_dir(run_id) / "metrics.jsonl").read_text().splitlines()]
    restart = next(i for i, line in enumerate(lines) if line.get("restart"))
    assert lines[restart]["from_epoch"] == checkpoint["epoch"] + 1 > 0, "the run continues after the checkpoint"
    assert [line["epoch"] for line in lines[restart + 1:] if "epoch" in line] == list(range(checkpoint["epoch"] + 1, 3))
