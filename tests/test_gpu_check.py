"""bench/gpu_check.py --dry-run: every section of the GPU check runs on the CPU at tiny sizes, so it does not rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_run_fills_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "WANDB_MODE": "disabled", "OCR_MEMORY_CACHE": str(tmp_path / "memory.json")}
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(tmp_path / "out")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["dry_run"] and report["device"] == "cpu"
    sections = ("throughput", "memory", "loader", "oom_retry", "sweep")
    assert not [name for name in sections if "error" in report[name]], done.stdout[-3000:]
    assert [row["mode"] for row in report["throughput"]] == ["fp32", "bf16-mixed", "bf16+channels_last"]
    assert all(row["images_per_s"] > 0 for row in report["throughput"])
    assert {row["mode"] for row in report["memory"]["rows"]} == {"fp32", "bf16-mixed"}
    assert all(row["largest_fit"] == 2 and row["predicted_per_image"] > 0 for row in report["memory"]["rows"])
    assert report["loader"]["steps"] >= 1 and 0 <= report["loader"]["busy"] <= 1
    oom = report["oom_retry"]
    assert oom["ok"] and (oom["requested"], oom["used"], oom["accumulate"]) == (8, 2, 4) and len(oom["retries"]) == 2
    assert report["sweep"]["ok"] and report["sweep"]["trials"][0]["state"] == "finished"
    text = (tmp_path / "out" / "gpu_check.txt").read_text()
    assert all(f"\n{name} (" in text for name in sections)
