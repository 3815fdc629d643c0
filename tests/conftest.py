"""Shared fixtures: the real receipts beside the repo, a tiny synthetic dataset, W&B kept offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# The same examples on every CI run (a failure there is reproducible); new ones each local run.
settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

REPO = Path(__file__).resolve().parents[1]
RECEIPTS = REPO.parent / "shared" / "data" / "receipts-sroie"


@pytest.fixture(scope="session")
def receipts() -> Path:
    """The 64 real receipts in the competition layout; missing in CI is a failure (skipped elsewhere)."""
    if not (RECEIPTS / "jsons" / "val.json").is_file():
        missing = f"real receipts not found at {RECEIPTS} (the tests that check against real data need ../shared)"
        pytest.fail(missing) if os.environ.get("CI") else pytest.skip(missing)
    return RECEIPTS


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No test may reach a W&B server or write into the repo's wandb/ folder; W&B's process state is reset after."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    for var in ("WANDB_API_KEY", "WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH", "OCR_METRICS_FILE", "OCR_STOP_FILE", "OCR_RUN_DIR"):
        monkeypatch.delenv(var, raising=False)
    yield
    if "wandb" in sys.modules:  # each test starts from a fresh W&B service, as each CLI process would
        sys.modules["wandb"].teardown()
