"""ocr.data: dataset root resolution, annotation validation, transforms (EXIF, resize), dataset and datamodule."""

from __future__ import annotations

import json
import logging
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from ocr.config.checks import AUGMENT_KEYS, check_value
from ocr.data.annotations import load_split
from ocr.data.crops import CROP_KEYS
from ocr.data.datamodule import JITTER_KEYS, ReceiptDataModule, ReceiptDataset
from ocr.data.paths import dataset_root, resolve_dataset_root
from ocr.data.transforms import (
    EXIF_ORIENTATION,
    ImageDecodeError,
    brightness_contrast,
    decode_bgr,
    load_resized,
    orient_points,
    sample_brightness_contrast,
    to_tensor,
)
from ocr.utils.errors import UserError

QUAD = [[10, 10], [50, 10], [50, 30], [10, 30]]


# ---------------------------------------------------------------- test data


def write_image(path: Path, width: int = 80, height: int = 60, exif_orientation: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.full((height, width, 3), 230, np.uint8))
    if exif_orientation is None:
        image.save(path, quality=95)
    else:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = exif_orientation
        image.save(path, quality=95, exif=exif.tobytes())


def make_dataset(root: Path, split: str, images: dict, files: list[str] | None = None) -> Path:
    """A tiny dataset: `images` is written as the split's JSON; `files` (default: the JSON's names) as images."""
    for name in images if files is None else files:
        write_image(root / "images" / split / name)
    (root / "jsons").mkdir(parents=True, exist_ok=True)
    (root / "jsons" / f"{split}.json").write_text(json.dumps({"images": images}))
    return root


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# ---------------------------------------------------------------- dataset root


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DATASET_BASE_PATH and an empty working directory (no .env)."""
    monkeypatch.delenv("DATASET_BASE_PATH", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_root_none_when_nothing_configured(clean_env: Path) -> None:
    assert resolve_dataset_root(None) is None
    assert resolve_dataset_root("") is None


def test_root_from_env_with_tilde_and_trailing_slash(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = clean_env / "home"
    (home / "data").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DATASET_BASE_PATH", "~/data/")
    assert resolve_dataset_root(None) == home / "data"


def test_root_from_dotenv_and_config_wins(clean_env: Path) -> None:
    (clean_env / "from_dotenv").mkdir()
    (clean_env / "configured").mkdir()
    (clean_env / ".env").write_text(f"DATASET_BASE_PATH={clean_env / 'from_dotenv'}/\n")
    assert resolve_dataset_root(None) == clean_env / "from_dotenv"
    assert resolve_dataset_root(str(clean_env / "configured")) == clean_env / "configured"


def test_missing_root_is_a_user_error(clean_env: Path) -> None:
    (clean_env / ".env").write_text("DATASET_BASE_PATH=/no/such/folder\n")
    with pytest.raises(UserError, match=r"'/no/such/folder' \(from DATASET_BASE_PATH in .*\.env\) does not exist"):
        resolve_dataset_root(None)
    with pytest.raises(UserError, match="from dataset_base_path"):
        resolve_dataset_root("/no/such/other")


def test_synthetic_dataset_is_generated_once_even_when_racing(clean_env: Path, tmp_path: Path) -> None:
    assert dataset_root(tmp_path, {"dir": str(tmp_path / "unused")}) == tmp_path
    params = dict(dir=str(tmp_path / "syn"), n_train=2, n_val=1, n_test=1, seed=3, size=[96, 128])
    with ThreadPoolExecutor(2) as pool:
        roots = list(pool.map(lambda _: dataset_root(None, params), range(2)))
    assert roots[0] == roots[1]
    assert sorted(p.name for p in (tmp_path / "syn").iterdir() if not p.name.endswith(".lock")) == [roots[0].name]
    stamp = (roots[0] / "jsons" / "train.json").stat().st_mtime_ns
    assert dataset_root("", params) == roots[0]
    assert (roots[0] / "jsons" / "train.json").stat().st_mtime_ns == stamp
    assert dataset_root(None, {**params, "seed": 4}) != roots[0]
    assert not (tmp_path / "unused").exists()
    assert len(load_split(roots[0], "train")) == 2


# ---------------------------------------------------------------- annotation validation


def test_missing_split_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"image folder .*images/val not found"):
        load_split(tmp_path, "val")


def test_missing_json_stops_train_but_not_test(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "train" / "a.jpg")
    write_image(tmp_path / "images" / "test" / "b.jpg")
    with pytest.raises(UserError, match=r"annotation file .*train\.json not found"):
        load_split(tmp_path, "train")
    assert load_split(tmp_path, "test") == {"b.jpg": []}


def test_unparseable_json(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "val" / "a.jpg")
    (tmp_path / "jsons").mkdir()
    (tmp_path / "jsons" / "val.json").write_text('{"images": {"a.jpg": {"words": }}}')
    with pytest.raises(UserError, match=r"val\.json is not valid JSON \(.* line 1, column \d+\)"):
        load_split(tmp_path, "val")


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ([1, 2], 'the top level key "images" must be an object of image names, found list'),
        ({"images": [1]}, 'the top level key "images" must be an object of image names, found list'),
        ({"images": None}, 'the top level key "images" must be an object of image names, found NoneType'),
        ({"imgs": {}}, r'the top level key "images" is missing \(found keys: imgs\)'),
        ({}, r'the top level key "images" is missing \(the object is empty\)'),
        ({"images": {"a.jpg": [1]}}, r"images\['a.jpg'\] must be"),
        ({"images": {"a.jpg": {"words": [1]}}}, r"images\['a.jpg'\]\[\"words\"\] must be"),
    ],
)
def test_wrong_json_shape(tmp_path: Path, content: object, where: str) -> None:
    write_image(tmp_path / "images" / "train" / "a.jpg")
    (tmp_path / "jsons").mkdir()
    (tmp_path / "jsons" / "train.json").write_text(json.dumps(content))
    with pytest.raises(UserError, match=where):
        load_split(tmp_path, "train")


def test_bad_polygons_skipped_and_counted_in_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    words = {
        "0001": {"points": QUAD, "transcription": "ok"},
        "0002": {"points": [[1, 1], [5, 5]]},
        "0003": {"points": [[1, 1], [float("nan"), 5], [5, 9]]},
        "0004": {"points": [[100, 100], [120, 100], [120, 110]]},  # image is 80 x 60
        "0005": {"points": [[70, 50], [90, 50], [90, 70], [70, 70]], "transcription": "clipped"},
        "0006": {"points": [[1, 2, 3]]},
        "0007": {"transcription": "no points"},
        "0008": {"points": [[1, 1], [2, 2], [3, 3]]},
        "0009": {"points": [[1.5, 2.5], [40.25, 2.5], [40.25, 20.0]]},
    }
    make_dataset(tmp_path, "train", {"a.jpg": {"words": words}})
    with caplog.at_level(logging.WARNING):
        loaded = load_split(tmp_path, "train")
    kept = loaded["a.jpg"]
    assert [w.key for w in kept] == ["0001", "0005", "0009"]
    assert [w.text for w in kept] == ["ok", "clipped", None]
    assert all(w.points.dtype == np.float32 and w.points.shape[1] == 2 for w in kept)
    np.testing.assert_array_equal(kept[1].points, [[70, 50], [80, 50], [80, 60], [70, 60]])
    messages = warnings_of(caplog)
    assert len(messages) == 2, messages
    skipped = messages[0]
    assert "train.json: skipped 6 of 9 polygons" in skipped
    for reason in ("2 malformed", "< 3 points", "NaN/inf", "entirely outside the image", "zero area"):
        assert reason in skipped
    assert "first: image 'a.jpg' word '0002'" in skipped and "fix their points" in skipped
    assert "clipped 1 polygons" in messages[1]


def test_missing_and_unlisted_images(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    listed = {"a.jpg": {"words": {"0001": {"points": QUAD}}}, "gone.jpg": {"words": {}}, "none.jpg": {"words": None}}
    make_dataset(tmp_path, "train", listed, files=["a.jpg", "none.jpg", "extra.jpg"])
    make_dataset(tmp_path, "test", {"t.jpg": {"words": None}}, files=["t.jpg", "u.jpg"])
    with caplog.at_level(logging.WARNING):
        train = load_split(tmp_path, "train")
        test = load_split(tmp_path, "test")
    assert list(train) == ["a.jpg", "none.jpg"] and train["none.jpg"] == []
    assert test == {"t.jpg": [], "u.jpg": []}
    messages = warnings_of(caplog)
    assert len(messages) == 2, messages
    assert "lists 1 images missing from" in messages[0] and "gone.jpg" in messages[0]
    assert "has 1 images not in" in messages[1] and "extra.jpg" in messages[1]


def test_corrupt_image_gives_a_blank_sample_and_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_dataset(
        tmp_path, "val", {"bad.jpg": {"words": {"0001": {"points": QUAD}}}, "ok.jpg": {"words": None}}, files=["ok.jpg"]
    )
    (tmp_path / "images" / "val" / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg" * 10)
    dataset = ReceiptDataset(tmp_path, "val", 64)
    with caplog.at_level(logging.WARNING):
        first, again = dataset[0], dataset[0]
    assert first["image_name"] == "bad.jpg" and first["corrupt"] and again["corrupt"]
    assert first["image"].shape == (3, 64, 64) and first["polygons"] == [] and first["gt_polygons"] == []
    messages = warnings_of(caplog)
    assert len(messages) == 1 and "bad.jpg cannot be decoded" in messages[0]
    assert not dataset[1]["corrupt"]
    with pytest.raises(ImageDecodeError, match="OpenCV could not decode it"):
        decode_bgr(tmp_path / "images" / "val" / "bad.jpg")


def test_a_decoder_warning_names_the_file_once_instead_of_every_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    """A truncated JPEG decodes with libjpeg's "Premature end of JPEG file" (no file name, on every read)."""
    make_dataset(tmp_path, "val", {"cut.jpg": {"words": None}, "ok.jpg": {"words": None}})
    path = tmp_path / "images" / "val" / "cut.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    dataset = ReceiptDataset(tmp_path, "val", 64)
    with caplog.at_level(logging.WARNING):
        samples = [dataset[0] for _ in range(3)] + [dataset[1]]
    assert not any(s["corrupt"] for s in samples)
    assert warnings_of(caplog) == [f"{path}: Premature end of JPEG file (from the image decoder); decoded anyway"]
    assert "Premature end" not in capfd.readouterr().err

    loader = torch.utils.data.DataLoader(dataset, num_workers=1, collate_fn=names_collate)
    assert [name for batch in loader for name in batch] == ["cut.jpg", "ok.jpg"]  # a worker process decodes
    assert "Premature end" not in capfd.readouterr().err


