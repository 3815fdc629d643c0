"""Post-training tools: validation cache, post-processing search, submissions, overlays, bad input."""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ocr.cli.tune import main
from ocr.data.annotations import load_split
from ocr.data.datamodule import ReceiptDataset
from ocr.data.synthetic import generate_dataset
from ocr.inference.maps import (
    CSV_HEADER, build_val_cache, integer_points, pick_device, predict_split, write_csv, write_json,
)
from ocr.inference.runs import load_model, resolve_run
from ocr.inference.tuned import parse_assignments
from ocr.postprocess.db_postprocess import DBPostProcessor
from ocr.training.build import build_module
from ocr.training.val_cache import CachedImage, load_val_cache, write_val_cache
from ocr.tuning.evaluate import CacheEvaluator, ImageState
from ocr.tuning.space import REPO_ROOT, check_values, grid_points, read_yaml, search_config
from ocr.tuning.tune import edges_reached, search
from ocr.utils.display import sync_command
from ocr.utils.errors import UserError
from reference.scoring import direct_scores
from reference.wandb_records import of_type, offline_folders

REPO = Path(__file__).resolve().parents[1]


def compose_config(data: Path, **extra: object):
    overrides = {
        "models.encoder.model_name": "resnet18", "models.encoder.pretrained": "false", "image_size": 64,
        "batch_size": 2, "data.num_workers": 0, "dataset_base_path": str(data), "metric.workers": 1,
        "trainer.enable_progress_bar": "false", **extra,
    }
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"{k}={v}" for k, v in overrides.items()])


def make_run(run_dir: Path, cfg, checkpoint_cfg=None) -> Path:
    """A run directory as training leaves it: config.yaml and checkpoints/best.ckpt of an untrained module."""
    (run_dir / "checkpoints").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    torch.manual_seed(0)
    module = build_module(checkpoint_cfg or cfg)
    torch.save({"state_dict": module.state_dict(), "epoch": 0}, run_dir / "checkpoints" / "best.ckpt")
    (run_dir / "metrics.json").write_text(json.dumps({"val/cleval_hmean": 0.0}))
    return run_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("data"), n_train=1, n_val=3, n_test=2, size=(160, 320), progress=False)


@pytest.fixture(scope="module")
def cfg(data_dir: Path):
    return compose_config(data_dir)


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory: pytest.TempPathFactory, cfg) -> Path:
    run_dir = make_run(tmp_path_factory.mktemp("cached") / "run", cfg)
    build_val_cache(resolve_run(run_dir), batch_size=1, num_workers=0)
    return run_dir


@pytest.fixture(scope="module")
def blob_thresh(cached_run: Path) -> float:
    """The untrained model's maps are nearly flat; their median, as thresh, cuts them into blobs."""
    return float(np.median(np.concatenate([im.prob.ravel() for im in load_val_cache(cached_run)])))


def same_polygons(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and (x == y).all() for x, y in zip(a, b))


def attach_wandb_run(run_dir: Path, run_id: str, steps: int = 0) -> None:
    """Name a W&B run in the run's metrics.json, as training does; with `steps`, first log that many history rows
    to an offline run of that id in run_dir/wandb, as training's WandbLogger does."""
    if steps:
        import wandb

        run = wandb.init(id=run_id, dir=str(run_dir), mode="offline", project="OCR-HRNet-Sweep")
        for step in range(steps):
            run.log({"train/loss": 1.0 / (step + 1), "epoch": step})
        run.finish()
        wandb.teardown()  # finish() returns before the .wandb file is written; teardown waits for it
    path = run_dir / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "wandb_run_id": run_id}))


def post_training_run(run_dir: Path, training_id: str, job_type: str) -> Path:
    """The one offline W&B folder of a post-training command: a new run, finished, grouped with the training run."""
    others = {run_id: folders for run_id, folders in offline_folders(run_dir).items() if run_id != training_id}
    assert len(others) == 1 and len(next(iter(others.values()))) == 1, f"one new run, not a resume: {others}"
    folder = next(iter(others.values()))[0]
    (run,) = of_type(folder, "run")
    assert run["run_group"] == training_id and run["job_type"] == job_type
    assert training_id in json.dumps(run["config"]), "config names the training run"
    assert of_type(folder, "exit"), "the run finished and its file is complete"
    return folder


