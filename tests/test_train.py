"""One training run end to end on tiny synthetic receipts: outputs, metrics file, stop file, OOM retry, CLI errors."""

from __future__ import annotations

import io
import json
import logging
import re
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from ocr.config.checks import check_config
from ocr.training import batch_size as batch_size_lib
from ocr.training import build as build_lib
from ocr.training import module as module_lib
from ocr.training.build import check_devices, log_interval
from ocr.training.memory import Footprint
from ocr.training.quiet import LIGHTNING_INFO, LIGHTNING_LOGGERS, quiet_lightning
from ocr.sweep.controller import read_metrics
from ocr.training.run import caused_by_oom, train
from ocr.tuning.tune import after_training
from ocr.utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def tiny_overrides(data_dir: Path, **extra: object) -> list[str]:
    """A CPU-seconds run (`experiment=smoke`: small HRNet, 64 px images, a handful of synthetic receipts) in
    `data_dir`."""
    base = {"experiment": "smoke", "data.synthetic.dir": str(data_dir), "dataset_base_path": "null", **extra}
    return [f"{k}={v}" for k, v in base.items()]


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


LEARN = {  # settings that learn within 4 CPU epochs (sweep_configs/demo_cpu.yaml): 160 px, large text
    "image_size": 160,
    "scheduler": "none",
    "models.decoder.inner_channels": 64,
    "models.decoder.smooth_channels": 16,
    "data.synthetic.size": "[160,192]",
    "data.synthetic.text_height": "[0.05,0.07]",  # words of 8 px and more at 160 px (the minimum text size)
}


@pytest.fixture(scope="session")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One run that learns the synthetic receipts (hmean > 0.3): its metrics and best checkpoint."""
    root = tmp_path_factory.mktemp("learned")
    overrides = tiny_overrides(root / "synthetic", batch_size=8, **{
        **LEARN, "trainer.max_epochs": 4, "optimizer.lr": 0.003, "data.synthetic.n_train": 48,
        "data.synthetic.n_val": 12})
    metrics = train(compose_train(overrides), root / "run")
    return metrics, Path(metrics["best_checkpoint"])


class StartFromWeights(L.Callback):
    """Loads a learned model's weights as fit starts (again after an OOM retry), so a run of a few steps sees text."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.load_state_dict(torch.load(self.path, map_location="cpu", weights_only=False)["state_dict"])


