"""wandb_sweep.py: preview, the sweep dict sent to W&B, local create+run, --best, and one-line errors."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import wandb
from test_sweep_support import REPO, fake_sweep_config, write_fake_project, write_yaml

from ocr.cli import sweep as cli
from ocr.sweep.spec import load_sweep_config
from ocr.sweep.store import Trial, create_sweep, sweep_ids
from ocr.training.memory import Footprint
from ocr.utils.errors import UserError

MAIN = str(REPO / "sweep_config.yaml")


@pytest.fixture(autouse=True)
def _no_key_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run from an empty folder (no .env) with a HOME that has no ~/.netrc."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL", "DATASET_BASE_PATH"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def _memory_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """The preview's cap table without measuring five HRNets (tests/test_batch_size.py checks the measurement)."""
    monkeypatch.setattr("ocr.training.batch_size.footprint", lambda models, precision, say=None: Footprint(10**7, 0, 1000.0))


def run_cli(args: list[str]) -> int:
    return cli.main(args)


def error_of(capsys, args: list[str]) -> str:
    """Run the CLI expecting a user error; return stderr (checked to be one line)."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_preview_shows_the_sweep_destination_and_batch_caps(capsys) -> None:
    assert run_cli(["--config", MAIN]) == 0
    out = capsys.readouterr().out
    assert "# sweep that would be created (from" in out and "method: bayes" in out
    assert "models.encoder.model_name:\n    values: [hrnet_w18, hrnet_w32, hrnet_w40, hrnet_w44, hrnet_w48]" in out
    assert "destination: embedded controller (no W&B server), store .sweeps/, each trial is a W&B offline run" in out
    assert "W&B API key: not set" in out
    assert "one trial would run: /usr/bin/env python -m ocr.train batch_size=" in out
    caps = "batch caps for" if torch.cuda.is_available() else "no CUDA GPU visible"
    assert caps in out and all(f"\n  hrnet_w{w} " in out.split(caps)[1] for w in (18, 32, 40, 44, 48))
    assert not Path(".sweeps").exists(), "a preview creates nothing"


def test_preview_caps_follow_the_experiment_a_sweep_fixes(capsys) -> None:
    assert run_cli(["--config", str(REPO / "sweep_configs" / "demo_cpu.yaml")]) == 0
    out = capsys.readouterr().out
    assert "one trial would run: /usr/bin/env python -m ocr.train experiment=demo_cpu models." in out
    rows = [line.split() for line in out.split("GiB/image")[1].splitlines()[1:] if line.startswith("  hrnet")]
    assert [row[:2] for row in rows] == [["hrnet_w18_small", "160"]], "the demo's model and image size"


def test_preview_narrowed_and_online_never_prints_the_key(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.delenv("WANDB_MODE")
    assert run_cli(["--config", MAIN, "--models", "hrnet_w18", "--image-sizes", "800,1024", "--project", "P"]) == 0
    out = capsys.readouterr().out
    assert secret not in out and "W&B API key: set" in out
    assert "destination: W&B server (online), entity=(your default), project=P" in out
    assert "models.encoder.model_name: {value: hrnet_w18}" in out and "image_size:\n    values: [800, 1024]" in out
    rows = [line.split()[:2] for line in out.splitlines() if line.startswith("  hrnet_w18 ")]
    assert rows == [["hrnet_w18", "800"], ["hrnet_w18", "1024"]]


def test_create_sends_exactly_the_narrowed_yaml_to_wandb(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")  # --project wins over the environment
    sent = {}

    def fake_sweep(sweep, entity=None, project=None, prior_runs=None):
        sent.update(sweep=copy.deepcopy(sweep), entity=entity, project=project)
        return "abc123de"

    monkeypatch.setattr(wandb, "sweep", fake_sweep)
    args = [
        "--config",
        MAIN,
        "--create-sweep",
        "--models",
        "hrnet_w18,hrnet_w32",
        "--method",
        "random",
        "--run-cap",
        "20",
    ]
    assert run_cli([*args, "--project", "P", "--entity", "E"]) == 0
    expected = load_sweep_config(MAIN)
    expected["parameters"]["models.encoder.model_name"] = {"values": ["hrnet_w18", "hrnet_w32"]}
    expected.update(method="random", run_cap=20)
    assert sent == {"sweep": expected, "entity": "E", "project": "P"}
    out = capsys.readouterr().out
    assert "created W&B sweep E/P/abc123de" in out and "wandb agent E/P/abc123de" in out
    assert not Path(".sweeps").exists()


def test_online_agent_is_wandbs_cli_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.delenv("WANDB_MODE")
    calls = {}
    monkeypatch.setattr(wandb, "Api", lambda: SimpleNamespace(sweep=lambda path: calls.setdefault("fetched", path)))
    monkeypatch.setattr(wandb, "agent", lambda sweep_id, **kw: calls.update(agent=(sweep_id, kw)))
    assert run_cli(["--sweep-id", "abc123de", "--count", "3", "--entity", "E"]) == 0
    assert calls["fetched"] == "E/OCR-HRNet-Sweep/abc123de"
    assert calls["agent"] == ("abc123de", {"function": None, "entity": "E", "project": "OCR-HRNet-Sweep", "count": 3})


def test_online_errors_say_how_to_run_offline(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "online")
    err = error_of(capsys, ["--config", MAIN, "--create-sweep"])
    assert "W&B online mode needs an API key" in err and "--offline" in err

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)

    def unreachable(**_):
        raise wandb.errors.CommError("Network error (ConnectionError), entering retry loop.")

    monkeypatch.setattr(wandb, "sweep", unreachable)
    err = error_of(capsys, ["--config", MAIN, "--create-sweep"])
    default_host = wandb.Settings().base_url  # the server this wandb version talks to by default
    assert f"could not create the sweep on W&B at {default_host}: Network error" in err and "--offline" in err
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    err = error_of(capsys, ["--config", MAIN, "--create-sweep"])
    assert "could not create the sweep on W&B at https://wandb.example.com: Network error" in err
    monkeypatch.delenv("WANDB_BASE_URL")

    def missing(path):
        raise ValueError(f"Could not find sweep {path}")

    monkeypatch.setattr(wandb, "Api", lambda: SimpleNamespace(sweep=missing))
    err = error_of(capsys, ["--sweep-id", "zzz99999", "--project", "P"])
    assert "unknown sweep id 'zzz99999': W&B has no sweep P/zzz99999" in err
    assert not Path(".sweeps").exists()


def test_bad_input_is_one_line_and_creates_nothing(capsys, tmp_path: Path) -> None:
    err = error_of(capsys, ["--config", MAIN, "--create-sweep", "--models", "hrnet_w18,hrnet_w99"])
    assert err.startswith("wandb_sweep.py: error: --models: models.encoder.model_name='hrnet_w99' is not a timm model")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: bayes\nparameters:\n  x: {min: 2.0, max: 1.0}\n")
    assert "min 2.0 must be less than max 1.0" in error_of(capsys, ["--config", str(bad), "--create-sweep"])
    unknown = write_yaml(
        tmp_path / "u.yaml", {**load_sweep_config(MAIN), "parameters": {"optimizer.lrate": {"min": 0.1, "max": 0.2}}}
    )
    assert "'optimizer.lrate' is not a key of the Hydra config" in error_of(
        capsys, ["--config", str(unknown), "--create-sweep"]
    )
    assert "unknown sweep id 'local-nope'" in error_of(capsys, ["--sweep-id", "local-nope"])
    assert "no local sweep in .sweeps/" in error_of(capsys, ["--best"])
    monkeypatch_mode = pytest.MonkeyPatch()
    monkeypatch_mode.setenv("WANDB_MODE", "sometimes")
    try:
        assert "WANDB_MODE='sometimes' is not one of online, offline, disabled" in error_of(capsys, ["--config", MAIN])
    finally:
        monkeypatch_mode.undo()
    assert not Path(".sweeps").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--count", "3"],
        ["--create-sweep", "--sweep-id", "x"],
        ["--best", "--count", "2"],
        ["--sweep-id", "x", "--models", "a"],
    ],
)
def test_meaningless_combinations_are_refused(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(args)
    assert exit_info.value.code == 2


def test_create_and_run_locally_then_best(capsys, tmp_path: Path) -> None:
    _, configs = write_fake_project(tmp_path)
    sweep_yaml = write_yaml(
        tmp_path / "s.yaml", fake_sweep_config({"x": {"values": [0.4, 0.8]}, "trainer.max_epochs": {"value": 1}})
    )
    assert run_cli(["--config", str(sweep_yaml), "--configs-dir", str(configs), "--create-sweep", "--count", "2"]) == 0
    out = capsys.readouterr().out
    (sweep_id,) = sweep_ids(Path(".sweeps"))
    assert f"created local sweep {sweep_id}" in out and f"(more agents: python wandb_sweep.py --sweep-id {sweep_id})" in out
    assert "--gpus" not in out and "--count 10" not in out  # agents ran now: no list of ways to start them
    assert "trial 1 " in out and "trial 2 " in out and f"leaderboard of {sweep_id} (2 trials, grid)" in out
    assert out.rstrip().endswith("python -m fake_train trainer.max_epochs=1 x=0.8")
    assert run_cli(["--best", "--top", "1"]) == 0  # newest local sweep
    best = capsys.readouterr().out
    assert "0.8000" in best and "0.4000" not in best and "x=0.8" in best


def test_best_of_an_online_sweep(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.delenv("WANDB_MODE")
    config = fake_sweep_config({"x": {"values": [0.1, 0.7]}, "y": {"value": 1}})

    def run(rid, state, value, x):
        summary = {"val/cleval_hmean": value, "_runtime": 65.0} if value is not None else {}
        return SimpleNamespace(id=rid, state=state, summary=summary, config={"x": x, "y": 1, "other": 5})

    runs = [run("r1", "finished", 0.5, 0.1), run("r2", "finished", 0.75, 0.7), run("r3", "crashed", None, 0.1)]
    sweep = SimpleNamespace(config=config, runs=runs)
    monkeypatch.setattr(wandb, "Api", lambda: SimpleNamespace(sweep=lambda path: sweep))
    assert run_cli(["--best", "--sweep-id", "E/P/abc"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "best runs of W&B sweep E/P/abc (3 runs):"
    assert out[3].split()[:4] == ["1", "r2", "finished", "0.7500"] and "1m05s" in out[3]
    assert "(1 trial(s) without a val/cleval_hmean value" in out[5]
    assert out[-1].strip() == "python -m fake_train x=0.7 y=1"


def test_gpu_agents_get_one_device_each() -> None:
    assert cli.gpu_agent_envs((0, 1), 2, None) == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    assert cli.gpu_agent_envs((1,), 2, "4,6") == [{"CUDA_VISIBLE_DEVICES": "6"}]  # indices count visible GPUs
    with pytest.raises(UserError, match="GPU index 2 is not visible"):
        cli.gpu_agent_envs((0, 2), 2, None)
    with pytest.raises(UserError, match="each GPU index once"):
        cli.gpu_agent_envs((0, 0), 2, None)


def test_gpus_per_trial_gives_each_agent_that_many_devices(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.gpu_agent_envs((0, 1, 2, 3), 4, None, 2) == [{"CUDA_VISIBLE_DEVICES": "0,1"},
                                                           {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert cli.gpu_agent_envs((3, 1), 4, "4,5,6,7", 2) == [{"CUDA_VISIBLE_DEVICES": "7,5"}]
    started = []
    monkeypatch.setattr(cli, "visible_gpus", lambda: 4)
    monkeypatch.setattr(cli.subprocess, "Popen", lambda argv, env: started.append((argv, env)) or SimpleNamespace(
        wait=lambda: 0))
    args = cli.build_parser().parse_args(["--sweep-id", "local-x", "--gpus", "0,1,2,3", "--gpus-per-trial", "2"])
    assert cli.spawn_gpu_agents(args, "local-x") == 0
    assert [env["CUDA_VISIBLE_DEVICES"] for _, env in started] == ["0,1", "2,3"]
    assert all(argv[argv.index("--gpus-per-trial") + 1] == "2" for argv, _ in started)
    assert "started 2 agents on local-x: gpu 0,1, gpu 2,3" in capsys.readouterr().out
    err = error_of(capsys, ["--sweep-id", "local-x", "--gpus", "0,1,2", "--gpus-per-trial", "2"])
    assert "--gpus 0,1,2: 3 GPUs do not split into trials of --gpus-per-trial 2" in err
    assert "run agents" in error_of(capsys, ["--gpus-per-trial", "2"])
    with pytest.raises(UserError, match=r"add `trainer.devices: \{value: 2\}`"):
        cli.check_wandb_devices(fake_sweep_config({"x": {"value": 1}}), 2)
    cli.check_wandb_devices(fake_sweep_config({"trainer.devices": {"value": 2}}), 2)


def test_sync_hint_points_at_the_offline_runs(tmp_path: Path) -> None:
    sweep = create_sweep(tmp_path / "store", fake_sweep_config({"x": {"value": 1.0}}), "P", "E")
    assert cli.sync_hint(sweep) is None
    for run_id in ("aaa", "bbb"):
        (sweep.trial_dir(run_id) / "run" / "wandb" / f"offline-run-20250101_000000-{run_id}").mkdir(parents=True)
    assert (
        cli.sync_hint(sweep)
        == f"upload the offline runs to W&B later: wandb sync -p P -e E {sweep.dir}/trials/*/run/wandb/offline-run-*"
    )


def test_leaderboard_counts_trials_without_metric(tmp_path: Path, capsys) -> None:
    sweep = create_sweep(Path(".sweeps"), fake_sweep_config({"x": {"values": [0.1, 0.2]}}), "P", None)
    with sweep.transaction() as trials:
        trials.append(Trial("aaa", 1, {"x": {"value": 0.1}}, state="finished", history=[{"val/cleval_hmean": 0.3}]))
        trials.append(Trial("bbb", 2, {"x": {"value": 0.2}}, state="crashed"))
    assert run_cli(["--best", "--sweep-id", sweep.id]) == 0
    out = capsys.readouterr().out
    assert "aaa" in out and "(1 trial(s) without a val/cleval_hmean value" in out and "x=0.1" in out


def test_env_template_lists_every_variable_and_copies_cleanly() -> None:
    from dotenv import dotenv_values

    text = (REPO / "env_template.txt").read_text()
    for var in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_MODE", "WANDB_BASE_URL", "DATASET_BASE_PATH"):
        assert f"{var}=" in text
    active = dotenv_values(REPO / "env_template.txt")
    assert "WANDB_API_KEY" not in active, "copied as is, the template must not pretend a key is set"
    assert all(value and not value.startswith("#") for value in active.values())


def test_help_covers_every_mode(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in ("--create-sweep", "--sweep-id ID", "--best", "--gpus", "--offline", "--models", "tune-postprocess"):
        assert text in out


def test_argument_mistakes_say_what_is_wrong(capsys, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        run_cli(["--batch-sizes", "4,0"])
    assert "argument --batch-sizes: '0' is not a positive integer (in '4,0')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(["tune-postproces", "run"])
    err = capsys.readouterr().err
    assert "unknown subcommand 'tune-postproces' (did you mean tune-postprocess?)" in err and "predict" in err
    err = error_of(capsys, ["--sweep-id", "me/proj/abc123", "--offline"])
    assert "--sweep-id me/proj/abc123 is a W&B sweep path, but W&B is not in use here (--offline)" in err
    bad_metric = write_yaml(tmp_path / "m.yaml", {**load_sweep_config(MAIN), "metric": {"name": "val/hmean"}})
    err = error_of(capsys, ["--config", str(bad_metric)])
    assert "metric 'val/hmean' is never logged by a training run (did you mean val/cleval_hmean?)" in err


def test_epoch_lines_count_from_one(tmp_path: Path) -> None:
    from ocr.sweep.report import epoch_line

    trial = Trial(run_id="abc", number=1, params={})
    config = load_sweep_config(MAIN)
    assert epoch_line(config, trial, {"epoch": 0, "val/cleval_hmean": 0.5}) == "  abc epoch 1: cleval_hmean 0.5000"


def test_results_name_the_best_trials_run_directory(capsys, tmp_path: Path) -> None:
    config = fake_sweep_config({"x": {"values": [0.1, 0.7]}})
    sweep = create_sweep(tmp_path / ".sweeps", config, "P", None)
    with sweep.transaction() as trials:
        for number, (run_id, value) in enumerate((("aaa", 0.1), ("bbb", 0.7)), 1):
            trial = Trial(run_id=run_id, number=number, params={"x": {"value": value}}, state="finished")
            trial.history = [{"epoch": 0, "val/cleval_hmean": value}]
            trials.append(trial)
    run_dir = sweep.trial_dir("bbb") / "run"
    cli.print_results(sweep, top=5)
    assert "its run directory" not in capsys.readouterr().out  # no run directory was written
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("image_size: 64\n")
    cli.print_results(sweep, top=5)
    out = capsys.readouterr().out
    assert f"its run directory: {run_dir} (also for predict and overlays):\n  python wandb_sweep.py tune-postprocess {run_dir}\n" in out
    with sweep.transaction() as trials:  # a better score from a trial that was interrupted is not offered as the best
        trials.append(Trial(run_id="ccc", number=3, params={"x": {"value": 0.9}}, state="killed",
                            history=[{"epoch": 0, "val/cleval_hmean": 0.9}]))
    cli.print_results(sweep, top=5)
    out = capsys.readouterr().out
    assert " ccc " in out and "killed" in out and "best: val/cleval_hmean = 0.7000 (run bbb)" in out


def test_an_interrupted_agent_says_how_many_trials_it_still_owes(capsys, tmp_path: Path, monkeypatch) -> None:
    sweep = create_sweep(tmp_path / ".sweeps", fake_sweep_config({"x": {"values": [0.1, 0.7]}}), "P", None)

    def interrupted(sweep, opts, say, done):
        done.append(Trial(run_id="aaa", number=1, params={}, state="finished"))
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_agent", interrupted)
    args = SimpleNamespace(gpus=None, gpus_per_trial=1, agent_label=None, count=3, top=5, rerun_failed=False)
    assert cli.run_local(args, sweep, "offline") == 130
    assert f"interrupted; resume with: python wandb_sweep.py --sweep-id {sweep.id} --count 2" in capsys.readouterr().err


def test_trial_numbers_past_replaced_trials_show_their_place_under_the_cap() -> None:
    from ocr.sweep.report import trial_tag

    config = {"run_cap": 3}
    trials = [Trial(run_id=r, number=n, params={}, state=st) for r, n, st in
              (("a", 1, "killed"), ("b", 2, "finished"), ("c", 3, "finished"), ("d", 4, "running"))]
    assert [trial_tag(config, t, trials) for t in trials[1:]] == [
        "2 (1/3 of run_cap)", "3 (2/3 of run_cap)", "4 (3/3 of run_cap)"]
    assert trial_tag({}, trials[3], trials) == "4"
    uninterrupted = [Trial(run_id="a", number=1, params={}, state="finished"), *trials[1:2]]
    assert [trial_tag(config, t, uninterrupted) for t in uninterrupted] == ["1/3", "2/3"]


def test_argument_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["--count", "0", "--create-sweep"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == ("wandb_sweep.py: error: argument --count: expected a positive integer, got '0' "
                   "(see wandb_sweep.py --help)")