def read_csv(path: Path) -> dict[str, list[np.ndarray]]:
    """Image name -> (N, 2) int64 polygons of a submission CSV."""
    with path.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    assert tuple(header) == CSV_HEADER and all(len(row) == 2 for row in rows)
    return {name: [np.array(p.split(), np.int64).reshape(-1, 2) for p in cell.split("|") if p] for name, cell in rows}


# ----------------------------------------------------------------------------- cache


def test_cache_round_trip_reproduces_direct_inference(cached_run: Path, cfg, data_dir: Path,
                                                       blob_thresh: float) -> None:
    post = DBPostProcessor(thresh=blob_thresh, box_thresh=0.0, polygon_unclip_ratio=1.5, min_size=0)
    dataset = ReceiptDataset(data_dir, "val", 64)
    model = load_model(resolve_run(cached_run))
    _, direct = predict_split(model, cfg.trainer.precision, dataset, post, pick_device("cpu"))
    direct = list(direct)
    cache = load_val_cache(cached_run)
    assert [im.name for im in cache] == [p.meta["image_name"] for p in direct]
    total = 0
    for image, pred in zip(cache, direct):
        assert image.prob.dtype == np.float16 and (np.asarray(image.prob) == pred.prob).all()
        again, _ = post(np.asarray(image.prob, np.float32), image.scale, image.orig_hw)
        assert same_polygons(again, pred.polygons)
        assert same_polygons(image.gt_polygons, pred.meta["gt_polygons"]) and image.gt_texts == pred.meta["gt_texts"]
        total += len(again)
    assert total > 0, "the check needs polygons to compare"


