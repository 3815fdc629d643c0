"""Where the dataset lives: the configured or DATASET_BASE_PATH folder, else cached synthetic receipts."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values
from filelock import FileLock

from ocr.data.synthetic import DEFAULT_TEXT_HEIGHT, GENERATOR_VERSION, generate_dataset
from ocr.utils.errors import UserError

ENV_VAR = "DATASET_BASE_PATH"
SYNTHETIC_DEFAULTS = {"dir": "data/synthetic", "n_train": 64, "n_val": 16, "n_test": 8, "seed": 0,
                      "size": (320, 640), "text_height": DEFAULT_TEXT_HEIGHT}


def resolve_dataset_root(configured: str | os.PathLike | None) -> Path | None:
    """`configured`, else DATASET_BASE_PATH (environment, then ./.env), else None (synthetic); UserError if missing."""
    value, source = (str(configured).strip() if configured is not None else ""), "dataset_base_path"
    if not value:
        env_file = Path.cwd() / ".env"
        value, source = os.environ.get(ENV_VAR, "").strip(), f"{ENV_VAR} in the environment"
        if not value and env_file.is_file():
            value, source = (dotenv_values(env_file).get(ENV_VAR) or "").strip(), f"{ENV_VAR} in {env_file}"
        if not value:
            return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset folder {str(root)!r} (from {source}) does not exist: point dataset_base_path= or "
                        f"{ENV_VAR} at a folder holding images/ and jsons/, or unset both to train on the synthetic "
                        "dataset")
    return root


def dataset_root(configured: str | os.PathLike | None, synthetic: Mapping | None = None) -> Path:
    """The folder to read: `resolve_dataset_root(configured)`, else the synthetic receipts `synthetic` describes (`dir`
    and `generate_dataset`'s counts, seed, size and text_height; defaults: SYNTHETIC_DEFAULTS), generated once per
    parameter set (also when several processes ask at once)."""
    root = resolve_dataset_root(configured)
    if root is not None:
        return root
    params = {**SYNTHETIC_DEFAULTS, **(synthetic or {})}
    base = Path(params.pop("dir")).expanduser()
    params["size"] = (int(params["size"][0]), int(params["size"][1]))
    params["text_height"] = (float(params["text_height"][0]), float(params["text_height"][1]))
    blob = json.dumps({"version": GENERATOR_VERSION, **params}, sort_keys=True, default=list)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    target = base / f"synthetic-{key}"
    if target.is_dir():
        return target
    base.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / f".synthetic-{key}.lock")):
        if target.is_dir():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".synthetic-{key}-", dir=base))
        tmp.chmod(0o755)
        try:
            generate_dataset(tmp, **params, progress=False)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