# ---------------------------------------------------------------- transforms


def marker_image(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey RGB image with a red block near the top-left; returns it and the block centre (x, y)."""
    image = np.full((height, width, 3), 128, np.uint8)
    x0, y0, side = width // 8, height // 6, max(8, min(width, height) // 5)
    image[y0 : y0 + side, x0 : x0 + side] = (255, 0, 0)
    return image, np.array([[x0 + side / 2, y0 + side / 2]], np.float32)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(("stored", "image_size"), [((96, 64), 96), ((900, 600), 128)])
def test_exif_orientation_moves_image_and_points_together(
    tmp_path: Path, orientation: int, stored: tuple[int, int], image_size: int
) -> None:
    """JPEG with an EXIF tag: pixels match ImageOps.exif_transpose, and the mapped point stays on the marker.

    The second case is big enough for reduced (1/4) JPEG decoding."""
    width, height = stored
    image, centre = marker_image(width, height)
    path = tmp_path / "oriented.jpg"
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(image).save(path, quality=95, exif=exif.tobytes())

    with Image.open(path) as im:
        reference = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    loaded = load_resized(path, image_size)
    assert loaded.orig_hw == reference.shape[:2]
    if image_size == max(stored):
        assert np.abs(loaded.image.astype(int) - reference).mean() < 2.0

    point = orient_points(centre, orientation, stored)[0]
    for pixels, (x, y) in ((reference, point), (loaded.image, point * loaded.scale)):
        r, g, b = pixels[int(y), int(x)]
        assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("reduced", [True, False])
@pytest.mark.parametrize(("stored", "image_size"), [((2000, 1203), 256), ((61, 100), 256), ((300, 300), 256)])
def test_points_stay_on_their_pixels_after_resize(
    tmp_path: Path, reduced: bool, stored: tuple[int, int], image_size: int
) -> None:
    """A black rectangle's box, scaled by `scale`, matches the black region of the resized image (< 1.5 px)."""
    width, height = stored
    image = np.full((height, width, 3), 255, np.uint8)
    box = np.array([[0.55 * width, 0.3 * height], [0.9 * width, 0.7 * height]]).round().astype(int)
    image[box[0, 1] : box[1, 1], box[0, 0] : box[1, 0]] = 0
    path = tmp_path / "box.jpg"
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 100])

    loaded = load_resized(path, image_size, reduced_decode=reduced)
    assert max(loaded.image.shape[:2]) == image_size
    assert loaded.image.shape[:2] == (round(height * loaded.scale), round(width * loaded.scale))
    ys, xs = np.nonzero(loaded.image[..., 0] < 128)
    found = np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], float)
    np.testing.assert_allclose(found, box * loaded.scale, atol=1.5)


