"""Training crops: targets of a crop equal the whole rescaled image's, cut words are ignored, crops repeat with the
seed, rotation moves words with their pixels, bad crop settings are one line, batches and caps follow the crop."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from ocr.config.checks import check_combination, check_config, check_parameters, train_size
from ocr.data.crops import CropSpec, crop_at, crop_spec, random_crop, rotate, window_origin
from ocr.data.datamodule import ReceiptDataModule, ReceiptDataset
from ocr.sweep.spec import check_against_training, check_sweep_config
from ocr.targets.collate import DBCollate
from ocr.targets.db_targets import FIELDS, make_db_targets
from ocr.training import batch_size as bs
from ocr.training.memory import Footprint
from ocr.utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def word_boxes(rng: np.random.Generator, n: int, h: int, w: int) -> list[np.ndarray]:
    """`n` words: axis-aligned boxes and slanted quadrilaterals, 8-30 px tall, anywhere in an (h, w) image."""
    words = []
    for _ in range(n):
        bw, bh = rng.uniform(20, 120), rng.uniform(8, 30)
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        quad = np.array([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]], np.float32)
        if rng.random() < 0.4:
            quad += rng.uniform(-3, 3, quad.shape).astype(np.float32)
        words.append(quad)
    return words


def targets(polygons: list[np.ndarray], h: int, w: int, ignore: list[bool]) -> np.ndarray:
    maps = make_db_targets(polygons, h, w, ignore=ignore)
    return np.stack([getattr(maps, f) for f in FIELDS])


@pytest.mark.parametrize("seed", range(6))
def test_a_crop_has_the_targets_of_the_whole_image_with_its_cut_words_ignored(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w, size = 400, 260, 128
    words = word_boxes(rng, 40, h, w)
    image = np.zeros((h, w, 3), np.uint8)
    origin = (int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40)))  # may reach past the image: padding
    crop = crop_at(image, words, size, origin)
    shift = np.array(origin, np.float32)
    source = [next(i for i, p in enumerate(words) if np.array_equal(p - shift, q)) for q in crop.polygons]
    flags = dict(zip(source, crop.ignore))
    whole = targets(words, h, w, [flags.get(i, False) for i in range(len(words))])
    x, y = origin
    vh, vw = crop.image.shape[:2]
    assert (vh, vw) == (min(size, h - y), min(size, w - x))
    got = targets(crop.polygons, size, size, crop.ignore)
    expected = whole[:, y:y + vh, x:x + vw]
    assert np.array_equal(got[[0, 3], :vh, :vw], expected[[0, 3]])  # binary maps: the same pixels
    np.testing.assert_allclose(got[2, :vh, :vw], expected[2], atol=1e-5)  # threshold map: float32 distances
    # cut words are masked out; cv2.fillPoly rounds the edges of a polygon reaching past the image one pixel apart
    near_cut = np.zeros((vh, vw), bool)
    for points in (q for q, cut in zip(crop.polygons, crop.ignore) if cut):
        (x0, y0), (x1, y1) = np.floor(points.min(axis=0)).astype(int) - 1, np.ceil(points.max(axis=0)).astype(int) + 1
        near_cut[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
        inner = np.zeros((vh, vw), np.uint8)
        cv2.fillPoly(inner, [np.round(points).astype(np.int32)], 1)
        inner = cv2.erode(inner, np.ones((3, 3), np.uint8)).astype(bool)
        assert not got[1, :vh, :vw][inner].any() and not expected[1][inner].any()
    assert np.array_equal(got[1, :vh, :vw][~near_cut], expected[1][~near_cut])
    assert not got[0, vh:].any() and not got[0, :, vw:].any() and got[1, vh:].all() and got[1, :, vw:].all()
    assert any(crop.ignore) or seed  # at least one seed cuts a word


def test_a_word_cut_by_the_edge_is_masked_out_and_one_at_the_image_border_is_kept() -> None:
    inside = np.array([[100, 10], [150, 10], [150, 30], [100, 30]], np.float32)
    cut = np.array([[40, 50], [110, 50], [110, 70], [40, 70]], np.float32)  # crosses the window's edge x = 72
    at_the_border = np.array([[150, 100], [205, 100], [205, 120], [150, 120]], np.float32)  # the image ends at 200
    crop = crop_at(np.zeros((300, 200, 3), np.uint8), [inside, cut, at_the_border], 128, (72, 0))
    assert crop.ignore == [False, True, False] and crop.image.shape[:2] == (128, 128)
    maps = make_db_targets(crop.polygons, 128, 128, ignore=crop.ignore)
    assert maps.prob_mask[52:68, 1:37].max() == 0 and maps.prob_map[52:68, 1:37].max() == 0  # the cut word
    assert maps.prob_mask[100:120, 80:128].min() == 1 and maps.prob_map[108:112, 86:126].min() == 1
    assert maps.prob_map[16:24, 36:70].min() == 1


def test_the_window_holds_the_anchor_and_cuts_no_word_where_it_can() -> None:
    spans = np.array([[0, 40], [50, 90], [100, 140], [150, 190], [200, 240]], np.float64)
    for draw in np.linspace(0, 0.99, 12):
        origin = window_origin(spans, 240, 95, anchor=120.0, draw=float(draw))
        assert origin <= 120 <= origin + 95
        edges = (origin, origin + 95)
        assert not any(a < e < b for a, b in spans for e in edges if 0 < e < 240)
    assert window_origin(spans, 240, 300, anchor=120.0, draw=0.5) == 0  # the image is narrower than the crop


def test_rotation_moves_the_words_with_their_pixels() -> None:
    image = np.zeros((300, 200, 3), np.uint8)
    word = np.array([[40, 100], [160, 100], [160, 130], [40, 130]], np.float32)
    cv2.fillPoly(image, [np.round(word).astype(np.int32)], (255, 255, 255))
    turned, (moved,) = rotate(image, [word], 17.0)
    drawn = np.zeros(turned.shape[:2], np.uint8)
    cv2.fillPoly(drawn, [np.round(moved).astype(np.int32)], 1)
    bright = turned[..., 0] > 127
    assert (bright & (drawn > 0)).sum() / (bright | (drawn > 0)).sum() > 0.95
    assert turned.shape[0] > 300 and turned.shape[1] > 200  # the canvas holds all of the rotated image


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    module = ReceiptDataModule(None, 256, 4, num_workers=0, synthetic={
        "dir": str(tmp_path_factory.mktemp("synthetic")), "n_train": 4, "n_val": 2, "n_test": 1, "size": [320, 480]})
    return module.dataset_root()


def test_the_same_seed_gives_the_same_crops(synthetic: Path) -> None:
    dataset = ReceiptDataset(synthetic, "train", 256, train=True, crop=CropSpec(96, (0.75, 1.25), 10.0, 3))
    assert len(dataset) == 12

    def draws(seed: int) -> list[tuple]:
        torch.manual_seed(seed)
        return [(s["image"], s["polygons"], s["ignore"]) for s in (dataset[i] for i in (0, 5, 5))]

    first, again, other = draws(0), draws(0), draws(1)
    for (a, pa, ia), (b, pb, ib) in zip(first, again):
        assert torch.equal(a, b) and ia == ib and all(np.array_equal(p, q) for p, q in zip(pa, pb))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))
    assert first[0][0].shape == (3, 96, 96) and not torch.equal(first[1][0], first[2][0])


def test_batches_are_crops_and_validation_stays_whole(synthetic: Path) -> None:
    module = ReceiptDataModule(str(synthetic), 256, 4, num_workers=0, collate_fn=DBCollate(), limit_train=3,
                               augment={"crop_size": 128, "scale": [0.5, 1.0], "crops_per_image": 2})
    module.setup("fit")
    assert len(module.datasets["train"]) == 6  # 3 images x 2 crops
    batch = next(iter(module.train_dataloader()))
    assert batch["images"].shape == (4, 3, 128, 128) and batch["prob_map"].shape == (4, 1, 128, 128)
    assert next(iter(module.val_dataloader()))["images"].shape[-2:] == (256, 256)


@pytest.mark.parametrize(("augment", "expected"), [
    ({"crop_size": 300}, "data.augment.crop_size=300 must be null (whole images) or a multiple of 32"),
    ({"crop_size": 640, "scale": [0.5, 1.0]}, "data.augment.crop_size=640 is larger than the rescaled receipt"),
    ({"crop_size": 320, "scale": [1.2, 0.8]}, "data.augment.scale=[1.2, 0.8] must be [min, max] with 0 < min <= max"),
    ({"crop_size": 320, "rotate": -5}, "data.augment.rotate=-5 must be in [0, 180]"),
    ({"crops_per_image": 4}, "act on training crops: set data.augment.crop_size too"),
])
def test_bad_crop_settings_are_one_line(augment: dict, expected: str) -> None:
    with pytest.raises(UserError) as err:
        check_combination({"image_size": 1024, **{f"data.augment.{k}": v for k, v in augment.items()}})
    assert expected in str(err.value) and "\n" not in str(err.value)
    overrides = [f"data.augment.{k}={v}".replace(" ", "") for k, v in augment.items()]
    with pytest.raises(UserError) as err:
        check_config(compose_train(["image_size=1024", *overrides]))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_the_augment_mapping_gives_the_crop_spec() -> None:
    assert crop_spec({"crop_size": None, "brightness_limit": 0.2}) is None
    spec = crop_spec({"crop_size": 320, "scale": [0.75, 1.25], "rotate": 5, "crops_per_image": 2, "p": 0.5})
    assert spec == CropSpec(320, (0.75, 1.25), 5.0, 2) and crop_spec({"crop_size": 640}) == CropSpec(640)


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("train", overrides=overrides)


def test_the_config_checks_and_the_sweep_checks_refuse_a_crop_larger_than_the_receipt() -> None:
    with pytest.raises(UserError, match="crop_size=1024 is larger than the rescaled receipt"):
        check_config(compose_train(["image_size=640", "data.augment.crop_size=1024"]))
    check_parameters({"image_size": {"values": [640, 1024]}, "data.augment.crop_size": {"values": [320, 640]},
                      "data.augment.scale": {"values": [[1.0, 1.0], [1.0, 1.5]]}}, "sweep.yaml")
    with pytest.raises(UserError, match=r"sweep.yaml: data.augment.crop_size=640 is larger .*\(image_size=640 x scale "
                                        r"min 0.75 = 480 px\)"):
        check_parameters({"image_size": {"values": [640, 1024]}, "data.augment.crop_size": {"values": [320, 640]},
                          "data.augment.scale": {"value": [0.75, 1.25]}}, "sweep.yaml")


def test_the_command_line_refuses_a_crop_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "ocr.train", "data.augment.crop_size=300"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "data.augment.crop_size=300 must be null (whole images) or a multiple of 32" in done.stderr


def test_batch_caps_follow_the_crop(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose_train(["image_size=1024", "data.augment.crop_size=320", "batch_size=64"])
    assert train_size(cfg) == 320 and train_size(compose_train(["image_size=1024"])) == 1024
    model = Footprint(params=10**7, fixed=0, per_pixel=2000.0)
    monkeypatch.setattr(bs, "footprint", lambda *args, **kwargs: model)
    monkeypatch.setattr(bs, "visible_gpu", lambda devices=None: (10.0, "Some GPU"))
    assert bs.initial_plan(cfg).used == bs.batch_cap(model, 320, 10 * 2**30) > bs.batch_cap(model, 1024, 10 * 2**30)
    table = bs.cap_table({"image_size": {"value": 1024}, "data.augment.crop_size": {"values": [256, 320]}}, None, None)
    assert "crop_size" in table.splitlines()[1] and len(table.splitlines()) == 4


def test_random_crops_hold_text_on_real_receipts(receipts: Path) -> None:
    dataset = ReceiptDataset(receipts, "train", 1024, train=True, crop=CropSpec(320, (0.75, 1.25), 5.0))
    torch.manual_seed(0)
    samples = [dataset[i] for i in range(0, 48, 4)]
    kept = [sum(not flag for flag in s["ignore"]) for s in samples]
    assert min(kept) >= 1 and sum(kept) > 5 * len(samples)
    assert sum(sum(s["ignore"]) for s in samples) < 0.5 * sum(len(s["ignore"]) for s in samples)
    batch = DBCollate()(samples[:4])
    assert batch["prob_map"].mean() > 0.02  # text covers a fair part of each crop


def test_the_crop_block_commented_in_sweep_config_is_a_valid_sweep() -> None:
    text = (REPO / "sweep_config.yaml").read_text(encoding="utf-8")
    block = [line.replace("  # ", "  ", 1) for line in text.splitlines()
             if re.match(r"  # (data\.augment\.(crop_size|scale|crops_per_image):|  values:)", line)]
    assert len(block) == 6
    config = yaml.safe_load(text)
    config["parameters"].update(yaml.safe_load("\n".join(block)))
    check_sweep_config(config, "sweep_config.yaml with crops")
    check_against_training(config, "sweep_config.yaml with crops")