class BlindFromSecondEpoch(L.Callback):
    """From the second epoch on the probability map is ~0 everywhere: no detection, hmean 0 (worse than epoch 0)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            with torch.no_grad():
                pl_module.model.head.prob_branch[-1].bias.fill_(-50.0)


@pytest.fixture(scope="session")
def visible_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("visible")


def visible_overrides(data_dir: Path, learned: tuple[dict, Path], **extra: object) -> list[str]:
    """A tiny run on receipts with visible text, starting from the learned weights (lr 1e-7 keeps them)."""
    return tiny_overrides(data_dir, **{**LEARN, "optimizer.lr": 1e-7, "+callbacks.start._target_":
                                       f"{__name__}.StartFromWeights", "+callbacks.start.path": str(learned[1]),
                                       **extra})


def test_run_writes_checkpoint_config_metrics_and_epoch_lines(tmp_path: Path, visible_dir: Path, learned, monkeypatch) -> None:
    metrics_file = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("OCR_METRICS_FILE", str(metrics_file))
    run_dir = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(compose_train(visible_overrides(visible_dir, learned, **{
            "+callbacks.blind._target_": f"{__name__}.BlindFromSecondEpoch"})), run_dir)
    noise = ("LeafSpec` is deprecated", "smaller than the logging interval", "when using `ckpt_path`")
    assert not [str(w.message) for w in caught if any(n in str(w.message) for n in noise)]

    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "config.yaml").is_file()
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    for key in ("val/cleval_hmean", "val/cleval_recall", "val/cleval_precision", "val/loss"):
        assert 0.0 <= metrics[key] if "cleval" not in key else 0.0 <= metrics[key] <= 1.0
    lines = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    assert [line["epoch"] for line in lines[:-1]] == [0, 1]
    assert all("val/cleval_hmean" in line for line in lines)
    assert lines[-1]["final"] is True
    # the final metrics are the best checkpoint's (epoch 0 sees text), not the last epoch's (blind: 0.0)
    first, last = lines[0], lines[1]
    assert first["val/cleval_hmean"] > 0.0 == last["val/cleval_hmean"], lines
    assert metrics["best_epoch"] == 0 and metrics["val/cleval_hmean"] == pytest.approx(first["val/cleval_hmean"], abs=1e-6)
    assert metrics["val/cleval_recall"] == pytest.approx(first["val/cleval_recall"], abs=1e-6)
    assert list((run_dir / "wandb").glob(f"offline-run-*-{metrics['wandb_run_id']}")), "an offline W&B run, named in metrics.json"
    records = b"".join(p.read_bytes() for p in (run_dir / "wandb").glob("offline-run-*/*.wandb"))
    assert b"val/predictions/val_0000" in records, "each epoch's overlay goes to W&B under its image's own key"


def test_post_processing_search_after_training_logs_tuned_scores(tmp_path: Path, visible_dir: Path, learned) -> None:
    overrides = visible_overrides(visible_dir, learned, **{
        "trainer.max_epochs": 1, "cache_val_maps": "true", "metric.workers": 2,  # the metric pool, across passes
        "tuning.count": 3, "tuning.workers": 1,  # the default method: grid
    })
    run_dir, cfg = tmp_path / "run", compose_train(overrides)
    metrics = train(cfg, run_dir, after_fit=after_training(cfg.tuning, cfg.seed))
    assert metrics["val/cleval_hmean"] > 0.0, "the run detects text"
    # the run's own values are the floor; val/cleval_hmean went through Lightning's float32 logging
    assert np.float32(metrics["val/cleval_hmean_tuned"]) >= np.float32(metrics["val/cleval_hmean"])
    assert (run_dir / "tuned_postprocess.txt").is_file()
    trials = json.loads((run_dir / "tune_postprocess.json").read_text())["trials"]
    assert len(trials) == 3
    assert json.loads((run_dir / "metrics.json").read_text())["val/cleval_hmean_tuned"] == metrics["val/cleval_hmean_tuned"]


def test_post_processing_search_needs_the_cache(tmp_path: Path, synthetic_dir: Path) -> None:
    overrides = tiny_overrides(synthetic_dir, **{"tuning.count": 3, "cache_val_maps": "false"})
    with pytest.raises(UserError, match="set cache_val_maps=true"):
        train(compose_train(overrides), tmp_path / "run")


class SigtermAfterFirstEpoch(L.Callback):
    """Sends this process SIGTERM once the first epoch is validated, as a W&B agent stopping a trial does."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_from_a_wandb_agent_ends_the_run_cleanly(tmp_path: Path, visible_dir: Path, learned) -> None:
    overrides = visible_overrides(visible_dir, learned, **{"trainer.max_epochs": 3, "+callbacks.sigterm._target_":
                                                 f"{__name__}.SigtermAfterFirstEpoch"})
    metrics = train(compose_train(overrides), tmp_path / "run")
    assert metrics["stopped_early"] is True and metrics["epochs_run"] < 3
    assert 0.0 < metrics["val/cleval_hmean"] <= 1.0 and metrics["best_checkpoint"]  # epoch 0 scored detections
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["stopped_early"] is True


def test_stop_file_ends_training_after_the_current_epoch(tmp_path: Path, synthetic_dir: Path, monkeypatch) -> None:
    stop = tmp_path / "stop"
    stop.touch()
    monkeypatch.setenv("OCR_STOP_FILE", str(stop))
    metrics = train(compose_train(tiny_overrides(synthetic_dir, **{"trainer.max_epochs": 5})), tmp_path / "run")
    assert metrics["stopped_early"] is True and metrics["epochs_run"] == 1


class StopDecidedAfterFirstEpoch(L.Callback):
    """A sweep controller's decision read from the first epoch's metrics: the stop file appears once that epoch is
    validated and logged; records every training step it sees (epoch, batch)."""

    steps: list[tuple[int, int]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            Path(os.environ["OCR_STOP_FILE"]).touch()

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self.steps.append((trainer.current_epoch, args[-1]))


def test_a_stop_decided_after_an_epoch_ends_the_run_within_one_step(tmp_path: Path, visible_dir: Path, learned,
                                                                     monkeypatch) -> None:
    monkeypatch.setenv("OCR_STOP_FILE", str(tmp_path / "stop"))
    monkeypatch.setenv("OCR_METRICS_FILE", str(tmp_path / "metrics.jsonl"))
    StopDecidedAfterFirstEpoch.steps = []
    overrides = visible_overrides(visible_dir, learned, batch_size=2, **{  # 4 steps an epoch
        "trainer.max_epochs": 3, "+callbacks.decide._target_": f"{__name__}.StopDecidedAfterFirstEpoch"})
    metrics = train(compose_train(overrides), tmp_path / "run")
    assert StopDecidedAfterFirstEpoch.steps == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line.get("epoch") for line in lines] == [0, None], "the stopped epoch's one step is not validated"
    assert metrics["stopped_early"] is True and metrics["best_epoch"] == 0
    assert metrics["val/cleval_hmean"] > 0.0 and lines[0]["val/cleval_hmean"] > 0.0, "the stopped run scored detections"


