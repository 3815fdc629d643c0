"""Every private API of another package that the project uses, each behind one function.

Checked against wandb 0.31.0, lightning 2.6.6, sweeps 0.2.0 (under pydantic 2.13), omegaconf 2.3.1 and
hydra-core 1.3.8; tests/test_compat.py fails, naming the package and what moved, when an upgrade moves one.
The packages are imported inside the functions, so importing this module loads none of them.
"""

from __future__ import annotations

import functools
import json
import typing
import warnings
from pathlib import Path
from typing import Any


@functools.cache
def lightning_precisions() -> tuple[Any, ...]:
    """The `precision` values Lightning's Trainer accepts (`lightning.fabric.connector._PRECISION_INPUT`
    flattened); empty if Lightning moved them."""
    try:
        from lightning.fabric.connector import _PRECISION_INPUT
    except ImportError:
        return ()

    def flatten(hint: Any) -> list[Any]:
        args = typing.get_args(hint)
        return [v for a in args for v in flatten(a)] if args else [hint]

    return tuple(flatten(_PRECISION_INPUT))


def sweep_command(command: list[Any]) -> list[Any]:
    """A sweep's `command` as W&B's agent reads it (its default when empty)."""
    from wandb.sdk.launch.sweeps import utils

    return utils.create_sweep_command(command)


def sweep_macros(params: dict[str, Any]) -> dict[str, Any]:
    """W&B's agent macros for `params` ({key: {"value": v}}): `args`, `args_no_hyphens`, ... (not `env`,
    `interpreter`, `program`)."""
    from wandb.sdk.launch.sweeps import utils

    return utils.create_sweep_command_args({"args": params})


def write_param_file(path: Path, params: dict[str, Any]) -> None:
    """Write the file `WANDB_SWEEP_PARAM_PATH` points at, with wandb's own writer."""
    from wandb.sdk.lib import config_util

    config_util.save_config_file_from_dict(str(path), params)


def generate_id() -> str:
    """A fresh W&B run id (8 characters of W&B's id alphabet)."""
    from wandb.sdk.lib.runid import generate_id as wandb_id

    return wandb_id()


def wandb_settings_base_url() -> str:
    """The server in wandb's settings (`wandb login --host`, else its default); reads files, starts no service."""
    from wandb.sdk import wandb_setup

    return wandb_setup.singleton().settings.base_url


def agent_max_initial_failures(default: int) -> int:
    """`wandb agent`'s failure limit: WANDB_AGENT_MAX_INITIAL_FAILURES, else `default`."""
    import wandb.env

    return wandb.env.get_agent_max_initial_failures(default)


def import_sweeps() -> Any:
    """The `sweeps` package, without the warning pydantic 2 gives on import about its pydantic-1 model config."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Valid config keys have changed in V2", category=UserWarning)
        import sweeps
    return sweeps


def sweep_run(name: str, state: str, config: dict[str, Any], history: list[dict], summary: dict) -> Any:
    """A `sweeps.SweepRun`, given by its aliases: under pydantic 2, sweeps 0.2.0 silently drops
    `history=`/`summary_metrics=` (its population-by-field-name setting is pydantic 1's spelling)."""
    return import_sweeps().SweepRun(name=name, state=state, config=config, sampledHistory=history,
                                    summaryMetrics=summary)


@functools.cache
def sweep_schema() -> dict[str, Any]:
    """W&B's sweep-config JSON schema, as shipped inside the `sweeps` package."""
    path = Path(import_sweeps().__file__).parent / "config" / "schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


def range_values(name: str, spec: dict[str, Any], quantiles: tuple[float, ...]) -> list[Any]:
    """The values the `sweeps` engine draws for range parameter `spec` at `quantiles`, as Python scalars."""
    import_sweeps()
    from sweeps.params import HyperParameter

    parameter = HyperParameter(name, spec)
    return [value.item() if hasattr(value, "item") else value for value in map(parameter.ppf, quantiles)]


def config_child(node: Any, key: str) -> Any:
    """Child `key` of an OmegaConf DictConfig without resolving interpolations (`_get_node`); None when absent."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    try:
        return node._get_node(key, throw_on_missing_key=False)
    except (ConfigAttributeError, ConfigKeyError):  # struct configs raise instead of returning None
        return None