def test_brightness_contrast() -> None:
    image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(brightness_contrast(image, 1.0, 0.0), image)
    expected = np.clip(image.astype(np.float32) * 0.5 + 25.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(brightness_contrast(image, 0.5, 0.1), expected)
    assert brightness_contrast(image, 2.0, 0.0).max() == 255 and brightness_contrast(image, 1.0, -0.2).min() == 0
    assert sample_brightness_contrast(0.2, 0.3, p=0.0) is None
    torch.manual_seed(0)
    draws = [sample_brightness_contrast(0.2, 0.3, p=1.0) for _ in range(200)]
    alphas, betas = np.array(draws).T
    assert 0.7 <= alphas.min() < 0.8 and 1.2 < alphas.max() <= 1.3
    assert -0.2 <= betas.min() < -0.15 and 0.15 < betas.max() <= 0.2


def test_to_tensor_is_imagenet_normalised() -> None:
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 255
    tensor = to_tensor(image)
    assert tensor.shape == (3, 4, 5) and tensor.dtype == torch.float32
    assert tensor[0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229, abs=1e-5)
    assert tensor[2, 0, 0].item() == pytest.approx(-0.406 / 0.225, abs=1e-5)


# ---------------------------------------------------------------- dataset on the real receipts


@pytest.mark.parametrize("split", ["train", "val"])
def test_real_receipts_all_load_and_round_trip(receipts: Path, split: str) -> None:
    annotations = json.loads((receipts / "jsons" / f"{split}.json").read_text())["images"]
    dataset = ReceiptDataset(receipts, split, 256)
    assert len(dataset) == len(annotations)
    for sample in dataset:
        name = sample["image_name"]
        assert not sample["corrupt"], name
        assert sample["image"].shape == (3, 256, 256) and torch.isfinite(sample["image"]).all()
        h, w = sample["valid_hw"]
        assert max(h, w) == 256
        assert (h, w) == (round(sample["orig_hw"][0] * sample["scale"]), round(sample["orig_hw"][1] * sample["scale"]))
        assert len(sample["polygons"]) == len(annotations[name]["words"]) == len(sample["gt_texts"])
        for polygon, gt, word in zip(sample["polygons"], sample["gt_polygons"], annotations[name]["words"].values()):
            np.testing.assert_allclose(gt, word["points"])
            np.testing.assert_allclose(polygon / sample["scale"], gt, rtol=1e-5, atol=1e-2)
            assert (polygon >= 0).all() and (polygon[:, 0] <= w + 1e-3).all() and (polygon[:, 1] <= h + 1e-3).all()


def test_text_pixels_stay_under_real_boxes(receipts: Path) -> None:
    """At 256 px the real boxes still sit on ink: darker inside than in the padding-free rest of the page."""
    dataset = ReceiptDataset(receipts, "val", 256)
    for sample in (dataset[i] for i in range(0, len(dataset), 4)):
        h, w = sample["valid_hw"]
        grey = sample["image"][:, :h, :w].mean(0).numpy()
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(p).astype(np.int32) for p in sample["polygons"]], 1)
        assert grey[mask == 1].mean() < grey[mask == 0].mean() - 0.1, sample["image_name"]


