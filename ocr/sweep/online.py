"""Sweeps on a W&B server: create, run W&B's CLI agent (one process per trial), read results back."""

from __future__ import annotations

import os
from typing import Any

from ocr.utils.env import wandb_base_url, wandb_key_is_set
from ocr.utils.errors import UserError

DEFAULT_PROJECT = "OCR-HRNet-Sweep"  # W&B project when neither --project, WANDB_PROJECT nor the YAML names one
OFFLINE_HINT = "to sweep without W&B, add --offline (or set WANDB_MODE=offline)"
SERVER_HINT = "check the network (or WANDB_BASE_URL); a local sweep id starts with local- (list: --best --offline)"


def project_name(option: str | None = None, config: str | None = None) -> str:
    """The W&B project: `option` (e.g. --project), else $WANDB_PROJECT, else `config` (a sweep YAML's), else ours."""
    return option or os.environ.get("WANDB_PROJECT") or config or DEFAULT_PROJECT


def entity_name(option: str | None = None, config: str | None = None) -> str | None:
    """The W&B entity: `option`, else $WANDB_ENTITY, else `config`, else None (the account's default)."""
    return option or os.environ.get("WANDB_ENTITY") or config


def require_api_key() -> None:
    if not wandb_key_is_set():
        raise UserError(f"W&B online mode needs an API key: run `wandb login` or set WANDB_API_KEY in .env; "
                        f"{OFFLINE_HINT}")


def _server_error(action: str, err: BaseException, hint: str = OFFLINE_HINT) -> UserError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0].rstrip(". ")
    return UserError(f"could not {action} on W&B at {wandb_base_url()}: {first}; {hint}")


def create_sweep(config: dict[str, Any], project: str, entity: str | None) -> str:
    """Create the sweep on the W&B server (`wandb.sweep`); returns its id."""
    import wandb

    require_api_key()
    try:
        return wandb.sweep(sweep=config, project=project, entity=entity)
    except Exception as err:  # wandb raises its own errors, requests', or ValueError for a refused config
        raise _server_error("create the sweep", err) from None


def sweep_path(sweep_id: str, project: str, entity: str | None) -> str:
    """`entity/project/id` (or `project/id`) unless `sweep_id` already is a path."""
    return sweep_id if "/" in sweep_id else "/".join(p for p in (entity, project, sweep_id) if p)


def fetch_sweep(sweep_id: str, project: str, entity: str | None) -> Any:
    """The W&B public-API sweep object; `UserError` for an unknown id or an unreachable server."""
    import wandb

    require_api_key()
    path = sweep_path(sweep_id, project, entity)
    try:
        return wandb.Api().sweep(path)
    except ValueError:
        raise UserError(f"unknown sweep id {sweep_id!r}: W&B has no sweep {path} (check --project/--entity, "
                        "or create one with --create-sweep)") from None
    except Exception as err:
        raise _server_error(f"read sweep {path}", err, SERVER_HINT) from None


def run_agent(sweep_id: str, project: str, entity: str | None, count: int | None) -> int:
    """W&B's CLI agent: each trial is its own process started from the sweep's `command`; exit status 0."""
    import wandb

    fetch_sweep(sweep_id, project, entity)  # unknown id or no server: one line now, not a stack trace later
    wandb.agent(sweep_id, function=None, entity=entity, project=project, count=count)
    return 0

