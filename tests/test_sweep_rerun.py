"""Reruns of failed and crashed trials (--rerun-failed) and no repeated configurations in discrete local sweeps."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from test_sweep_support import REPO, agent_env, fake_sweep_config, start_agent, write_fake_project

from ocr.cli import sweep as cli
from ocr.sweep.engine import MAX_DRAWS, config_key, exhausted, suggest
from ocr.sweep.local_agent import AgentOptions, run_agent
from ocr.sweep.store import LocalSweep, Trial, create_sweep

NONE_LEFT = "no failed or crashed trial left to rerun; no more trials"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_fake_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    for var in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def new_sweep(project: Path, parameters: dict, **top) -> LocalSweep:
    return create_sweep(project / ".sweeps", fake_sweep_config(parameters, **top), "test-project", None)


def run_here(sweep: LocalSweep, rerun: bool = False) -> list[str]:
    lines: list[str] = []
    run_agent(sweep, AgentOptions(poll_s=0.05, rerun=rerun), say=lines.append)
    return lines


def xs(trials: list[Trial]) -> list[float]:
    return [t.params["x"]["value"] for t in trials]


def test_two_rerun_agents_rerun_each_failed_and_crashed_trial_once(project: Path, monkeypatch) -> None:
    grid = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    sweep = new_sweep(project, {"x": {"values": grid}, "trainer.max_epochs": {"value": 1}, "sleep": {"value": 0.2}})
    monkeypatch.setenv("FAKE_TRAINER_FAIL_X", "0.2,0.4,0.5")
    run_here(sweep)
    monkeypatch.delenv("FAKE_TRAINER_FAIL_X")
    with sweep.transaction() as trials:  # an agent died during x=0.6
        trials[5].state = "crashed"
    originals = {t.run_id: t for t in sweep.trials() if t.state in ("failed", "crashed")}
    assert sorted(xs(list(originals.values()))) == [0.2, 0.4, 0.5, 0.6]

    agents = [start_agent(project, project / ".sweeps", sweep.id, None, rerun=True) for _ in range(2)]
    outputs = [a.communicate(timeout=120)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], outputs
    assert all(out.rstrip().endswith(NONE_LEFT) for out in outputs), outputs
    reruns = [t for t in sweep.trials() if t.rerun_of]
    assert Counter(t.rerun_of for t in reruns) == Counter(originals.keys()), "each original rerun exactly once in total"
    assert all(t.params == originals[t.rerun_of].params and t.state == "finished" for t in reruns)
    assert all(t.run_id not in originals for t in reruns) and len({t.run_id for t in sweep.trials()}) == 10
    shown = "".join(outputs)
    assert all(f"starting as a rerun of {t.rerun_of}" in shown and f"(rerun of {t.rerun_of})" in shown for t in reruns)

    assert run_here(sweep, rerun=True)[-1].endswith(NONE_LEFT) and len(sweep.trials()) == 10


def test_a_rerun_that_fails_again_is_not_rerun(project: Path, monkeypatch) -> None:
    sweep = new_sweep(project, {"x": {"values": [0.1, 0.2]}, "trainer.max_epochs": {"value": 1}})
    monkeypatch.setenv("FAKE_TRAINER_FAIL_X", "0.2")
    run_here(sweep)
    lines = run_here(sweep, rerun=True)
    assert [t.state for t in sweep.trials()] == ["finished", "failed", "failed"] and lines[-1].endswith(NONE_LEFT)


def test_two_agents_on_a_small_random_discrete_space_never_repeat_a_configuration(project: Path) -> None:
    parameters = {"x": {"values": [0.1, 0.2, 0.3]}, "steps": {"distribution": "int_uniform", "min": 1, "max": 2},
                  "trainer.max_epochs": {"value": 1}}
    sweep = new_sweep(project, parameters, method="random")
    agents = [start_agent(project, project / ".sweeps", sweep.id, None) for _ in range(2)]
    outputs = [a.communicate(timeout=120)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], outputs
    keys = [config_key(t.params) for t in sweep.trials()]
    assert len(keys) == len(set(keys)) == 6 and all(t.state == "finished" for t in sweep.trials())
    done = "the random search is exhausted: 6 of its 6 configurations tried or running; no more trials"
    assert all(out.rstrip().endswith(done) for out in outputs), outputs


def test_suggest_skips_tried_configurations_of_random_and_grid_but_not_continuous_ones() -> None:
    config = fake_sweep_config({"x": {"values": [0.1, 0.2]}}, method="random")
    tried = [Trial("a", 1, {"x": {"value": 0.1}}, state="crashed", resumes=2)]
    assert suggest(config, tried)[0] == {"x": {"value": 0.2}}
    assert suggest({**config, "method": "grid"}, tried)[0] == {"x": {"value": 0.2}}, "an interrupted trial was tried"
    tried.append(Trial("b", 2, {"x": {"value": 0.2}}, state="running"))
    assert suggest(config, tried) is None and suggest({**config, "method": "grid"}, tried) is None
    assert exhausted(config, tried) == "the random search is exhausted: 2 of its 2 configurations tried or running"
    continuous = fake_sweep_config({"x": {"min": 0.0, "max": 1.0}}, method="random")
    assert suggest(continuous, tried) is not None
    assert MAX_DRAWS >= 10


def cli_agent(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "wandb_sweep.py"), "--store", str(project / ".sweeps"), *args],
                          cwd=project, env=agent_env(project), capture_output=True, text=True, timeout=120)


def test_rerun_failed_completes_a_grid_with_a_hole(project: Path, monkeypatch) -> None:
    grid = [0.3, 0.6, 0.9]
    sweep = new_sweep(project, {"x": {"values": grid}, "trainer.max_epochs": {"value": 1}})
    monkeypatch.setenv("FAKE_TRAINER_FAIL_X", "0.6")
    run_here(sweep)
    monkeypatch.delenv("FAKE_TRAINER_FAIL_X")
    assert run_here(sweep)[-1].endswith("the grid is exhausted; no more trials"), "the grid does not refill holes"
    failed = sweep.trials()[1]

    first = cli_agent(project, "--sweep-id", sweep.id, "--rerun-failed", "--count", "5")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"starting as a rerun of {failed.run_id}" in first.stdout and NONE_LEFT in first.stdout
    finished = sorted(xs([t for t in sweep.trials() if t.state == "finished"]))
    assert finished == grid and sweep.trials()[-1].rerun_of == failed.run_id
    again = cli_agent(project, "--sweep-id", sweep.id, "--rerun-failed")
    assert again.returncode == 0 and NONE_LEFT in again.stdout and len(sweep.trials()) == 4


def test_rerun_failed_needs_a_local_sweep_id(project: Path, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--rerun-failed"])
    assert "existing sweep again: give --sweep-id ID" in capsys.readouterr().err
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_MODE", "online")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--sweep-id", "abc123de", "--rerun-failed"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    assert "--rerun-failed works on local sweeps only" in err and "--create-sweep" in err