def test_train_augmentation_changes_only_the_image(receipts: Path) -> None:
    plain = ReceiptDataset(receipts, "val", 128)
    jittered = ReceiptDataset(
        receipts, "val", 128, train=True, brightness_limit=0.3, contrast_limit=0.3, brightness_contrast_p=1.0
    )
    torch.manual_seed(0)
    a, b = plain[0], jittered[0]
    h, w = a["valid_hw"]
    assert not torch.allclose(a["image"][:, :h, :w], b["image"][:, :h, :w])
    assert torch.equal(a["image"][:, h:, :], b["image"][:, h:, :]) and torch.equal(
        a["image"][:, :, w:], b["image"][:, :, w:]
    )
    for p, q in zip(a["polygons"], b["polygons"]):
        np.testing.assert_array_equal(p, q)


def test_big_jpeg_reduced_decoding_matches_full_decoding(receipts: Path) -> None:
    """The 4961 x 7016 receipts decoded at 1/8 give the same geometry and nearly the same pixels."""
    path = receipts / "images" / "val" / "430.jpg"
    fast, full = load_resized(path, 512), load_resized(path, 512, reduced_decode=False)
    assert fast.scale == full.scale and fast.image.shape == full.image.shape
    assert np.abs(fast.image.astype(int) - full.image.astype(int)).mean() < 3.0