def test_out_of_memory_retries_with_half_batch_and_accumulation(tmp_path: Path, visible_dir: Path, learned,
                                                               monkeypatch) -> None:
    real_step = module_lib.DBNetModule.training_step

    def step_that_runs_out_of_memory_above_two(self, batch, batch_idx):
        if len(batch["images"]) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(module_lib.DBNetModule, "training_step", step_that_runs_out_of_memory_above_two)
    overrides = visible_overrides(visible_dir, learned, batch_size=8, **{"trainer.max_epochs": 1})
    metrics = train(compose_train(overrides), tmp_path / "run")
    assert (metrics["batch/requested"], metrics["batch/used"], metrics["batch/accumulate"]) == (8, 2, 4)
    assert metrics["val/cleval_hmean"] > 0.0, "the retry trained and scored detections"


class RecordFit(L.Callback):
    """Records each fit's accumulation and optimizer steps (global_step) as it ends."""

    fits: list[tuple[int, int]] = []

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fits.append((trainer.accumulate_grad_batches, trainer.global_step))


def test_an_out_of_memory_retry_after_an_epoch_starts_a_clean_history(tmp_path: Path, synthetic_dir: Path,
                                                                      monkeypatch) -> None:
    real_step = module_lib.DBNetModule.training_step

    def second_epoch_runs_out_of_memory_above_two(self, batch, batch_idx):
        if len(batch["images"]) > 2 and self.current_epoch == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(module_lib.DBNetModule, "training_step", second_epoch_runs_out_of_memory_above_two)
    monkeypatch.setenv("OCR_METRICS_FILE", str(tmp_path / "metrics.jsonl"))
    RecordFit.fits = []
    overrides = tiny_overrides(synthetic_dir, batch_size=8, **{  # 8 training images
        "trainer.max_epochs": 2, "+callbacks.record._target_": f"{__name__}.RecordFit"})
    metrics = train(compose_train(overrides), tmp_path / "run")
    assert (metrics["batch/used"], metrics["batch/accumulate"]) == (2, 4)
    assert RecordFit.fits == [(4, 2)], "the retry: 4 batches of 2 an epoch, one optimizer step per epoch"
    history, final = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["epoch"] for r in history] == [0, 1], "only the retry's epochs (two failed attempts logged epoch 0)"
    assert final["batch/used"] == 2


class RecordBatches(L.Callback):
    """Records the size of every training and validation batch."""

    train: list[int] = []
    val: list[int] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx) -> None:
        self.train.append(len(batch["images"]))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.val.append(len(batch["images"]))


def test_with_crops_validation_batches_are_capped_for_the_whole_image(tmp_path: Path, synthetic_dir: Path,
                                                                      monkeypatch) -> None:
    # 20,000 bytes per pixel in 0.85 GiB: 8 crops of 64 px fit, 2 whole images of 128 px
    monkeypatch.setattr(batch_size_lib, "footprint", lambda *args, **kwargs: Footprint(0, 0.0, 20000.0))
    monkeypatch.setattr(batch_size_lib, "visible_gpu", lambda devices=None: (1.0, "a 1 GiB GPU"))
    RecordBatches.train, RecordBatches.val = [], []
    overrides = tiny_overrides(synthetic_dir, image_size=128, batch_size=4, **{
        "data.augment.crop_size": 64, "trainer.max_epochs": 1, "+callbacks.record._target_": f"{__name__}.RecordBatches"})
    metrics = train(compose_train(overrides), tmp_path / "run")
    assert (metrics["batch/used"], metrics["batch/val"]) == (4, 2)
    assert max(RecordBatches.train) == 4 and RecordBatches.val and max(RecordBatches.val) == 2


def test_out_of_memory_at_batch_1_is_one_line_and_exit_code_2(tmp_path: Path, synthetic_dir: Path) -> None:
    proc = run_cli(*tiny_overrides(synthetic_dir, batch_size=1, **{
        "+callbacks.oom._target_": "test_train.OutOfMemoryOnEveryStep"}), "~logger",
        f"hydra.run.dir={tmp_path}/run", cwd=tmp_path, tests=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if "out of memory" in line] == [
        "ocr.train: error: CUDA out of memory at batch 1 with image_size=64 and hrnet_w18_small; use a smaller "
        "image_size or model, "
        "or precision=bf16-mixed"]


