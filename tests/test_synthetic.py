"""Synthetic receipts: boxes sit tightly on the text, generation is deterministic, the layout reads back."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocr.data.annotations import load_split
from ocr.data.synthetic import generate_dataset, main, render_receipt


def box_masks(shape: tuple[int, int], quads: list[np.ndarray], grow: int = 0) -> list[np.ndarray]:
    masks = []
    for quad in quads:
        mask = np.zeros(shape, np.uint8)
        cv2.fillPoly(mask, [np.round(quad).astype(np.int32)], 1)
        masks.append(cv2.dilate(mask, np.ones((2 * grow + 1,) * 2, np.uint8)) if grow else mask)
    return masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxes_cover_the_text_and_only_the_text(seed: int) -> None:
    image, runs = render_receipt(np.random.default_rng(seed), (320, 480))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    h, w = grey.shape
    assert 320 <= h <= 480 and w < h and len(runs) >= 8
    quads = [q for q, _ in runs]
    assert all(q.shape == (4, 2) and (q >= 0).all() and (q[:, 0] <= w).all() and (q[:, 1] <= h).all() for q in quads)

    inside = box_masks(grey.shape, quads)
    union = np.clip(sum(inside), 0, 1)
    assert union.sum() == sum(m.sum() for m in inside), "boxes overlap"
    rings = box_masks(grey.shape, quads, grow=4)
    for (_, text), box, ring in zip(runs, inside, rings):
        ring = (ring == 1) & (union == 0)
        assert grey[box == 1].mean() < np.median(grey[ring]) - 25, text
        assert grey[box == 1].min() < 120, text

    hull = np.zeros_like(union)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(quads).astype(np.int32)), 1)
    dark = (grey < 120) & (hull == 1)
    covered = np.clip(sum(box_masks(grey.shape, quads, grow=2)), 0, 1)
    assert dark.sum() > 0 and (dark & (covered == 0)).sum() <= 0.01 * dark.sum()


def test_boxes_are_tight() -> None:
    """Each axis-aligned box (before the slight perspective) ends within ~3 px of its dark pixels."""
    image, runs = render_receipt(np.random.default_rng(5), (400, 400))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    for (quad, text), grown in zip(runs, box_masks(grey.shape, [q for q, _ in runs], grow=3)):
        ys, xs = np.nonzero((grey < 140) & (grown == 1))
        ink = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        box = np.array([*quad.min(axis=0), *quad.max(axis=0)])
        assert np.abs(ink - box).max() <= 4, (text, ink, box)


def test_rendering_is_deterministic() -> None:
    a, runs_a = render_receipt(np.random.default_rng(7))
    b, runs_b = render_receipt(np.random.default_rng(7))
    c, _ = render_receipt(np.random.default_rng(8))
    assert np.array_equal(a, b) and [t for _, t in runs_a] == [t for _, t in runs_b]
    assert all(np.array_equal(p, q) for (p, _), (q, _) in zip(runs_a, runs_b))
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_generated_dataset_reads_back(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "ds", n_train=3, n_val=2, n_test=1, seed=4, size=(128, 160), progress=False)
    for split, count in (("train", 3), ("val", 2), ("test", 1)):
        words = load_split(root, split)
        assert len(words) == count
        raw = json.loads((root / "jsons" / f"{split}.json").read_text())["images"]
        for name, kept in words.items():
            assert len(kept) == len(raw[name]["words"]) > 0, name
            assert all(w.text and w.points.shape == (4, 2) for w in kept)
    again = generate_dataset(tmp_path / "again", n_train=1, n_val=0, n_test=0, seed=4, size=(128, 160), progress=False)
    assert (again / "images/train/train_00000.jpg").read_bytes() == (root / "images/train/train_00000.jpg").read_bytes()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main(
        [
            "--out",
            str(tmp_path / "cli"),
            "--train",
            "1",
            "--val",
            "1",
            "--test",
            "0",
            "--seed",
            "2",
            "--size",
            "96",
            "128",
        ]
    )
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
    assert len(list((tmp_path / "cli/images/train").glob("*.jpg"))) == 1
    assert json.loads((tmp_path / "cli/jsons/test.json").read_text()) == {"images": {}}
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "bad"), "--train", "-1"])
