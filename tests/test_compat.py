"""ocr/utils/compat.py: each private API it wraps is still where it was, and still behaves as the project needs.

A failure names the package version and what moved: update the one function in ocr/utils/compat.py.
"""

from __future__ import annotations

import inspect
import warnings
from importlib.metadata import version
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ocr.utils import compat


def moved(package: str, what: str) -> str:
    return f"{package} {version(package)}: {what} (update ocr/utils/compat.py)"


def test_lightning_precision_values() -> None:
    connector = pytest.importorskip("lightning.fabric.connector")
    assert hasattr(connector, "_PRECISION_INPUT"), moved("lightning", "fabric.connector._PRECISION_INPUT moved")
    assert {"32-true", "bf16-mixed", "16-mixed", 32} <= set(compat.lightning_precisions()), moved(
        "lightning", "_PRECISION_INPUT no longer lists the precision strings")


def test_wandb_sweep_command_utils() -> None:
    from wandb.sdk.launch.sweeps import utils

    for name in ("create_sweep_command", "create_sweep_command_args"):
        assert callable(getattr(utils, name, None)), moved("wandb", f"wandb.sdk.launch.sweeps.utils.{name} moved")
    assert compat.sweep_command([]) == ["${env}", "${interpreter}", "${program}", "${args}"], moved(
        "wandb", "create_sweep_command's default command changed")
    macros = compat.sweep_macros({"a.b": {"value": 1}, "c": {"value": "x"}})
    assert macros["args_no_hyphens"] == ["a.b=1", "c=x"] and macros["args"] == ["--a.b=1", "--c=x"], moved(
        "wandb", "create_sweep_command_args no longer returns the agent's macros")


def test_wandb_param_file_writer(tmp_path: Path) -> None:
    from wandb.sdk.lib import config_util

    assert callable(getattr(config_util, "save_config_file_from_dict", None)), moved(
        "wandb", "wandb.sdk.lib.config_util.save_config_file_from_dict moved")
    path = tmp_path / "params.yaml"
    compat.write_param_file(path, {"x": {"value": 0.5}})
    assert config_util.dict_from_config_file(str(path)) == {"x": 0.5}, moved("wandb", "the param file format changed")


def test_wandb_run_ids() -> None:
    from wandb.sdk.lib import runid

    assert callable(getattr(runid, "generate_id", None)), moved("wandb", "wandb.sdk.lib.runid.generate_id moved")
    ids = {compat.generate_id() for _ in range(20)}
    assert len(ids) == 20 and all(len(i) == 8 and i.isalnum() for i in ids), moved("wandb", "generate_id changed")


def test_wandb_settings_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from wandb.sdk import wandb_setup

    assert callable(getattr(wandb_setup, "singleton", None)), moved("wandb", "wandb.sdk.wandb_setup.singleton moved")
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    url = compat.wandb_settings_base_url()
    assert isinstance(url, str) and url.startswith("http"), moved("wandb", "singleton().settings.base_url changed")


def test_wandb_agent_failure_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb.env

    assert callable(getattr(wandb.env, "get_agent_max_initial_failures", None)), moved(
        "wandb", "wandb.env.get_agent_max_initial_failures moved")
    monkeypatch.delenv("WANDB_AGENT_MAX_INITIAL_FAILURES", raising=False)
    assert compat.agent_max_initial_failures(5) == 5, moved("wandb", "the default is no longer passed through")
    monkeypatch.setenv("WANDB_AGENT_MAX_INITIAL_FAILURES", "2")
    assert compat.agent_max_initial_failures(5) == 2, moved("wandb", "WANDB_AGENT_MAX_INITIAL_FAILURES is ignored")


def test_sweeps_import_is_quiet() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sweeps = compat.import_sweeps()
    assert not [w for w in seen if "Valid config keys" in str(w.message)]
    config = getattr(sweeps.SweepRun, "model_config", {})
    assert "allow_population_by_field_name" in config or "populate_by_name" in config, moved(
        "sweeps", "SweepRun's model config changed: check whether import_sweeps and sweep_run still need their "
        "workarounds")


def test_sweep_runs_keep_history_and_summary() -> None:
    run = compat.sweep_run("r", "finished", {"x": {"value": 1}}, [{"m": 0.5}], {"m": 0.5})
    assert run.history == [{"m": 0.5}] and run.summary_metrics == {"m": 0.5}, moved(
        "sweeps", "SweepRun's aliases sampledHistory/summaryMetrics changed")


def test_sweeps_schema_file() -> None:
    schema = compat.sweep_schema()
    assert "definitions" in schema, moved("sweeps", "config/schema.json inside the package changed")


def test_sweeps_range_values() -> None:
    from sweeps import params

    assert hasattr(getattr(params, "HyperParameter", None), "ppf"), moved("sweeps", "params.HyperParameter.ppf moved")
    values = compat.range_values("n", {"min": 1, "max": 9}, (0.01, 0.5, 0.99))
    assert values[1] == 5 and all(type(v) is int and 1 <= v <= 9 for v in values), moved(
        "sweeps", "HyperParameter.ppf no longer maps quantiles into the range")


def test_omegaconf_child_nodes() -> None:
    assert "throw_on_missing_key" in inspect.signature(OmegaConf.create({})._get_node).parameters, moved(
        "omegaconf", "DictConfig._get_node lost throw_on_missing_key")
    cfg = OmegaConf.create({"a": {"b": "${hydra:runtime.cwd}"}})
    OmegaConf.set_struct(cfg, True)
    assert compat.config_child(compat.config_child(cfg, "a"), "b") is not None  # found, not resolved
    assert compat.config_child(cfg, "missing") is None, moved("omegaconf", "_get_node on a struct config changed")