class OutOfMemoryOnEveryStep(L.Callback):
    def on_train_batch_start(self, *args: object) -> None:
        raise RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a "
                           "non-contiguous input.")


@pytest.mark.parametrize("err", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a non-contiguous input."),
])
def test_wrapped_and_cudnn_out_of_memory_errors_are_recognised(err: Exception) -> None:
    try:
        try:
            raise err
        except RuntimeError as inner:
            raise ValueError("a wrapper") from inner
    except ValueError as wrapped:
        assert caused_by_oom(err) and caused_by_oom(wrapped)
    assert not caused_by_oom(RuntimeError("CUDA error: device-side assert triggered"))


def test_a_rerun_into_the_same_directory_replaces_best_ckpt(tmp_path: Path, synthetic_dir: Path) -> None:
    cfg = compose_train(tiny_overrides(synthetic_dir, **{"trainer.max_epochs": 1}))
    first = train(cfg, tmp_path / "run")
    stamp = Path(first["best_checkpoint"]).stat().st_mtime_ns
    second = train(cfg, tmp_path / "run")
    assert second["best_checkpoint"] == first["best_checkpoint"] and second["best_checkpoint"].endswith("best.ckpt")
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]  # no -v1
    assert Path(second["best_checkpoint"]).stat().st_mtime_ns > stamp


def write_receipts(root: Path, mistake: str) -> Path:
    """A one-image train/val dataset with `mistake` in it."""
    if mistake == "no folder":
        return root / "nowhere"
    for split in ("train", "val"):
        if not (mistake == "no images/val" and split == "val"):
            (root / "images" / split).mkdir(parents=True)
            Image.new("RGB", (64, 48), "white").save(root / "images" / split / "a.jpg")
        if mistake != "no jsons":
            (root / "jsons").mkdir(exist_ok=True)
            text = {"broken JSON": '{"images": {', "bad schema": '{"imgs": {}}'}.get(mistake, '{"images": {"a.jpg": {}}}')
            (root / "jsons" / f"{split}.json").write_text(text)
    return root


@pytest.mark.parametrize("mistake, extra, message", [
    ("no folder", {}, "does not exist"),
    ("no jsons", {}, r"annotation file .*train\.json not found"),
    ("broken JSON", {}, r"train\.json is not valid JSON"),
    ("no images/val", {}, r"image folder .*images/val not found"),
    ("bad schema", {}, 'the top level key "images" is missing'),
    ("no mistake", {"data.limit_val": -1}, r"data.limit_val=-1 must be null \(every image\) or an integer >= 1"),
])
def test_dataset_mistakes_stop_the_run_before_wandb_or_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mistake: str, extra: dict, message: str
) -> None:
    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was built before the dataset was checked")

    monkeypatch.setattr(build_lib, "build_model", no_model)
    root = write_receipts(tmp_path / "data", mistake)
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=message):
        train(compose_train(tiny_overrides(tmp_path / "syn", dataset_base_path=root, **extra)), run_dir)
    assert not list(tmp_path.rglob("wandb")), "no W&B run is started for a run that cannot train"


