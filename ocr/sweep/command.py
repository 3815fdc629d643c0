"""A trial's command line and parameter file, built exactly as W&B's CLI agent (`wandb agent`) builds them."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

Params = dict[str, dict[str, Any]]  # W&B's run-config form: {"key": {"value": v}}


def trial_command(sweep_config: dict[str, Any], params: Params) -> list[str]:
    """The argv `wandb agent` would run for `params`: the sweep's `command` with W&B's macros expanded.

    The macro table comes from wandb's own `create_sweep_command_args`; `${interpreter}`, `${program}` and
    `${env}` get the values wandb's agent gives them (`python`, the sweep's `program`, `/usr/bin/env`).
    """
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = sweep_utils.create_sweep_command(list(sweep_config.get("command") or []))
    sweep_vars: dict[str, Any] = sweep_utils.create_sweep_command_args({"args": params})
    sweep_vars["interpreter"] = ["python"]
    sweep_vars["program"] = [sweep_config.get("program")]
    if platform.system() != "Windows":
        sweep_vars["env"] = ["/usr/bin/env"]
    argv: list[str] = []
    for chunk in map(str, command):
        if chunk.startswith("${") and chunk.endswith("}"):
            argv += [str(v) for v in sweep_vars.get(chunk[2:-1]) or []]
        else:
            argv.append(chunk)
    return argv


def hydra_overrides(params: Params) -> list[str]:
    """`key=value` overrides for `params`, formatted as W&B's `${args_no_hyphens}` formats them."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    return list(sweep_utils.create_sweep_command_args({"args": params})["args_no_hyphens"])


def write_param_file(path: Path, params: Params) -> None:
    """Write the file `WANDB_SWEEP_PARAM_PATH` points at, in the agent's format (wandb's own writer)."""
    from wandb.sdk.lib import config_util

    config_util.save_config_file_from_dict(str(path), params)
