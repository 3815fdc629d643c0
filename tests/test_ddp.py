"""Two DDP processes (CPU, gloo) score a run exactly as one process does: same CLEval figures to the last digit,
every validation image cached once, no traceback on any rank, the run's files and reports written once."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ocr.inference.maps import build_val_cache
from ocr.inference.runs import resolve_run

REPO = Path(__file__).resolve().parents[1]
N_VAL = 7  # odd: the distributed sampler repeats an image to even out the two ranks


@pytest.mark.slow
def test_two_processes_score_like_one(tmp_path: Path) -> None:
    overrides = {
        "models.encoder.model_name": "hrnet_w18_small", "models.encoder.pretrained": "false",
        "models.decoder.inner_channels": 64, "models.decoder.smooth_channels": 16,
        "image_size": 160, "batch_size": 2, "optimizer.lr": 0.003, "scheduler": "none", "trainer.max_epochs": 2,
        "data.synthetic.dir": tmp_path / "synthetic", "data.synthetic.n_train": 32, "data.synthetic.n_val": N_VAL,
        "data.synthetic.n_test": 1, "data.synthetic.size": "[160,192]",
        "data.synthetic.text_height": "[0.05,0.07]",  # words of 8 px and more at 160 px
        "dataset_base_path": "null", "data.num_workers": 0, "metric.workers": 1, "log_val_images": 1,
        "trainer.enable_progress_bar": "false", "trainer.accelerator": "cpu", "trainer.devices": 2,
        "trainer.strategy": "ddp", "hydra.run.dir": tmp_path / "run", "tuning.count": 2, "tuning.workers": 1,
    }
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "OCR_METRICS_FILE": str(tmp_path / "metrics.jsonl")}
    proc = subprocess.run([sys.executable, "-m", "ocr.train", *(f"{k}={v}" for k, v in overrides.items())],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]

    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line.get("epoch") for line in lines] == [0, 1, None] and lines[-1]["final"], "one line each, rank 0's"
    assert len(re.findall(r"^final \(best checkpoint\): .*$", proc.stdout, re.M)) == 1, proc.stdout
    assert metrics["val/cleval_hmean_tuned"] >= metrics["val/cleval_hmean"], "the search ran after the merged cache"
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1 and metrics["wandb_run_id"]
    epochs = re.findall(r"- epoch (\d)/2 .*?(val/.*)$", proc.stdout + proc.stderr, re.M)
    assert len(epochs) == 4 and len(set(epochs)) == 2, f"each rank prints the same val figures: {epochs}"

    cached = json.loads((run / "val_cache" / "index.json").read_text())["images"]
    assert [image["name"] for image in cached] == [f"val_{i:05d}.jpg" for i in range(N_VAL)]
    assert not list(run.glob(".rank*")), "the ranks' parts are merged and removed"

    one = tmp_path / "one"  # the same checkpoint, validated by one process
    shutil.copytree(run / "checkpoints", one / "checkpoints")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["trainer"].update(devices=1, strategy="auto")
    (one / "config.yaml").write_text(yaml.safe_dump(config))
    _, single = build_val_cache(resolve_run(one))
    scores = {k: v for k, v in single.items() if k.startswith("val/cleval_")}
    assert len(scores) == 3 and scores == {k: metrics[k] for k in scores}, (scores, metrics)
    assert metrics["val/cleval_hmean"] > 0, "a run that detects words: the comparison means something"
    assert (one / "val_cache" / "index.json").read_bytes() == (run / "val_cache" / "index.json").read_bytes()
    maps = [np.fromfile(path / "val_cache" / "maps.f16", np.float16).astype(np.float32) for path in (one, run)]
    np.testing.assert_allclose(*maps, rtol=0, atol=1e-3)  # other batches, other float rounding: a few ulps
