"""A finished training run on disk: its directory, config, checkpoint, metrics, model, and the W&B run of a
post-training command."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from ocr.training.build import build_model
from ocr.training.layout import BEST_CHECKPOINT, CONFIG_FILE, METRICS_FILE
from ocr.utils.display import run_where, wandb_run
from ocr.utils.errors import UserError, yaml_error_text

MODEL_PREFIX = "model."
TRIAL_RUN = "run"  # a sweep trial folder (.sweeps/<sweep>/trials/<trial>/) holds its run directory here
RUN_SEARCH_DEPTH = 4  # levels below a non-run folder searched for the run directory to suggest
# what building the model, the data and the post-processing of a run reads from its config.yaml
RUN_CONFIG_KEYS = ("models.encoder.model_name", "models.head.postprocess", "image_size", "data", "collate_fn",
                   "trainer")


@dataclass(frozen=True)
class RunRef:
    """Where a run's files are: `run_dir` holds config.yaml (and metrics.json); `checkpoint` the weights."""

    run_dir: Path
    checkpoint: Path


def resolve_run(path: str | Path) -> RunRef:
    """A run directory, a sweep trial folder (its `run/`) or a .ckpt file (inside a run's checkpoints/) as a RunRef."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist: pass a run directory (with {CONFIG_FILE} and {BEST_CHECKPOINT}) "
                        "or a .ckpt file")
    if path.is_dir():
        run_dir = next((d for d in (path, path / TRIAL_RUN) if (d / CONFIG_FILE).is_file()), None)
        if run_dir is None:
            raise not_a_run_error(path)
        return RunRef(run_dir, run_dir / BEST_CHECKPOINT)
    run_dir = next((d for d in (path.parent, path.parent.parent) if (d / CONFIG_FILE).is_file()), path.parent.parent)
    return RunRef(run_dir, path)


def not_a_run_error(folder: Path) -> UserError:
    """The error for a folder without config.yaml, naming the run directories below it (shallowest first; not in
    hidden folders or `wandb/`, whose config.yaml files are Hydra's and W&B's)."""
    found = [path.parent for depth in range(1, RUN_SEARCH_DEPTH + 1)
             for path in sorted(folder.glob("*/" * depth + CONFIG_FILE))
             if not any(part.startswith(".") or part == "wandb" for part in path.relative_to(folder).parts[:-1])]
    what = f"{folder} is not the output directory of a training run (no {CONFIG_FILE})"
    if len(found) == 1:
        return UserError(f"{what}; the run directory below it is {found[0]}: pass that")
    if found:
        return UserError(f"{what}; it holds several run directories, e.g. {found[0]} and {found[1]}: pass one of them")
    return UserError(f"{what}: pass the directory a training run wrote (it holds {CONFIG_FILE}, {BEST_CHECKPOINT} and "
                     f"{METRICS_FILE}), or a sweep trial folder")


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved Hydra config the run was trained with."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise not_a_run_error(Path(run_dir))
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as err:
        raise UserError(f"{yaml_error_text(path, err)}; training writes this file: restore it or retrain") from None
    if not isinstance(cfg, DictConfig):
        raise UserError(f"{path} is not a run's config (expected the mapping training writes): restore it or retrain")
    if missing := [key for key in RUN_CONFIG_KEYS if OmegaConf.select(cfg, key, throw_on_missing=False) is None]:
        raise UserError(f"{path} lacks {', '.join(missing)}: not the config.yaml of a `python -m ocr.train` run; "
                        "pass the directory such a run wrote (or restore its config.yaml)")
    return cfg


def load_run_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's final metrics (metrics.json), or {} when the run has none."""
    try:
        return json.loads((Path(run_dir) / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _model_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The DBNet weights of a Lightning checkpoint (its `state_dict` keys without the `model.` prefix)."""
    if not checkpoint.is_file():
        raise UserError(f"checkpoint {checkpoint} not found: the run saved no best checkpoint (did it finish a "
                        "validation epoch?); pass the path of a .ckpt file instead")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a file that is not a checkpoint
        raise UserError(f"{checkpoint} is not a readable PyTorch checkpoint ({type(err).__name__}); "
                        "pass a Lightning .ckpt") from None
    weights = state.get("state_dict") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise UserError(f"{checkpoint} has no state_dict: it is not a Lightning checkpoint of this project's "
                        "DBNetModule")
    return {k[len(MODEL_PREFIX):]: v for k, v in weights.items() if k.startswith(MODEL_PREFIX)}


def mismatch_summary(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """None when `state` fits `model` exactly, else a short description of the differences."""
    expected = model.state_dict()
    kinds = {"missing": [k for k in expected if k not in state], "unexpected": [k for k in state if k not in expected],
             "with another shape": [k for k in expected if k in state and state[k].shape != expected[k].shape]}
    if not any(kinds.values()):
        return None
    example = (kinds["with another shape"] or kinds["missing"] or kinds["unexpected"])[0]
    return f"{', '.join(f'{len(v)} {kind}' for kind, v in kinds.items() if v)} weights (e.g. {example!r})"


def load_model(run: RunRef, cfg: DictConfig | None = None) -> torch.nn.Module:
    """The run's DBNet (built from its config, random init, no download) with the checkpoint's weights, in eval mode."""
    cfg = cfg if cfg is not None else load_run_config(run.run_dir)
    model = build_model(cfg.models, pretrained=False)  # the checkpoint supplies every weight
    state = _model_state(run.checkpoint)
    if problem := mismatch_summary(model, state):
        raise UserError(f"checkpoint {run.checkpoint} does not fit the model of {run.run_dir / CONFIG_FILE} "
                        f"({cfg.models.encoder.model_name}): {problem}; pass the checkpoint with the run directory "
                        "that trained it")
    model.load_state_dict(state)
    return model.eval()


def post_training_run(run_dir: Path, job_type: str) -> AbstractContextManager[Any | None]:
    """A new W&B run (`wandb_run`) for a post-training command, grouped with the training run of metrics.json (never
    a resume, so syncing cannot touch the training history); None when that run logged to no W&B run."""
    run_id = load_run_metrics(run_dir).get("wandb_run_id")
    if run_id is None:
        return nullcontext()
    logger = load_run_config(run_dir).get("logger") or {}
    return wandb_run(job_type, dir=str(run_dir), group=logger.get("group") or run_id, name=f"{job_type} {run_id}",
                     project=logger.get("project"), entity=logger.get("entity"),
                     config={"training_run_id": run_id, "run_dir": str(run_dir)})


def post_training_where(run_dir: Path, run: Any) -> str:
    """Where a post-training run logged to; offline, with the training run's folder, which `wandb sync` needs first."""
    training = sorted(Path(run_dir, "wandb").glob(f"offline-run-*-{run.config['training_run_id']}"))[:1]
    return run_where(run, f"group {run.group}, job {run.job_type}", training)
