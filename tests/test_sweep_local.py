"""The embedded controller: agents share a sweep safely, hyperband stops, run_cap/target hold, resume works."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_sweep_support import REPO, agent_env, fake_sweep_config, start_agent, wait_for, write_fake_project

from ocr.sweep.controller import is_alive
from ocr.sweep.local_agent import AgentOptions, exit_status, run_agent
from ocr.sweep.report import best_summary, leaderboard, rows_from_trials
from ocr.sweep.store import LocalSweep, create_sweep, open_sweep

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
    rows = rows_from_trials(sweep.config, trials)
    table = leaderboard(sweep.config, rows).splitlines()
    assert "0.9000" in table[2] and "x=0.9" in table[2] and "0.3000" in table[4]
    assert best_summary(sweep.config, rows).endswith("python -m fake_train trainer.max_epochs=2 x=0.9")


def test_two_agents_never_share_a_config_and_lose_no_result(project: Path) -> None:
    xs = [round(0.1 * i, 1) for i in range(1, 9)]
    sweep = new_sweep(project, {"x": {"values": xs}, "trainer.max_epochs": {"value": 2}, "sleep": {"value": 0.2}})
    agents = [start_agent(project, project / ".sweeps", sweep.id, None) for _ in range(2)]
    outputs = [a.communicate(timeout=120)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], outputs
    trials = sweep.trials()
    assert sorted(final_x(sweep)) == xs, "every grid point exactly once, across both agents"
    assert all(t.state == "finished" and t.summary[HMEAN] == t.params["x"]["value"] for t in trials)
    assert len({t.run_id for t in trials}) == 8 and sorted(t.number for t in trials) == list(range(1, 9))
    assert len({t.agent["pid"] for t in trials}) == 2, "both agents took trials"


def test_hyperband_stops_a_poor_trial_between_epochs(project: Path) -> None:
    sweep = new_sweep(
        project,
        {"x": {"values": [0.9, 0.8, 0.1]}, "trainer.max_epochs": {"value": 6}, "sleep": {"value": 0.25}},
        early_terminate={"type": "hyperband", "min_iter": 1, "eta": 2},
    )
    lines = run_here(sweep)
    good, _, poor = sweep.trials()
    assert good.state == "finished" and not good.stopped and len(good.history) == 6
    assert poor.state == "finished" and poor.stopped and poor.label == "stopped"
    assert 2 <= len(poor.history) < 6 and poor.exitcode == 0
    assert (sweep.trial_dir(poor.run_id) / "STOP").exists()
    assert any("hyperband: below the band threshold" in line for line in lines)


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


def test_resume_after_a_killed_agent_marks_its_trial_crashed_and_keeps_results(project: Path) -> None:
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
    assert [t.state for t in trials] == ["finished", "crashed", "finished", "finished"]
    crashed = trials[1]
    assert "died" in crashed.note and crashed.history, "what it logged before the crash is kept"
    assert f"{crashed.run_id}: marked crashed" in output
    assert not is_alive(orphan), "the orphaned trial was killed"
    assert [t.params["sleep"]["value"] for t in trials] == [0.02, 0.5, 0.5, 0.03], "the crashed point is re-run"
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
