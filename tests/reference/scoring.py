"""Mean CLEval scores computed the direct way: a list of samples through ``CLEvalScorer``, or a validation cache
through ``DBPostProcessor`` then CLEval."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ocr.metrics.cleval import Sample, mean_scores, prepare_ground_truth, score_detections
from ocr.metrics.scorer import CLEvalScorer
from ocr.postprocess.db_postprocess import DBPostProcessor
from ocr.training.val_cache import load_val_cache


def score_dataset(samples: Sequence[Sample], workers: int = 1) -> dict[str, float]:
    """Mean per-image CLEval scores of `(gt_polygons, gt_texts, det_polygons[, gt_ignore])` samples, handed
    to the scorer in up to 4 chunks per worker."""
    with CLEvalScorer(workers if len(samples) > 1 else 1) as scorer:
        bounds = np.linspace(0, len(samples), min(len(samples), 4 * scorer.workers) + 1).astype(int)
        for begin, end in zip(bounds[:-1], bounds[1:]):
            scorer.add(samples[begin:end])
        return scorer.result()


def direct_scores(run_dir: Path, params: dict[str, Any]) -> dict[str, float]:
    """Mean CLEval of `params` on a run's validation cache the way validation computes it."""
    post = DBPostProcessor(**params)
    return mean_scores(score_detections(prepare_ground_truth(im.gt_polygons, im.gt_texts),
                                        post(np.float32(im.prob), im.scale, im.orig_hw)[0]) for im in load_val_cache(run_dir))
