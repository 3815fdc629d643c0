"""The sweep YAML: the shipped files are valid against the real Hydra config; bad input gets one clear line."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from test_sweep_support import REPO, fake_sweep_config, write_fake_project, write_yaml

from ocr.config.checks import MODEL_KEY, check_parameters, sweep_metrics
from ocr.sweep.spec import (
    Narrowing,
    apply_narrowing,
    check_against_training,
    command_overrides,
    engine_view,
    known_distributions,
    load_sweep_config,
    target_reached,
)
from ocr.utils.errors import UserError

SHIPPED = [REPO / "sweep_config.yaml", REPO / "sweep_configs" / "demo_cpu.yaml"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_sweeps_are_valid_for_the_engine_and_the_hydra_config(path: Path) -> None:
    check_against_training(load_sweep_config(path), str(path))  # the repo's configs/: keys and options exist


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_wandb_cli_reads_the_same_sweep(path: Path) -> None:
    """`wandb sweep FILE` loads the file with this function before sending it: same dict as ours."""
    from wandb.sdk.launch.sweeps.utils import load_sweep_config as wandb_load

    assert wandb_load(str(path)) == load_sweep_config(path)


def test_main_sweep_matches_the_issue() -> None:
    config = yaml.safe_load((REPO / "sweep_config.yaml").read_text())
    params = config["parameters"]
    assert config["method"] == "bayes"
    assert config["metric"] == {"name": "val/cleval_hmean", "goal": "maximize"}
    assert config["early_terminate"] == {"type": "hyperband", "min_iter": 3, "eta": 2}
    assert params[MODEL_KEY]["values"] == ["hrnet_w18", "hrnet_w32", "hrnet_w40", "hrnet_w44", "hrnet_w48"]
    assert params["image_size"]["values"] == [640, 800, 1024, 1280]
    assert params["batch_size"]["values"] == [4, 8, 16, 32]
    assert params["optimizer.lr"] == {"distribution": "log_uniform_values", "min": 0.0005, "max": 0.002}
    assert params["models.head.postprocess.use_polygon"] == {"value": True}
    assert "models.head.postprocess.box_unclip_ratio" not in params  # no effect in polygon mode
    assert "${args_no_hyphens}" in config["command"]


def test_engine_view_strips_what_sweeps_0_2_rejects() -> None:
    config = fake_sweep_config(
        {"x": {"values": [1.0]}},
        run_cap=3,
        entity=None,
        early_terminate={"type": "hyperband", "min_iter": 1, "strict": True},
    )
    view = engine_view(config)
    assert "run_cap" not in view and "entity" not in view and "strict" not in view["early_terminate"]
    assert config["run_cap"] == 3 and config["early_terminate"]["strict"] is True  # the original is untouched


def test_distribution_names_come_from_the_installed_schema() -> None:
    assert {"log_uniform_values", "int_uniform", "categorical", "q_uniform"} <= set(known_distributions())


def test_target_reached_follows_the_goal() -> None:
    config = fake_sweep_config({"x": {"value": 1}})
    config["metric"]["target"] = 0.8
    assert target_reached(config, 0.81) and not target_reached(config, 0.79) and not target_reached(config, None)
    config["metric"]["goal"] = "minimize"
    assert target_reached(config, 0.79) and not target_reached(config, 0.81)


GOOD = fake_sweep_config({"x": {"min": 0.1, "max": 0.9}, "optimizer": {"values": ["adam", "adamw"]}}, method="random")


def _with(path: list, value) -> dict:
    config = copy.deepcopy(GOOD)
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("method: bayes\nparameters: {x: {values: [1, 2]\n", "malformed YAML at line"),
        (
            yaml.safe_dump(_with(["parameters", "x"], {"distribution": "gaussian", "min": 0, "max": 1})),
            "unknown distribution 'gaussian'",
        ),
        (yaml.safe_dump(_with(["parameters", "x"], {"min": 0.9, "max": 0.1})), "min 0.9 must be less than max 0.1"),
        (yaml.safe_dump(_with(["parameters", "x"], {"min": "0.1", "max": 0.9})), "min must be a finite number, got '0.1'"),
        (yaml.safe_dump(_with(["parameters", "x"], {"min": 0.1, "max": float("inf")})), "max must be a finite number, got inf"),
        (yaml.safe_dump(_with(["parameters", "x"], {"values": []})), "values must be a non-empty list"),
        (yaml.safe_dump(_with(["parameters", "x"], {"parameters": {"a": {"value": 1}}})), "is nested"),
        (yaml.safe_dump(_with(["parameters", "x"], {"mins": 1})), "not a valid W&B sweep parameter"),
        (yaml.safe_dump(_with(["method"], "bays")), "method must be one of bayes, random, grid"),
        (
            yaml.safe_dump(_with(["command"], ["${env}", "${interpreter}", "${program}", "${args}"])),
            "${args_no_hyphens}",
        ),
        (yaml.safe_dump(_with(["program"], "train.py")), "program 'train.py' is not a module name"),
        (yaml.safe_dump(_with(["program"], "ocr/train.py")), "program 'ocr/train.py' is not a module name"),
        (yaml.safe_dump(_with(["program"], None)), "'program' is not set"),
        (
            yaml.safe_dump(_with(["command"], ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"])),
            "must run the training module with -m",
        ),
        (
            yaml.safe_dump(_with(["command"], ["${env}", "${interpreter}", "${args_no_hyphens}"])),
            "must run the training module with -m",
        ),
        (
            yaml.safe_dump(_with(["command"], ["${env}", "${interpreter}", "-m", "${args_no_hyphens}"])),
            "must run the training module with -m",
        ),
        (yaml.safe_dump(_with(["metric"], {"goal": "maximize"})), "'metric' needs a name"),
        (yaml.safe_dump(_with(["run_cap"], 0)), "run_cap must be a positive integer"),
        (yaml.safe_dump(_with(["method"], "grid")), "sweep engine refuses this config"),  # grid over a range
        ("- just\n- a list\n", "expected a mapping"),
    ],
    ids=[
        "malformed",
        "distribution",
        "min>max",
        "min-a-string",
        "max-infinite",
        "empty-values",
        "nested",
        "bad-keys",
        "method",
        "command",
        "program-a-file",
        "program-a-path",
        "program-unset",
        "command-without-dash-m",
        "command-without-program",
        "command-dash-m-without-module",
        "metric",
        "run_cap",
        "grid-range",
        "not-a-mapping",
    ],
)
def test_bad_sweep_yaml_gets_one_line_naming_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_sweep_config(path)
    message = str(err.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_the_module_may_be_named_in_the_command(tmp_path: Path) -> None:
    config = _with(["command"], ["${env}", "${interpreter}", "-m", "fake_train", "${args_no_hyphens}"])
    del config["program"]
    assert load_sweep_config(write_yaml(tmp_path / "s.yaml", config))["command"][3] == "fake_train"


def test_missing_sweep_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="sweep config not found: .*nope.yaml"):
        load_sweep_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"x.y": {"value": 1.0}}, "'x.y' is not a key of the Hydra config"),
        ({"lrate": {"value": 1.0}}, "'lrate' is not a key"),
        ({"optimizer": {"values": ["adam", "sgd"]}}, "'sgd' is not an option of config group 'optimizer' (options in"),
        ({"optimizer": {"min": 0.0, "max": 1.0}}, "is a config group: list its options"),
        (
            {MODEL_KEY: {"values": ["hrnet_w18", "hrnet_w99"]}},
            "models.encoder.model_name='hrnet_w99' is not a timm model; HRNet names are: hrnet_w18",
        ),
        ({"x": {"values": [None]}}, "does not survive as a Hydra override 'x=None'"),
        ({"x": {"values": ["a,b"]}}, "does not survive as a Hydra override"),
    ],
    ids=["nested-missing", "missing", "group-option", "group-range", "model", "null", "comma"],
)
def test_parameters_are_checked_against_the_hydra_config(tmp_path: Path, parameters: dict, expected: str) -> None:
    _, configs = write_fake_project(tmp_path)
    with pytest.raises(UserError) as err:
        check_parameters(parameters, "sweep.yaml", configs)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_valid_parameters_pass_including_groups_and_nested_keys(tmp_path: Path) -> None:
    _, configs = write_fake_project(tmp_path)
    check_parameters(
        {
            "x": {"min": 0.1, "max": 0.9},
            "optimizer": {"values": ["adam", "adamw"]},
            "optimizer.lr": {"value": 0.01},
            "trainer.max_epochs": {"values": [1, 2]},
            MODEL_KEY: {"value": "hrnet_w18_small"},
        },
        "sweep.yaml",
        configs,
    )


def test_fixed_overrides_in_the_command_are_checked_too(tmp_path: Path) -> None:
    _, configs = write_fake_project(tmp_path)
    config = fake_sweep_config({"x": {"value": 0.5}})
    config["command"] = [*config["command"][:4], "trainer.max_epochs=4", "sleep=0.5", *config["command"][4:]]
    fixed = command_overrides(config, "s.yaml")
    assert fixed == {"trainer.max_epochs": {"value": 4}, "sleep": {"value": 0.5}}
    check_parameters(fixed, "s.yaml", configs)
    config["command"].insert(4, "trainer.max_epoch=4")
    with pytest.raises(UserError, match="'trainer.max_epoch' is not a key"):
        check_parameters(command_overrides(config, "s.yaml"), "s.yaml", configs)
    config["command"].insert(4, "a=[1,")
    with pytest.raises(UserError, match="command item 'a=\\[1,' is not a valid Hydra override"):
        command_overrides(config, "s.yaml")


def test_missing_hydra_configs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="Hydra configs not found"):
        check_parameters({"x": {"value": 1}}, "sweep.yaml", tmp_path)


def test_narrowing_replaces_values_and_rechecks(tmp_path: Path) -> None:
    config = load_sweep_config(write_yaml(tmp_path / "s.yaml", GOOD))
    narrowed = apply_narrowing(config, Narrowing(method="random", run_cap=7, parameters={"optimizer": ("adamw",)}),
                               "s.yaml")
    assert narrowed["method"] == "random" and narrowed["run_cap"] == 7
    assert narrowed["parameters"]["optimizer"] == {"value": "adamw"}
    assert config["parameters"]["optimizer"] == {"values": ["adam", "adamw"]}  # input untouched
    multi = apply_narrowing(config, Narrowing(parameters={"image_size": (800, 1024)}), "s.yaml")
    assert multi["parameters"]["image_size"] == {"values": [800, 1024]}
    fixed = {**config, "command": [*config["command"], "image_size=160", "batch_size=4"]}
    narrowed = apply_narrowing(fixed, Narrowing(parameters={"image_size": (800,)}), "s.yaml")
    assert narrowed["command"] == [*config["command"], "batch_size=4"]  # the option replaces the fixed image_size
    with pytest.raises(UserError, match="s.yaml with the command-line options: the sweep engine refuses"):
        apply_narrowing(config, Narrowing(method="grid"), "s.yaml")  # x is a range: grid cannot enumerate it


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"image_size": {"values": [640, 810]}}, "image_size=810 must be a multiple of 32 and >= 64"),
        ({"image_size": {"min": 640, "max": 1280}}, "must be a multiple of 32 and >= 64 (e.g. 640, 800, 1024, 1280) (a value this range produces)"),
        ({"image_size": {"distribution": "q_uniform", "min": 640, "max": 1280, "q": 30}}, "(a value this range produces)"),
        ({"trainer.max_epochs": {"value": 0}}, "trainer.max_epochs=0 must be >= 1 (or -1: no limit)"),
        ({"optimizer.lr": {"min": -0.001, "max": 0.001}}, "must be > 0"),
        ({"trainer.precision": {"values": ["32-true", "fp8"]}}, "trainer.precision='fp8' is not a Lightning precision"),
        ({"image_sze": {"value": 640}}, "is not a key of the Hydra config"),
        ({"models.head.postprocess.thresh": {"min": 0.5, "max": 1.2}},
         "must be in [0, 1); DBNet uses 0.3 (a value this range produces)"),
        ({"models.loss.negative_ratio": {"values": [3, 0]}}, "models.loss.negative_ratio=0 must be > 0"),
        ({f"models.loss.{m}_map_loss_weight": {"value": 0} for m in ("prob", "thresh", "binary")},
         "sweep.yaml: models.loss: the three map loss weights are all 0"),
        ({"collate_fn.thresh_max": {"values": [0.9, 0.2]}},
         "sweep.yaml: collate_fn.thresh_min=0.3, thresh_max=0.2 must satisfy 0 <= thresh_min <= thresh_max <= 1"),
        ({"data.augment.rotate": {"value": 10}}, "act on training crops: set data.augment.crop_size too"),
    ],
    ids=["listed", "int-range", "q-range", "epochs", "lr-range", "precision", "misspelt", "postprocess", "loss",
         "loss-weights", "thresholds", "crops"],
)
def test_values_training_refuses_are_refused_before_the_sweep_exists(parameters: dict, expected: str) -> None:
    with pytest.raises(UserError) as err:
        check_against_training(fake_sweep_config(parameters), "sweep.yaml")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_values_are_checked_against_what_the_command_fixes() -> None:
    config = fake_sweep_config({"data.augment.crop_size": {"values": [128, 320]}})
    config["command"].insert(4, "experiment=demo_cpu")  # image_size=160
    with pytest.raises(UserError, match=r"crop_size=320 is larger than the rescaled receipt \(image_size=160 "):
        check_against_training(config, "sweep.yaml")
    config["parameters"]["data.augment.crop_size"] = {"values": [128, 160]}
    check_against_training(config, "sweep.yaml")


def test_a_misspelt_key_gets_the_closest_one() -> None:
    with pytest.raises(UserError, match=r"\(did you mean image_size\?\)"):
        check_parameters({"image_sze": {"value": 640}}, "sweep.yaml")
    with pytest.raises(UserError, match=r"\(did you mean models.loss.negative_ratio\?\)"):
        check_parameters({"models.loss.negativ_ratio": {"value": 3.0}}, "sweep.yaml")


def test_ranges_training_accepts_pass() -> None:
    parameters = {
        "image_size": {"distribution": "q_uniform", "min": 640, "max": 1280, "q": 32},
        "optimizer.lr": {"distribution": "log_uniform_values", "min": 0.0005, "max": 0.002},
        "trainer.max_epochs": {"values": [-1, 5]},
        "trainer.precision": {"values": ["32-true", "bf16-mixed"]},
    }
    check_against_training(fake_sweep_config(parameters), "sweep.yaml")


def test_the_metric_must_be_one_a_run_logs(tmp_path: Path) -> None:
    _, configs = write_fake_project(tmp_path)

    def check_metric(name: str) -> None:
        check_against_training(fake_sweep_config({"x": {"value": 0.5}}, metric={"name": name}), "s.yaml", configs)

    for name in ("val/cleval_hmean", "val/loss", "val/cleval_hmean_tuned", "train/loss_epoch"):
        check_metric(name)
    assert "val/loss_prob" in sweep_metrics()
    with pytest.raises(UserError, match="metric 'val/hmean' is never logged .* logged: val/cleval_recall, "):
        check_metric("val/hmean")
