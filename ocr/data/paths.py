"""Where the dataset lives: the configured/env path, or a cached synthetic dataset generated on demand."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from dotenv import dotenv_values
from filelock import FileLock

from ocr.utils.errors import UserError

ENV_VAR = "DATASET_BASE_PATH"


def _from_environment() -> tuple[str | None, str]:
    """DATASET_BASE_PATH from the environment, else from `./.env`; with a label saying which."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        return value, f"{ENV_VAR} in the environment"
    env_file = Path.cwd() / ".env"
    value = (dotenv_values(env_file).get(ENV_VAR) or "").strip() if env_file.is_file() else ""
    return (value, f"{ENV_VAR} in {env_file}") if value else (None, "")


def resolve_dataset_root(configured: str | os.PathLike | None) -> Path | None:
    """The dataset root: `configured`, else DATASET_BASE_PATH (environment, then `./.env`), else None.

    None means "nothing configured: use the synthetic dataset". `~` is expanded; a trailing slash is fine.
    Raises UserError when the chosen path is not an existing folder.
    """
    value = str(configured).strip() if configured is not None else ""
    source = "dataset_base_path"
    if not value:
        value, source = _from_environment()
        if value is None:
            return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise UserError(
            f"dataset folder {str(root)!r} (from {source}) does not exist: point dataset_base_path= or "
            f"{ENV_VAR} at a folder holding images/ and jsons/, or unset both to train on the synthetic dataset"
        )
    return root


def synthetic_cache_key(**params: object) -> str:
    """Short stable hash of the generator parameters (and its version), naming the cached dataset."""
    from ocr.data.synthetic import GENERATOR_VERSION

    blob = json.dumps({"version": GENERATOR_VERSION, **params}, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ensure_dataset(
    root: Path | None,
    synthetic_dir: str | os.PathLike,
    n_train: int = 64,
    n_val: int = 16,
    n_test: int = 8,
    seed: int = 0,
    size: tuple[int, int] = (320, 640),
    text_height: tuple[float, float] | None = None,
) -> Path:
    """`root` if given; else the synthetic dataset for these parameters under `synthetic_dir`, generated once.

    Concurrent callers are safe: generation holds a file lock and publishes by renaming a finished temp dir.
    """
    if root is not None:
        return Path(root)
    from ocr.data.synthetic import DEFAULT_TEXT_HEIGHT, generate_dataset

    size = (int(size[0]), int(size[1]))
    text_height = DEFAULT_TEXT_HEIGHT if text_height is None else (float(text_height[0]), float(text_height[1]))
    base = Path(synthetic_dir).expanduser()
    key = synthetic_cache_key(n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, size=size, text_height=text_height)
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
            generate_dataset(tmp, n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, size=size, progress=False, text_height=text_height)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
