"""Post-processing parameter sets of a run: its own (config.yaml), the tuned ones (tuned_postprocess.txt), or given.

`tuned_postprocess.txt` holds Hydra overrides, one per line (`#` lines are comments), so it can be handed
to training as is: `python -m ocr.train $(grep -v '^#' RUN/tuned_postprocess.txt)`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ocr.tuning.space import PREFIX, overrides, parse_assignments
from ocr.utils.errors import UserError

TUNED_FILE = "tuned_postprocess.txt"
CHOICES = ("default", "tuned")


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The run's own post-processing arguments (`models.head.postprocess` without `_target_`)."""
    node = OmegaConf.to_container(cfg.models.head.postprocess, resolve=True)
    return {k: v for k, v in node.items() if not k.startswith("_")}


def write_tuned(run_dir: Path, params: dict[str, Any], header: list[str]) -> Path:
    """Write `params` as Hydra override lines under `#`-comment `header` lines; returns the file."""
    path = Path(run_dir) / TUNED_FILE
    lines = [f"# {line}" for line in header] + overrides(params)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_tuned(run_dir: Path, known_keys: set[str]) -> dict[str, Any]:
    """The parameters saved by `tune-postprocess` for `run_dir`."""
    path = Path(run_dir) / TUNED_FILE
    if not path.is_file():
        raise UserError(
            f"no tuned post-processing for this run ({path} is missing): run "
            f"`python wandb_sweep.py tune-postprocess {run_dir}` first, or pass --postprocess default"
        )
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return parse_assignments([line for line in lines if line and not line.startswith("#")], known_keys, str(path))


def choose_params(tokens: list[str] | None, cfg: DictConfig, run_dir: Path) -> tuple[str, dict[str, Any]]:
    """(label, complete parameters) for `--postprocess` tokens.

    Tokens: `tuned` or `default` (the run's own), then KEY=VALUE edits on top (label `custom`). Without
    tokens: `tuned` when the run has been tuned, else `default`.
    """
    params = run_params(cfg)
    tokens = list(tokens or [])
    if not tokens:
        tokens = ["tuned"] if (Path(run_dir) / TUNED_FILE).is_file() else ["default"]
    base = tokens[0] if tokens[0] in CHOICES else "default"
    edits = tokens[1:] if tokens[0] in CHOICES else tokens
    if base == "tuned":
        params.update(read_tuned(run_dir, set(params)))
    params.update(parse_assignments(edits, set(params), "--postprocess"))
    return ("custom" if edits else base), params


def describe(params: dict[str, Any]) -> str:
    """One line listing the parameters as `key=value`."""
    return ", ".join(o.removeprefix(PREFIX) for o in overrides(params))