def test_lightning_lines_go_once_through_the_root_handlers_without_tips(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    hydra_console = logging.StreamHandler(stream)  # as Hydra's console (and train.log) handlers
    monkeypatch.setattr(logging.getLogger(), "handlers", [hydra_console])
    for name in LIGHTNING_LOGGERS:  # restored after the test
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", [*logger.handlers, logging.StreamHandler(io.StringIO())])
        monkeypatch.setattr(logger, "propagate", False)
    monkeypatch.setattr(logging.getLogger(LIGHTNING_INFO), "filters", [])
    quiet_lightning()
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    rank_zero_info("GPU available: False, used: False")
    rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
    assert stream.getvalue() == "GPU available: False, used: False\n"
    handlers, logger = [], logging.getLogger(LIGHTNING_INFO)
    while logger:  # every handler a Lightning record reaches
        handlers += logger.handlers
        logger = logger.parent if logger.propagate else None
    assert handlers == [hydra_console]


@pytest.mark.parametrize("limit, batches, expected", [
    (None, 4, 4), (None, 40, 10), (2, 40, 2), (0.25, 20, 5), (None, 0, 1),
])
def test_the_logging_interval_is_at_most_an_epoch(limit: object, batches: int, expected: int) -> None:
    trainer = compose_train([f"trainer.limit_train_batches={'null' if limit is None else limit}"]).trainer
    assert trainer.log_every_n_steps == 10 and log_interval(trainer, batches) == expected


def run_cli(*overrides: str, cwd: Path, tests: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *([str(REPO / "tests")] if tests else [])])}
    return subprocess.run([sys.executable, "-m", "ocr.train", *overrides], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_cli_unknown_model_is_one_clear_line(tmp_path: Path) -> None:
    proc = run_cli("models.encoder.model_name=hrnet_w99", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "hrnet_w99" in proc.stderr and "hrnet_w18" in proc.stderr


def test_cli_unknown_key_is_refused(tmp_path: Path) -> None:
    proc = run_cli("models.loss.negative_ration=3", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode != 0
    assert "negative_ration" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_bad_image_size_is_refused(tmp_path: Path) -> None:
    proc = run_cli("image_size=100", "models.encoder.pretrained=false", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2 and "multiple of 32" in proc.stderr


def test_devices_lightning_refuses_are_one_line_before_the_data_and_wandb(tmp_path: Path) -> None:
    proc = run_cli("experiment=smoke", "trainer.strategy=dpp", f"data.synthetic.dir={tmp_path}/synthetic",
                   "dataset_base_path=null", f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.strategy=dpp trainer.precision=32-true: Lightning cannot run this" in lines[0]
    assert "invalid strategy name" in lines[0] and "wandb" not in proc.stdout + proc.stderr
    assert not (tmp_path / "synthetic").exists() and not (tmp_path / "run" / "wandb").exists()


@pytest.mark.parametrize("keys, message", [
    ({"devices": 0}, "trainer.devices=0 trainer.strategy=auto trainer.precision=32-true: Lightning cannot run this on this"),
    ({"devices": "abc", "accelerator": "cpu"}, "(TypeError: `devices` selected with `CPUAccelerator`"),
    ({"num_nodes": 0}, "trainer.num_nodes=0 trainer.precision=32-true: Lightning cannot run this"),
])
def test_check_devices(keys: dict, message: str) -> None:
    trainer = compose_train([]).trainer
    OmegaConf.set_struct(trainer, False)
    trainer.update(keys)
    with pytest.raises(UserError) as err:
        check_devices(trainer)
    assert message in str(err.value) and "\n" not in str(err.value)
    check_devices(compose_train(["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]).trainer)


def test_small_hrnet_learns_synthetic_receipts(learned) -> None:
    """A randomly initialised hrnet_w18_small reaches a clearly non-trivial hmean in a few CPU minutes."""
    metrics, _ = learned
    assert metrics["val/cleval_hmean"] > 0.3, metrics


@pytest.mark.parametrize("override, message", [
    ("image_size=abc", "image_size='abc' must be an integer"),
    ("image_size=100", "must be a multiple of 32"),
    ("batch_size=2.5", "batch_size=2.5 must be an integer"),
    ("batch_size=0", "batch_size=0 must be >= 1"),
    ("optimizer.lr=-1", "optimizer.lr=-1 must be > 0"),
    ("optimizer.lr=abc", "optimizer.lr='abc' must be a finite number"),
    ("optimizer.weight_decay=-0.1", "optimizer.weight_decay=-0.1 must be >= 0"),
])
def test_config_mistakes_are_one_line_before_anything_is_built(override: str, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        check_config(compose_train(["models.encoder.pretrained=false", override]))


EXPERIMENTS = sorted(path.stem for path in (REPO / "configs" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("overrides", [[], *([f"experiment={name}"] for name in EXPERIMENTS)])
def test_the_shipped_config_passes_its_checks(overrides: list[str]) -> None:
    check_config(compose_train(overrides))


def test_the_reference_best_run_is_one_word() -> None:
    cfg = compose_train(["experiment=origin_w44"])
    assert (cfg.models.encoder.model_name, cfg.image_size, cfg.batch_size, cfg.trainer.max_epochs) == (
        "hrnet_w44", 1024, 2, 10)
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.scheduler.T_max == 10 and cfg.models.head.k == 45
    assert cfg.models.head.postprocess.polygon_unclip_ratio == 1.97707 and cfg.collate_fn.thresh_max == 0.75069


def test_an_experiment_is_a_named_set_that_keys_beside_it_override() -> None:
    cfg = compose_train(["experiment=demo_cpu", "image_size=64"])
    assert (cfg.models.encoder.model_name, cfg.image_size, cfg.trainer.max_epochs) == ("hrnet_w18_small", 64, 4)
    assert not cfg.scheduler and list(cfg.data.synthetic.size) == [160, 192]
