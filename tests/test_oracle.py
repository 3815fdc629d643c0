"""Ground-truth maps through post-processing and CLEval score near 1.0 on the real receipts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ocr.data.datamodule import ReceiptDataset
from ocr.postprocess.db_postprocess import DBPostProcessor
from ocr.targets.db_targets import make_db_targets
from reference.scoring import score_dataset


def oracle_samples(root: Path, postprocessor: DBPostProcessor, image_size: int = 1024) -> list:
    """(gt polygons, gt texts, polygons recovered from the GT probability map) for every val receipt."""
    samples = []
    for sample in ReceiptDataset(root, "val", image_size):
        h, w = sample["valid_hw"]
        prob = make_db_targets(sample["polygons"], image_size, image_size).prob_map[:h, :w]
        polygons, _ = postprocessor(np.ascontiguousarray(prob, dtype=np.float32), sample["scale"])
        samples.append((sample["gt_polygons"], sample["gt_texts"], polygons))
    return samples


def test_ground_truth_maps_score_near_one(receipts: Path) -> None:
    pp = DBPostProcessor(thresh=0.3, box_thresh=0.5, use_polygon=True, polygon_unclip_ratio=2.0)
    scores = score_dataset(oracle_samples(receipts, pp), workers=1)
    assert scores["hmean"] > 0.95, scores
    assert scores["recall"] > 0.95 and scores["precision"] > 0.95


def test_empty_predictions_score_zero(receipts: Path) -> None:
    samples = [(gt, texts, []) for gt, texts, _ in oracle_samples(receipts, DBPostProcessor(thresh=0.3))[:3]]
    assert score_dataset(samples, workers=1)["hmean"] == 0.0
