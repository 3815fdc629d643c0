"""inspect-data: counts and problems, text size, the hmean ceiling of ground-truth maps, the recommendation, bad input."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import RECEIPTS
from ocr.cli.inspect import COMMAND, main
from ocr.data.annotations import load_split
from ocr.data.synthetic import generate_dataset
from ocr.postprocess.db_postprocess import DBPostProcessor
from ocr.tuning.ceiling import (
    Job, Settings, check_image_sizes, inspect_dataset, load_settings, lost_overlays, measure_all, recommend, report,
)
from ocr.utils.errors import UserError
from reference.scoring import score_dataset
from test_oracle import oracle_samples

PROG = "python wandb_sweep.py"
ORACLE = {"thresh": 0.3, "box_thresh": 0.5, "use_polygon": True, "polygon_unclip_ratio": 2.0}  # test_oracle's
LARGE, SMALL = (40, 170), (5, 60)  # word (height, width) in stored pixels; 5 px stays under min_text_size 8


def settings(**params: object) -> Settings:
    """One post-processing setting per mode (DBPostProcessor's defaults updated with `params`), DB targets 0.4 / 8."""
    base = asdict(DBPostProcessor(**params).params)
    return Settings(Path("sweep.yaml"), base, {}, (bool(base["use_polygon"]),), 0.4, 8.0)


def write_split(root: Path, split: str, images: dict[str, list[tuple[int, int]]], hw: tuple[int, int] = (600, 400)):
    """White images of `hw` with each (height, width) word as a black box, one per line, and their JSON."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "jsons").mkdir(exist_ok=True)
    entries = {}
    for name, words in images.items():
        image = np.full((*hw, 3), 255, np.uint8)
        boxes, y = {}, 20
        for k, (h, w) in enumerate(words):
            cv2.rectangle(image, (20, y), (20 + w, y + h), (0, 0, 0), -1)
            boxes[f"{k:04d}"] = {"points": [[20, y], [20 + w, y], [20 + w, y + h], [20, y + h]],
                                 "transcription": "WORDWORD"}
            y += h + 30
        cv2.imwrite(str(root / "images" / split / name), image)
        entries[name] = {"words": boxes}
    (root / "jsons" / f"{split}.json").write_text(json.dumps({"images": entries}), encoding="utf-8")


@pytest.fixture
def boxes(tmp_path: Path) -> Path:
    """val: 3 images of large words; train: one image with a word the loader skips and one file that cannot decode."""
    root = tmp_path / "boxes"
    write_split(root, "val", {f"v{i}.png": [LARGE] * 5 for i in range(3)})
    write_split(root, "train", {"t0.png": [LARGE] * 2, "t1.png": [LARGE]})
    data = json.loads((root / "jsons" / "train.json").read_text())
    data["images"]["t0.png"]["words"]["bad"] = {"points": [[1, 1], [2, 2]]}
    (root / "jsons" / "train.json").write_text(json.dumps(data))
    (root / "images" / "train" / "t1.png").write_bytes(b"not an image")
    return root


def test_counts_and_problems_use_the_loader(boxes: Path) -> None:
    ins = inspect_dataset(boxes, "val", [640], settings())
    counts = {c.split: c for c in ins.counts}
    assert (counts["val"].images, counts["val"].words, counts["val"].problems, counts["val"].undecodable) == (3, 15, [], [])
    train = counts["train"]
    assert (train.images, train.words) == (2, 3)
    assert len(train.problems) == 1 and "skipped 1 of 4 polygons (1 < 3 points)" in train.problems[0]
    assert len(train.undecodable) == 1 and "t1.png" in train.undecodable[0]
    text = report(ins)
    assert train.problems[0] in text and "cannot be decoded" in text


def test_counts_on_synthetic_receipts(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "syn", n_train=2, n_val=2, n_test=1, progress=False)
    ins = inspect_dataset(root, "val", [640], settings())
    counts = {c.split: c for c in ins.counts}
    assert list(counts) == ["train", "val", "test"]
    for split, n in (("train", 2), ("val", 2), ("test", 1)):
        words = load_split(root, split)
        assert counts[split].images == len(words) == n and counts[split].words == sum(map(len, words.values())) > 0


def test_large_words_reach_a_ceiling_near_one(boxes: Path) -> None:
    ins = inspect_dataset(boxes, "val", [640, 1024], settings(**ORACLE))
    for size in ins.sizes:
        assert size.words == 15 and size.lost == 0.0 and size.below_min == 0.0
        assert size.ceiling["polygon"].scores["hmean"] > 0.98, size.ceiling
        assert size.ceiling["box"].scores["hmean"] > 0.9, size.ceiling
    assert ins.sizes[0].height["p50"] == pytest.approx(LARGE[0] * 640 / 600, rel=0.01)


def test_small_words_are_lost_and_the_ceiling_drops(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    write_split(root, "val", {f"v{i}.png": [LARGE, SMALL] * 3 for i in range(2)})
    ins = inspect_dataset(root, "val", [640, 1280], settings(**ORACLE))
    at_640, at_1280 = ins.sizes
    assert at_640.lost == pytest.approx(0.5) and at_640.below_min == pytest.approx(0.5)
    assert at_640.ceiling["polygon"].scores["recall"] == pytest.approx(0.5, abs=0.05)
    assert at_640.ceiling["polygon"].scores["hmean"] < 0.7
    assert at_1280.lost == 0.0 and at_1280.ceiling["polygon"].scores["hmean"] > 0.95  # 10 px at 1280
    assert ins.recommendation.sizes == (1280,) and ins.recommendation.option == "--image-sizes 1280"
    overlays = lost_overlays(ins, 5)
    assert [name for name, _ in overlays] == ["v0.png", "v1.png"]
    assert overlays[0][1].shape == (2 * 640, 2 * round(400 * 640 / 600), 3)


def test_recommendation() -> None:
    rec = recommend({640: 0.82, 800: 0.93, 1024: 0.985, 1280: 0.99}, margin=0.01)
    assert rec.sizes == (1024, 1280) and rec.best_size == 1280 and rec.option == "--image-sizes 1024,1280"
    assert "--image-sizes 1024,1280" in rec.text()
    assert recommend({640: 0.82, 800: 0.93, 1024: 0.985, 1280: 0.99}, margin=0.2).sizes == (640, 800, 1024, 1280)
    assert "does not narrow" in recommend({640: 0.99, 1024: 0.99}, margin=0.0).text()
    assert recommend({640: 0.99, 1024: 0.99}, margin=0.0).best_size == 640


def test_settings_take_ends_and_middle_of_the_sweep_ranges(tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"method": "random", "project": "P", "parameters": {
        "models.head.postprocess.thresh": {"min": 0.2, "max": 0.3},
        "models.head.postprocess.polygon_unclip_ratio": {"values": [1.5, 2.0]},
        "models.head.postprocess.max_candidates": {"min": 100, "max": 301},
        "collate_fn.min_text_size": {"value": 6},
        "collate_fn.shrink_ratio": {"min": 0.3, "max": 0.5},
    }}))
    s = load_settings(config)
    assert s.swept == {"thresh": [0.2, 0.25, 0.3], "polygon_unclip_ratio": [1.5, 2.0], "max_candidates": [100, 200, 301]}
    assert (s.min_text_size, s.shrink_ratio, s.project, s.modes) == (6.0, 0.4, "P", (True,))
    assert len(s.grid(True)) == 18 and len(s.grid(False)) == 9  # the unclip ratio of polygon mode does not act in box mode
    assert {c["box_unclip_ratio"] for c in s.grid(False)} == {s.base["box_unclip_ratio"]}


def test_settings_follow_the_values_a_sweep_fixes_in_its_command(tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"method": "random", "program": "ocr.train", "parameters": {
        "models.head.postprocess.thresh": {"min": 0.2, "max": 0.3}}, "command": [
        "${env}", "${interpreter}", "-m", "${program}", "experiment=origin_w44", "collate_fn.min_text_size=6",
        "${args_no_hyphens}"]}))
    s = load_settings(config)
    assert (s.base["box_thresh"], s.base["polygon_unclip_ratio"]) == (0.43243, 1.97707), "the experiment's values"
    assert (s.shrink_ratio, s.min_text_size) == (0.42858, 6.0)


def test_thresh_does_not_change_a_ground_truth_map(boxes: Path, tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({"parameters": {"models.head.postprocess.thresh": {"values": [0.05, 0.5, 0.95]}}}))
    ceiling = inspect_dataset(boxes, "val", [640], load_settings(config)).sizes[0].ceiling["polygon"]
    assert len({row["hmean"] for row in ceiling.settings}) == 1 and len(ceiling.settings) == 3


def test_worker_processes_give_the_same_scores(boxes: Path) -> None:
    words = load_split(boxes, "val")
    tasks = [("val", str(boxes / "images" / "val" / name), w) for name, w in words.items()]
    job = Job((640, 800), 0.4, 8.0, (asdict(DBPostProcessor(**ORACLE).params),))
    here, pooled = measure_all(tasks, job, 1), measure_all(tasks, job, 2)
    assert [r.name for r in pooled] == list(words)
    for a, b in zip(here, pooled):
        np.testing.assert_array_equal(a.scores, b.scores)


def test_ceiling_at_1024_equals_the_oracle_on_the_real_receipts() -> None:
    assert (RECEIPTS / "jsons" / "val.json").is_file(), (
        f"the real receipts are missing: expected {RECEIPTS}/images/val + jsons/val.json (the shared data set beside "
        "the repository); this test compares the ceiling with the oracle on them and cannot run without them"
    )
    oracle = score_dataset(oracle_samples(RECEIPTS, DBPostProcessor(**ORACLE), 1024), workers=1)
    ins = inspect_dataset(RECEIPTS, "val", [1024], settings(**ORACLE))
    assert ins.sizes[0].ceiling["polygon"].scores == oracle


def run_main(*args: str) -> int:
    return main([COMMAND, *args], PROG)


@pytest.mark.parametrize("case", ["missing folder", "broken json", "no labels", "bad size", "bad config"])
def test_bad_input_is_one_line_and_exit_2(case: str, boxes: Path, tmp_path: Path, capsys) -> None:
    args = {"missing folder": ["--data", str(tmp_path / "nowhere")],
            "broken json": ["--data", str(boxes)],
            "no labels": ["--data", str(boxes), "--split", "test"],
            "bad size": ["--data", str(boxes), "--image-sizes", "600"],
            "bad config": ["--data", str(boxes), "--config", str(tmp_path / "none.yaml")]}[case]
    if case == "broken json":
        (boxes / "jsons" / "val.json").write_text('{"images": {')
    if case == "no labels":
        (boxes / "images" / "test").mkdir()
        cv2.imwrite(str(boxes / "images" / "test" / "x.png"), np.zeros((8, 8, 3), np.uint8))
    assert run_main(*args, "--out", str(tmp_path / "out")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG} {COMMAND}: error: "), lines
    assert {"missing folder": "nowhere", "broken json": "not valid JSON", "no labels": "no labelled words",
            "bad size": "multiple of 32", "bad config": "none.yaml"}[case] in lines[0]


def test_check_image_sizes() -> None:
    assert check_image_sizes([1024, 640, 1024]) == (640, 1024)
    with pytest.raises(UserError, match="multiple of 32"):
        check_image_sizes([100])


def test_cli_prints_the_table_and_writes_json_png_and_a_wandb_run(boxes: Path, tmp_path: Path, capsys) -> None:
    out, figures = tmp_path / "out", tmp_path / "figures.json"
    assert run_main("--data", str(boxes), "--image-sizes", "640,1024", "--json", str(figures), "--out", str(out),
                    "--workers", "1") == 0
    printed = capsys.readouterr().out
    assert "polygon hmean" in printed and "recommendation" in printed and "W&B: logged" in printed
    data = json.loads(figures.read_text())
    assert [s["image_size"] for s in data["sizes"]] == [640, 1024]
    assert {"hmean", "recall", "precision"} <= set(data["sizes"][0]["ceiling"]["polygon"]["scores"])
    assert data["sizes"][0]["ceiling"]["box"]["settings"] and data["recommendation"]["option"].startswith("--image-sizes")
    assert data["counts"][0]["split"] == "train" and Path(data["png"]).is_file()
    assert list((tmp_path / "wandb").glob("offline-run-*"))