def test_build_cache_of_a_run_trained_on_two_devices_validates_every_image_on_one(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lightning as L

    run_dir = make_run(tmp_path / "run", compose_config(data_dir, **{"trainer.accelerator": "cpu", "trainer.devices": 2}))
    world_sizes = []

    class OneProcessTrainer(L.Trainer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            world_sizes.append(self.world_size)
            if self.world_size != 1:  # DDP would relaunch pytest in a second process: stop before it starts
                raise AssertionError(f"build-cache started {self.world_size} processes")

    monkeypatch.setattr(L, "Trainer", OneProcessTrainer)
    assert main(["build-cache", str(run_dir), "--device", "cpu", "--batch-size", "1", "--num-workers", "0"]) == 0
    assert world_sizes == [1]
    assert [im.name for im in load_val_cache(run_dir)] == ["val_00000.jpg", "val_00001.jpg", "val_00002.jpg"]


def test_cache_write_is_exact_and_replaces_the_old_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    maps = [rng.random((5, 7)).astype(np.float16), rng.random((3, 4)).astype(np.float16)]
    polys = [np.array([[0.1, 0.2], [3.3, 0.2], [3.3, 1.7]], np.float32)]
    metas = [{"image_name": f"im{i}.jpg", "scale": 0.5, "orig_hw": (10, 14), "gt_polygons": polys, "gt_texts": ["ab"]}
             for i in range(2)]
    write_val_cache(tmp_path, [(metas[0], np.zeros((2, 2), np.float16))])
    write_val_cache(tmp_path, zip(metas, maps))
    cache = load_val_cache(tmp_path)
    assert [im.name for im in cache] == ["im0.jpg", "im1.jpg"]
    assert all((im.prob == m).all() for im, m in zip(cache, maps))
    assert (cache[1].gt_polygons[0] == polys[0]).all() and cache[0].orig_hw == (10, 14)


# ----------------------------------------------------------------------------- shared work == DBPostProcessor


def blob_map(rng: np.random.Generator, shape=(80, 120)) -> np.ndarray:
    import cv2

    prob = np.zeros(shape, np.float32)
    for _ in range(12):
        y, x = rng.integers(0, shape[0] - 8), rng.integers(0, shape[1] - 20)
        prob[y : y + rng.integers(3, 9), x : x + rng.integers(4, 20)] = rng.uniform(0.3, 1.0)
    prob = cv2.GaussianBlur(prob, (0, 0), 1.2) + rng.normal(0, 0.03, shape).astype(np.float32)
    return np.clip(prob, 0, 1).astype(np.float16)


def test_box_thresh_as_a_filter_on_a_lower_floor_gives_the_same_polygons() -> None:
    rng, pick = np.random.default_rng(1), random.Random(1)
    checked = 0
    for _ in range(40):
        image = CachedImage("x.jpg", blob_map(rng), 0.5, (160, 240), [], [])
        params = {"thresh": pick.uniform(0.1, 0.6), "box_thresh": pick.uniform(0.2, 0.8),
                  "max_candidates": pick.choice([3, 1000]), "use_polygon": pick.random() < 0.5,
                  "box_unclip_ratio": pick.uniform(1.0, 2.0), "polygon_unclip_ratio": pick.uniform(1.0, 2.5),
                  "min_size": pick.choice([0, 3, 5])}
        expected, _ = DBPostProcessor(**params)(image.prob.astype(np.float32), image.scale, image.orig_hw)
        state = ImageState(image)
        _, output, kept = state.survivors(params, floor=pick.uniform(0.0, params["box_thresh"]))
        assert same_polygons([output.polygons[i] for i in kept], expected)
        checked += len(expected)
    assert checked > 50


# ----------------------------------------------------------------------------- search


def touching_words_cache(run_dir: Path, copies: int = 3) -> None:
    """Two words 1 px apart whose kernels are bridged at 0.5: only thresh in (0.5, 0.9) separates them."""
    prob = np.full((60, 100), 0.05, np.float32)
    prob[24:37, 14:42] = prob[24:37, 51:79] = 0.9
    prob[24:37, 42:51] = 0.5
    gt = [np.array([[10, 20], [46, 20], [46, 40], [10, 40]], np.float32),
          np.array([[47, 20], [83, 20], [83, 40], [47, 40]], np.float32)]
    meta = {"scale": 1.0, "orig_hw": (60, 100), "gt_polygons": gt, "gt_texts": ["AAAA", "BBBB"]}
    write_val_cache(run_dir, (({**meta, "image_name": f"{i}.jpg"}, prob.astype(np.float16)) for i in range(copies)))


def write_search_yaml(path: Path, thresholds: list[float]) -> Path:
    p = "models.head.postprocess."
    path.write_text(yaml.safe_dump({"method": "grid", "parameters": {
        p + "thresh": {"values": thresholds}, p + "box_thresh": {"value": 0.3},
        p + "polygon_unclip_ratio": {"values": [1.5]}, "lr": {"values": [0.1, 0.2]},  # not a post-processing key: ignored
    }}))
    return path


@pytest.fixture
def constructed_run(tmp_path: Path, cfg) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    (run_dir / "metrics.json").write_text(json.dumps({"val/cleval_hmean": 0.5}))
    touching_words_cache(run_dir)
    return run_dir


def test_search_finds_the_one_threshold_that_separates_touching_words(constructed_run: Path, tmp_path: Path) -> None:
    config = write_search_yaml(tmp_path / "search.yaml", [0.3, 0.4, 0.6, 0.95])
    result = search(constructed_run, None, 100, config, workers=2, seed=0)
    assert len(result.trials) == 4  # the grid is exhausted
    assert result.best.values["thresh"] == 0.6 and result.best.hmean == 1.0
    by_thresh = {t.values["thresh"]: t.hmean for t in result.trials}
    assert by_thresh[0.3] < 1.0 and by_thresh[0.95] == 0.0
    assert result.improved and direct_scores(constructed_run, result.tuned) == result.best.scores  # shared work is exact
    lines = (constructed_run / "tuned_postprocess.txt").read_text().splitlines()
    assert "models.head.postprocess.thresh=0.6" in lines and "models.head.postprocess.box_thresh=0.3" in lines
    assert json.loads((constructed_run / "tune_postprocess.json").read_text())["best"]["values"]["thresh"] == 0.6


@pytest.mark.parametrize("thresholds, hint", [([0.3, 0.4, 0.6], "thresh=0.6 (the max)"), ([0.3, 0.6, 0.95], None)])
def test_a_best_value_at_an_end_of_its_range_gets_a_hint(
    constructed_run: Path, tmp_path: Path, thresholds: list[float], hint: str | None, capsys
) -> None:
    config = write_search_yaml(tmp_path / "search.yaml", thresholds)  # 0.6 is the only threshold that scores 1.0
    assert main(["tune-postprocess", str(constructed_run), "--config", str(config), "--workers", "1"]) == 0
    hints = [line for line in capsys.readouterr().out.splitlines() if line.startswith("hint:")]
    if hint is None:
        assert hints == []
    else:
        assert len(hints) == 1 and hint in hints[0] and str(config) in hints[0] and "--config" in hints[0]


def test_an_end_that_is_the_keys_own_limit_gets_no_hint() -> None:
    key = "models.head.postprocess."
    space = {key + "box_thresh": {"min": 0.5, "max": 1.0}, key + "thresh": {"values": [0.2, 0.3]},
             key + "min_size": {"min": 0, "max": 4}}
    tuned = {"thresh": 0.3, "box_thresh": 1.0, "min_size": 0}  # 1.0 and 0 are the rules' own ends
    result = SimpleNamespace(space=space, tuned=tuned, improved=True)
    assert edges_reached(result) == [("thresh", 0.3, "max")]


def test_searched_and_edited_values_follow_the_config_rules() -> None:
    base = {"thresh": 0.3, "box_thresh": 0.7, "max_candidates": 1000, "use_polygon": True, "box_unclip_ratio": 1.5,
            "polygon_unclip_ratio": 2.0, "min_size": 3}
    check_values({"thresh": [0.0, 0.99], "min_size": [0, 5]}, base, "s.yaml")
    message = "s.yaml: parameter 'models.head.postprocess.thresh': models.head.postprocess.thresh=1.0 must be in [0, 1)"
    with pytest.raises(UserError, match=re.escape(message)):
        check_values({"thresh": [0.2, 1.0]}, base, "s.yaml")
    assert parse_assignments(["thresh=0.25", "models.head.postprocess.min_size=0"], set(base), "--postprocess") == {
        "thresh": 0.25, "min_size": 0}
    with pytest.raises(UserError, match=re.escape("--postprocess: models.head.postprocess.max_candidates=0 must be an "
                                                  "integer >= 1; DBNet uses 1000")):
        parse_assignments(["max_candidates=0"], set(base), "--postprocess")


@pytest.mark.parametrize("budget, spread, points", [
    (100, 3, [5, 5, 4]), (125, 3, [5, 5, 5]), (99, 3, [5, 4, 4]), (100, 1, [100]), (100, 2, [10, 10]),
    (3, 3, [2, 2, 2]), (12, 3, [3, 2, 2]), (100, 0, []),
])
def test_grid_points_fill_the_budget_evenly(budget: int, spread: int, points: list[int]) -> None:
    assert grid_points(spread, budget) == points


def test_grid_spreads_the_sweep_ranges_and_keeps_listed_values() -> None:
    p = "models.head.postprocess."
    raw = read_yaml(REPO_ROOT / "sweep_config.yaml")
    ranges = {k: raw["parameters"][p + k] for k in ("thresh", "box_thresh", "polygon_unclip_ratio")}
    keys = {"thresh", "box_thresh", "polygon_unclip_ratio", "use_polygon", "max_candidates", "min_size", "box_unclip_ratio"}
    config = search_config(raw, "sweep_config.yaml", keys, "grid", grid_count=100)["parameters"]
    sizes = {k: len(config[p + k]["values"]) for k in ranges}
    assert sizes == {"thresh": 5, "box_thresh": 5, "polygon_unclip_ratio": 4}  # the YAML's order gets the extra point
    for key, spec in ranges.items():
        values = config[p + key]["values"]
        assert values[0] == spec["min"] and values[-1] == spec["max"] and values == sorted(values)
        assert np.allclose(np.diff(values), (spec["max"] - spec["min"]) / (len(values) - 1))
    assert config[p + "use_polygon"] == {"value": True}
    listed = {"parameters": {p + "thresh": {"values": [0.2, 0.3]},
                             p + "box_thresh": {"distribution": "log_uniform_values", "min": 0.1, "max": 0.4}}}
    config = search_config(listed, "x.yaml", keys, "grid", grid_count=6)["parameters"]
    assert config[p + "thresh"] == {"values": [0.2, 0.3]}
    assert np.allclose(config[p + "box_thresh"]["values"], [0.1, 0.2, 0.4])  # geometric, 6 // 2 = 3 points
    huge = search_config(listed, "x.yaml", keys, "grid", grid_count=10**12)["parameters"]
    assert len(huge[p + "box_thresh"]["values"]) == 1000  # capped, not 5e11 values


def test_default_grid_on_the_sweep_ranges_prints_its_values(constructed_run: Path, capsys) -> None:
    assert main(["tune-postprocess", str(constructed_run), "--count", "12", "--workers", "1"]) == 0  # no --method
    out = capsys.readouterr().out
    assert "grid: thresh 3 values (0.19 .. 0.25), box_thresh 2 values (0.4 .. 0.49)" in out
    result = json.loads((constructed_run / "tune_postprocess.json").read_text())
    assert result["method"] == "grid" and len(result["trials"]) == 12
    assert {t["values"]["thresh"] for t in result["trials"]} == {0.19, 0.22, 0.25}


def test_pool_and_in_process_scores_agree(constructed_run: Path) -> None:
    params = [{"thresh": t, "box_thresh": 0.3, "max_candidates": 1000, "use_polygon": True, "box_unclip_ratio": 1.5,
               "polygon_unclip_ratio": r, "min_size": 3} for t in (0.3, 0.6) for r in (1.2, 1.5, 1.5)]
    with CacheEvaluator(constructed_run, 1) as local, CacheEvaluator(constructed_run, 2) as pool:
        assert local.evaluate(params) == pool.evaluate(params)


def test_bayes_stays_in_range_and_logs_to_a_run_grouped_with_the_training_run(constructed_run: Path, capsys) -> None:
    training_id = "abc123"
    attach_wandb_run(constructed_run, training_id, steps=5)
    assert main(["tune-postprocess", str(constructed_run), "--method", "bayes", "--count", "4", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "val/cleval_hmean_tuned" in out and "models.head.postprocess.thresh=" in out
    (training,) = offline_folders(constructed_run)[training_id]  # no second folder with the training run's id
    history = of_type(training, "history")
    assert [row["item"]["_step"] for row in history] == [0, 1, 2, 3, 4] and all("train/loss" in r["item"] for r in history)
    assert "val/cleval_hmean_tuned" not in json.dumps(of_type(training, "summary"))
    tuning = post_training_run(constructed_run, training_id, "tune-postprocess")
    tuned = json.loads((constructed_run / "tune_postprocess.json").read_text())["best"]["scores"]["hmean"]
    summary = {k: v for update in of_type(tuning, "summary") for k, v in update.get("update", {}).items()}
    assert summary["val/cleval_hmean_tuned"] == pytest.approx(tuned)
    line = next(line for line in out.splitlines() if line.startswith("W&B:"))
    assert line.split("`wandb sync ")[1].rstrip(")`").split() == [str(training), str(tuning)]  # exactly these two
    result = json.loads((constructed_run / "tune_postprocess.json").read_text())
    assert result["method"] == "bayes" and len(result["trials"]) == 4
    assert all(0.19 <= t["values"]["thresh"] <= 0.25 for t in result["trials"])  # sweep_config.yaml's range


# ----------------------------------------------------------------------------- submission


def test_csv_and_json_parse_back_to_the_same_polygons(tmp_path: Path) -> None:
    predictions = {
        "b.jpg": [np.array([[1.4, 2.6], [10.5, 2.0], [10.2, 8.9], [1.0, 9.2]], np.float32),
                  np.array([[20, 20], [30, 21], [31, 30], [25, 33], [19, 29]], np.float32)],
        "a.jpg": [],
    }
    parsed = read_csv(write_csv(tmp_path / "sub.csv", predictions))
    assert list(parsed) == ["b.jpg", "a.jpg"] and parsed["a.jpg"] == []
    assert all((p == integer_points(q)).all() for p, q in zip(parsed["b.jpg"], predictions["b.jpg"]))
    (tmp_path / "images" / "test").mkdir(parents=True)
    for name in predictions:
        (tmp_path / "images" / "test" / name).touch()
    write_json(tmp_path / "jsons" / "test.json", predictions)
    words = load_split(tmp_path, "test")  # the dataset's own loader reads the JSON form back
    assert [w.key for w in words["b.jpg"]] == ["0001", "0002"] and words["a.jpg"] == []
    assert all((w.points == integer_points(q)).all() for w, q in zip(words["b.jpg"], predictions["b.jpg"]))


def competition_rows(path: Path) -> dict[str, list[list[int]]]:
    """The submission as the competition's format says (origin-facts 3): columns `filename,polygons`, polygons joined
    by `|`, each `x1 y1 x2 y2 ...` of integers; its evaluator skips polygons of fewer than 8 (or an odd number of)
    coordinates, so each must have at least 4 points."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "filename,polygons"
    rows = {}
    for line in lines[1:]:
        name, _, cell = line.partition(",")
        rows[name] = [[int(v) for v in polygon.split(" ")] for polygon in cell.strip('"').split("|") if polygon]
    for polygons in rows.values():
        assert all(len(c) >= 8 and len(c) % 2 == 0 for c in polygons), f"a polygon the evaluator skips: {polygons}"
    return rows


def test_polygons_of_fewer_than_4_points_are_written_as_their_minimum_area_rectangle(tmp_path: Path) -> None:
    triangle = np.array([[10, 10], [30, 12], [20, 25]], np.float32)
    predictions = {"a.jpg": [triangle, np.array([[5, 5], [9, 5]], np.float32)],
                   "b.jpg": [np.array([[0, 0], [4, 0], [4, 4], [0, 4]], np.float32)]}
    rows = competition_rows(write_csv(tmp_path / "sub.csv", predictions))
    assert rows["b.jpg"] == [[0, 0, 4, 0, 4, 4, 0, 4]]  # 4 points or more: unchanged
    box = np.array(rows["a.jpg"][0]).reshape(-1, 2)
    assert len(box) == 4 and len(rows["a.jpg"]) == 2
    import cv2
    assert all(cv2.pointPolygonTest(box.astype(np.float32), (float(x), float(y)), True) >= -1 for x, y in triangle)
    assert cv2.contourArea(box.astype(np.float32)) >= cv2.contourArea(triangle)  # it covers the triangle
    saved = json.loads(write_json(tmp_path / "sub.json", predictions).read_text())["images"]["a.jpg"]["words"]
    assert [len(w["points"]) for w in saved.values()] == [4, 4]  # the dataset's JSON: at least 4 points too


def test_predict_writes_a_row_per_image_and_survives_unreadable_ones(
    cached_run: Path, data_dir: Path, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    (data / "images" / "test" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (data / "images" / "test" / "empty.jpg").write_bytes(b"")
    code = main(["predict", str(cached_run), "--data", str(data), "--out", str(tmp_path / "out"),
                 "--postprocess", "default", "thresh=0", "box_thresh=0", "--overlays", "1"])
    captured = capsys.readouterr()
    assert code == 0
    assert "broken.jpg" in captured.err and "empty.jpg" in captured.err
    rows = read_csv(tmp_path / "out" / "test_custom.csv")
    assert sorted(rows) == ["broken.jpg", "empty.jpg", "test_00000.jpg", "test_00001.jpg"]
    assert rows["broken.jpg"] == [] and rows["empty.jpg"] == []
    assert len(rows["test_00000.jpg"]) == len(rows["test_00001.jpg"]) == 1  # thresh=0: the whole image is one blob
    assert len(list((tmp_path / "out" / "overlays_test_custom").glob("*.png"))) == 1


def test_predict_reads_the_images_on_disk_without_labels(cached_run: Path, data_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    (data / "jsons" / "val.json").unlink()
    shutil.copy(data / "images" / "val" / "val_00000.jpg", data / "images" / "val" / "unlisted.jpg")
    assert main(["predict", str(cached_run), "--split", "val", "--data", str(data), "--out", str(tmp_path / "out"),
                 "--postprocess", "default"]) == 0
    assert sorted(read_csv(tmp_path / "out" / "val_default.csv")) == ["unlisted.jpg", "val_00000.jpg", "val_00001.jpg",
                                                                       "val_00002.jpg"]


def test_predict_on_a_folder_without_images_is_one_line(cached_run: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "jsons").mkdir()
    (tmp_path / "jsons" / "val.json").write_text(json.dumps({"images": {}}))
    out = tmp_path / "out"
    assert main(["predict", str(cached_run), "--split", "val", "--data", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{tmp_path / 'images' / 'val'} has no images (" in err and "\n" not in err
    assert not out.exists()


def test_predict_says_an_offline_artifact_awaits_wandb_sync(
    tmp_path: Path, cfg, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir, run_id = make_run(tmp_path / "run", cfg), "sub123"
    attach_wandb_run(run_dir, run_id)
    assert main(["predict", str(run_dir), "--postprocess", "default"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("W&B:"))
    assert "uploaded" not in line and f"saved the submission as artifact submission-{run_id}" in line
    folders = [Path(f) for f in line.split("`wandb sync ")[1].rstrip(")`").split()]
    assert folders == [post_training_run(run_dir, run_id, "predict")]  # training logged nothing here: no folder of its own
    assert of_type(folders[0], "artifact"), "the submission artifact is in the offline run"
    assert sync_command(SimpleNamespace(offline=False, dir=str(folders[0] / "files"))) is None  # online: nothing to sync


# ----------------------------------------------------------------------------- overlays


def test_overlays_for_named_images(cached_run: Path, capsys) -> None:
    assert main(["overlays", str(cached_run), "--names", "val_00001.jpg", "--postprocess", "default"]) == 0
    assert (cached_run / "overlays" / "default" / "val_00001.png").is_file()
    assert main(["overlays", str(cached_run), "--names", "nope.jpg"]) == 2
    assert "nope.jpg" in capsys.readouterr().err


def test_overlays_go_to_a_run_grouped_with_the_training_run_one_key_per_image(
    cached_run: Path, tmp_path: Path, capsys
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(cached_run, run_dir, ignore=shutil.ignore_patterns("wandb"))  # no W&B folders of other tests
    training_id = "ovl123"
    attach_wandb_run(run_dir, training_id, steps=2)
    assert main(["overlays", str(run_dir), "--images", "2", "--postprocess", "default"]) == 0
    out = capsys.readouterr().out
    folder = post_training_run(run_dir, training_id, "overlays")
    assert f"logged 2 overlays to offline run {folder.name.rsplit('-', 1)[1]} (group {training_id}" in out
    keys = {k for row in of_type(folder, "history") for k in row["item"]}
    stems = [p.stem for p in sorted((run_dir / "overlays" / "default").glob("*.png"))]
    assert len(stems) == 2 and all(any(k.startswith(f"overlays/default/{stem}") for k in keys) for stem in stems)
    assert len(of_type(offline_folders(run_dir)[training_id][0], "history")) == 2  # the training history is intact


def test_a_sweep_trial_folder_stands_for_its_run(cached_run: Path, capsys) -> None:
    trial = cached_run.parent  # a sweep trial keeps its run in run/: .sweeps/<sweep>/trials/<trial>/run
    assert main(["overlays", str(trial), "--names", "val_00000.jpg", "--postprocess", "default"]) == 0
    assert f"PNGs in {cached_run / 'overlays' / 'default'}" in capsys.readouterr().out


def test_a_folder_above_runs_names_the_run_to_pass(tmp_path: Path, capsys) -> None:
    trials = tmp_path / "sweep" / "trials"
    for hidden in (trials / ".hydra", trials / "wandb" / "run-x" / "files"):  # config.yaml files that are not runs
        hidden.mkdir(parents=True)
        (hidden / "config.yaml").write_text("a: 1\n")
    with pytest.raises(UserError, match="is not the output directory of a training run") as err:
        resolve_run(trials)
    assert "below" not in str(err.value)
    (trials / "t1" / "run").mkdir(parents=True)
    (trials / "t1" / "run" / "config.yaml").write_text("a: 1\n")
    assert resolve_run(trials / "t1").run_dir == trials / "t1" / "run"
    assert main(["tune-postprocess", str(tmp_path / "sweep")]) == 2
    assert f"the run directory below it is {trials / 't1' / 'run'}: pass that" in capsys.readouterr().err
    (trials / "t2" / "run").mkdir(parents=True)
    (trials / "t2" / "run" / "config.yaml").write_text("a: 1\n")
    with pytest.raises(UserError, match="several run directories"):
        resolve_run(trials)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("text, message", [
    ("x: [", "malformed YAML at line 1"),
    ("- a list\n", "is not a run's config"),
    ("a: 1\n", "lacks models.encoder.model_name, models.head.postprocess, image_size"),
])
def test_a_broken_run_config_is_one_line(constructed_run: Path, text: str, message: str, capsys) -> None:
    (constructed_run / "config.yaml").write_text(text)
    for command in ("tune-postprocess", "predict", "overlays", "build-cache"):
        assert main([command, str(constructed_run)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err, (command, err)


def test_a_device_this_machine_lacks_is_one_line() -> None:
    with pytest.raises(UserError, match="usable CUDA GPU"):
        pick_device(f"cuda:{torch.cuda.device_count() + 1}")
    with pytest.raises(UserError, match="'banana' is not a torch device"):
        pick_device("banana")
    assert pick_device("cpu").type == "cpu"
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_checkpoint_of_another_model_is_one_clear_line(tmp_path: Path, cfg, data_dir: Path) -> None:
    other = compose_config(data_dir, **{"models.encoder.model_name": "resnet10t"})
    run_dir = make_run(tmp_path / "run", cfg, checkpoint_cfg=other)
    with pytest.raises(UserError, match="does not fit the model") as err:
        load_model(resolve_run(run_dir / "checkpoints" / "best.ckpt"))
    assert "\n" not in str(err.value) and "resnet18" in str(err.value)


@pytest.mark.parametrize("checkpoint, message", [(True, "build-cache"), (False, "the run has no checkpoint")])
def test_missing_cache_says_how_to_build_it(tmp_path: Path, cfg, checkpoint: bool, message: str, capsys) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    if checkpoint:
        (run_dir / "checkpoints" / "best.ckpt").touch()
    assert main(["tune-postprocess", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert ("build-cache" in err) == checkpoint  # no advice that cannot work: build-cache needs the checkpoint


@pytest.mark.parametrize("argv, message", [
    (["tune-postprocess", "{run}", "--method", "grid", "--config", "{run}/normal.yaml"], "--method grid spreads"),
    (["tune-postprocess", "{run}", "--config", "{run}/text.yaml"], "max must be a finite number, got 'high'"),
    (["tune-postprocess", "{run}", "--config", "{run}/nope.yaml"], "not found"),
    (["predict", "{run}", "--postprocess", "tuned"], "tune-postprocess"),
    (["predict", "{run}", "--postprocess", "default", "thresh=2"], "thresh=2"),
    (["predict", "{run}", "--postprocess", "default", "thresh=abc"], "thresh='abc' must be a finite number"),
    (["predict", "{run}/nowhere"], "does not exist"),
])
def test_bad_arguments_are_one_line(constructed_run: Path, argv: list[str], message: str, capsys) -> None:
    (constructed_run / "tuned_postprocess.txt").unlink(missing_ok=True)
    (constructed_run / "normal.yaml").write_text(yaml.safe_dump({"parameters": {
        "models.head.postprocess.thresh": {"distribution": "normal", "mu": 0.2, "sigma": 0.02}}}))
    (constructed_run / "text.yaml").write_text(yaml.safe_dump({"parameters": {
        "models.head.postprocess.thresh": {"min": 0.1, "max": "high"}}}))
    assert main([a.format(run=constructed_run) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
