"""Post-processing parameter sets of a run: its own (config.yaml), the tuned ones (tuned_postprocess.txt: Hydra
overrides, one per line, `#` lines are comments), or given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from ocr.config.checks import POSTPROCESS_KEY, check_value
from ocr.utils.errors import UserError

PREFIX = f"{POSTPROCESS_KEY}."
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


def choose_params(tokens: list[str] | None, cfg: DictConfig, run_dir: Path) -> tuple[str, dict[str, Any]]:
    """(label, complete parameters) for `--postprocess` tokens: `tuned` or `default` (the run's own), then KEY=VALUE
    edits on top (label `custom`); without tokens `tuned` when the run has been tuned, else `default`."""
    params, tuned = run_params(cfg), Path(run_dir) / TUNED_FILE
    tokens = list(tokens or ["tuned" if tuned.is_file() else "default"])
    base, edits = (tokens[0], tokens[1:]) if tokens[0] in CHOICES else ("default", tokens)
    if base == "tuned" and not tuned.is_file():
        raise UserError(f"no tuned post-processing for this run ({tuned} is missing): run "
                        f"`python wandb_sweep.py tune-postprocess {run_dir}` first, or pass --postprocess default")
    if base == "tuned":
        lines = [line.strip() for line in tuned.read_text(encoding="utf-8").splitlines()]
        params.update(parse_assignments([x for x in lines if x and not x.startswith("#")], set(params), str(tuned)))
    params.update(parse_assignments(edits, set(params), "--postprocess"))
    return ("custom" if edits else base), params


def describe(params: dict[str, Any]) -> str:
    """One line listing the parameters as `key=value`."""
    return ", ".join(o.removeprefix(PREFIX) for o in overrides(params))


def overrides(params: dict[str, Any]) -> list[str]:
    """Hydra overrides `models.head.postprocess.KEY=VALUE` for `params`, in a stable order (booleans in lower case)."""
    return [f"{PREFIX}{key}={str(value).lower() if isinstance(value, bool) else value}"
            for key, value in sorted(params.items())]


def parse_assignments(items: list[str], known_keys: set[str], where: str) -> dict[str, Any]:
    """`KEY=VALUE` or `models.head.postprocess.KEY=VALUE` strings as {KEY: value} (values parsed as YAML, each one
    that the config rules accept)."""
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        key = name.strip().removeprefix(PREFIX)
        if not sep or key not in known_keys:
            raise UserError(f"{where}: {item!r} is not KEY=VALUE with KEY one of {', '.join(sorted(known_keys))}")
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"{where}: {item!r}: cannot read the value {text!r}") from None
        try:
            check_value(PREFIX + key, out[key])
        except UserError as err:
            raise UserError(f"{where}: {err}") from None
    return out