# ---------------------------------------------------------------- datamodule


def names_collate(samples: list[dict]) -> list[str]:
    return [s["image_name"] for s in samples]


def test_datamodule_on_synthetic_data(clean_env: Path) -> None:
    dm = ReceiptDataModule(
        None,
        image_size=64,
        batch_size=4,
        num_workers=0,
        collate_fn=names_collate,
        synthetic={"dir": str(clean_env / "syn"), "n_train": 5, "n_val": 3, "n_test": 2, "seed": 1, "size": [64, 96]},
        augment={"brightness_limit": 0.1, "contrast_limit": 0.1, "p": 1.0},
        limit_val=2,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert [len(b) for b in dm.train_dataloader()] == [4, 1]
    dm.batch_size = 2
    assert [len(b) for b in dm.train_dataloader()] == [2, 2, 1]
    assert list(dm.val_dataloader()) == [["val_00000.jpg", "val_00001.jpg"]]
    train_set = dm.datasets["train"]
    assert train_set.train and train_set.brightness_contrast_p == 1.0 and not dm.datasets["val"].dataset.train

    dm.setup("predict")
    assert list(dm.predict_dataloader()) == [["test_00000.jpg", "test_00001.jpg"]]
    dm.collate_fn = ReceiptDataModule(None, 64, 2).collate_fn
    batch = next(iter(dm.test_dataloader()))
    assert batch["images"].shape == (2, 3, 64, 64) and batch["meta"][0]["image_name"] == "test_00000.jpg"
    assert "image" not in batch["meta"][0]


def test_datamodule_loader_settings(clean_env: Path) -> None:
    (clean_env / "data").mkdir()
    make_dataset(clean_env / "data", "val", {"a.jpg": {"words": None}})
    dm = ReceiptDataModule(str(clean_env / "data"), image_size=64, batch_size=1, num_workers=1, val_batch_size=3)
    dm.setup("validate")
    loader = dm.val_dataloader()
    assert loader.batch_size == 3 and loader.persistent_workers and loader.num_workers == 1
    assert loader.pin_memory == torch.cuda.is_available()
    # workers never fork the training process (it holds threads): a forkserver with the data modules imported
    assert loader.multiprocessing_context.get_start_method() in ("forkserver", "spawn")
    batch = next(iter(loader))  # a worker started that way loads and collates a batch
    assert batch["images"].shape == (1, 3, 64, 64) and batch["meta"][0]["image_name"] == "a.jpg"


def test_datamodule_config_mistakes(clean_env: Path) -> None:
    with pytest.raises(UserError, match=r"data.augment has unknown keys \['brightness'\]; allowed: \['brightness_"):
        check_value("data.augment", {"brightness": 0.2})
    with pytest.raises(UserError, match=r"data.synthetic has unknown keys \['n_tran'\]; allowed: \['dir'"):
        check_value("data.synthetic", {"n_tran": 5})
    assert set(AUGMENT_KEYS) == {*JITTER_KEYS, *CROP_KEYS}  # what the config allows is what the datamodule reads
    with pytest.raises(UserError, match="does not exist"):
        ReceiptDataModule(str(clean_env / "missing"), 64, 2)
    assert math.isclose(ReceiptDataModule(None, 64, 2, augment={"p": 0.25}).jitter["brightness_contrast_p"], 0.25)


def test_an_empty_split_is_one_clear_line(clean_env: Path) -> None:
    root = clean_env / "data"
    make_dataset(root, "train", {"a.jpg": {"words": None}})
    make_dataset(root, "val", {})
    (root / "images" / "val").mkdir(parents=True)
    with pytest.raises(UserError, match=r"the val split of .* has no images: training needs some in jsons/val.json"):
        ReceiptDataModule(str(root), image_size=64, batch_size=1, num_workers=0).setup("fit")
    make_dataset(root, "val", {"b.jpg": {"words": None}})
    ReceiptDataModule(str(root), image_size=64, batch_size=1, num_workers=0).setup("fit")


@pytest.mark.parametrize("split", ["train", "val"])
@pytest.mark.parametrize("value", [0, -1, 2.5, "abc", True])
def test_a_limit_that_is_not_a_positive_integer_is_one_clear_line(split: str, value: object) -> None:
    message = f"data.limit_{split}={value!r} must be null (every image) or an integer >= 1 (the first N images by name)"
    with pytest.raises(UserError, match=re.escape(message)) as err:
        check_value(f"data.limit_{split}", value)
    assert "\n" not in str(err.value)
    check_value(f"data.limit_{split}", None)
