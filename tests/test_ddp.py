"""Two DDP processes (CPU, gloo) score a run exactly as one process does: same CLEval figures to the last digit,
every validation image cached once, no traceback on any rank, the run's files and reports written once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
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


def small_ddp_run(tmp_path: Path, *, path: list[Path] = (), **extra: object) -> tuple[list[str], dict[str, str]]:
    """argv and environment of a two-process CPU run of a small model on 64 px synthetic receipts (W&B disabled);
    `path`: folders put first on PYTHONPATH (the tests' folder always follows the repo)."""
    overrides = {
        "models.encoder.model_name": "hrnet_w18_small", "models.encoder.pretrained": "false",
        "models.decoder.inner_channels": 64, "models.decoder.smooth_channels": 16, "image_size": 64,
        "batch_size": 2, "scheduler": "none", "trainer.max_epochs": 1, "data.synthetic.dir": tmp_path / "synthetic",
        "data.synthetic.n_train": 8, "data.synthetic.n_val": 3, "data.synthetic.n_test": 1, "dataset_base_path": "null",
        "data.num_workers": 0, "metric.workers": 1, "log_val_images": 0, "cache_val_maps": "false",
        "trainer.enable_progress_bar": "false", "trainer.accelerator": "cpu", "trainer.devices": 2,
        "trainer.strategy": "ddp", "hydra.run.dir": tmp_path / "run", **extra,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*path, REPO, REPO / "tests"])), "WANDB_MODE": "disabled"}
    return [sys.executable, "-m", "ocr.train", *(f"{k}={v}" for k, v in overrides.items())], env


@pytest.mark.slow
def test_sigterm_to_rank_zero_stops_every_rank_cleanly(tmp_path: Path) -> None:
    """W&B's agent stops a trial (hyperband) with SIGTERM to the process it started, rank zero, and SIGKILL 30 s on."""
    argv, env = small_ddp_run(tmp_path, **{"trainer.max_epochs": 100})
    metrics_file = tmp_path / "metrics.jsonl"
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", OCR_METRICS_FILE=str(metrics_file))
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (metrics_file.is_file() and metrics_file.read_text().count("\n")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no epoch logged in 300 s"
            time.sleep(0.2)
        proc.terminate()
        start = time.monotonic()
        output = proc.communicate(timeout=30)[0]
        print(f"ended {time.monotonic() - start:.1f} s after SIGTERM")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # every rank, should one hang
    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["stopped_early"] is True and metrics["epochs_run"] < 100 and metrics["best_checkpoint"]
    assert 0.0 <= metrics["val/cleval_hmean"] <= 1.0


class OOMAboveOne(L.Callback):
    """A simulated CUDA out-of-memory error on every rank for batches of more than one image."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        if len(batch["images"]) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


@pytest.mark.slow
def test_every_rank_retries_an_out_of_memory_error_with_half_the_batch(tmp_path: Path) -> None:
    argv, env = small_ddp_run(tmp_path, batch_size=4, **{"+callbacks.oom._target_": f"{__name__}.OOMAboveOne"})
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in output, output[-3000:]
    assert len(re.findall(r"CUDA out of memory at batch (4|2): retrying", output)) == 4, "twice on each rank"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["batch/used"], metrics["batch/accumulate"]) == (1, 4) and metrics["best_checkpoint"]


class OOMOnOneRank(L.Callback):
    """A simulated CUDA out-of-memory error on the rank `$OCR_TEST_OOM_RANK` only, for batches of more than one image."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        if trainer.global_rank == int(os.environ["OCR_TEST_OOM_RANK"]) and len(batch["images"]) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")


SHORT_WAIT = '''"""Test double started with every rank: the ranks wait 5 s for each other after an out-of-memory error."""
from ocr.training import run

run.OOM_AGREE_S = 5.0
'''


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_out_of_memory_on_one_rank_ends_every_rank_with_one_line(tmp_path: Path, rank: int) -> None:
    """The other rank waits in a collective that will never complete: every rank must end, with the reason."""
    (tmp_path / "double").mkdir()
    (tmp_path / "double" / "sitecustomize.py").write_text(SHORT_WAIT)
    argv, env = small_ddp_run(tmp_path, path=[tmp_path / "double"], batch_size=4,
                              **{"+callbacks.oom._target_": f"{__name__}.OOMOnOneRank"})
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=tmp_path, env={**env, "OCR_TEST_OOM_RANK": str(rank)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output = proc.communicate(timeout=180)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # every rank, should one hang
    print(f"ended in {time.monotonic() - start:.1f} s, exit {proc.returncode}")
    assert proc.returncode != 0 and "Traceback" not in output, output[-3000:]
    assert f"CUDA out of memory on rank {rank} of 2 only, at batch 4 per device" in output, output[-3000:]
    assert "retrying" not in output and not (tmp_path / "run" / "metrics.json").exists()


SITECUSTOMIZE = '''"""Test double started with every rank: a GPU whose free memory depends on the rank."""
import os

from ocr.training import batch_size
from ocr.training.memory import Footprint

batch_size.footprint = lambda *args, **kwargs: Footprint(0, 0.0, 20000.0)  # 4 images of 64 px per 0.5 GiB
batch_size.visible_gpu = lambda devices=None: (0.5 if os.environ.get("LOCAL_RANK", "0") == "0" else 0.25, "a test double")
'''


class RecordPlan(L.Callback):
    """Writes each rank's first training batch size and accumulation to `rank<N>.json` in the working directory."""

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        if batch_idx == 0:
            Path(f"rank{trainer.global_rank}.json").write_text(
                json.dumps([len(batch["images"]), trainer.accumulate_grad_batches]))


@pytest.mark.slow
def test_every_rank_runs_rank_zeros_batch_plan(tmp_path: Path) -> None:
    """A test double answers 4 images for rank zero and 2 for rank one: both run 4 x 2 accumulation steps, the plan
    rank zero made (each planning its own hung)."""
    (tmp_path / "double").mkdir()
    (tmp_path / "double" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    argv, env = small_ddp_run(tmp_path, path=[tmp_path / "double"], batch_size=8, **{
        "data.synthetic.n_train": 16, "trainer.accelerator": "auto",  # auto: the test double's GPU is planned for
        "+callbacks.plan._target_": f"{__name__}.RecordPlan"})
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # apart: a hang
    assert proc.returncode == 0 and "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    plans = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert plans == [[4, 2], [4, 2]]
