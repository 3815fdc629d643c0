"""Batch collation with DB training targets (Hydra ``collate_fn``: ``ocr.targets.collate.DBCollate``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ocr.targets.db_targets import FIELDS, DBTargets, make_db_targets, warm_up


class DBCollate:
    """Stack images (B, 3, S, S) and build the DB targets (B, 1, S, S) float32; ``meta``: per sample, every key
    but ``image``. A sample without ``polygons`` (test split) gets all-zero maps."""

    def __init__(
        self, shrink_ratio: float = 0.4, thresh_min: float = 0.3, thresh_max: float = 0.7, min_text_size: float = 8
    ) -> None:
        self.params = (shrink_ratio, thresh_min, thresh_max, min_text_size)
        warm_up()  # in the main process, before the DataLoader forks its workers

    def __call__(self, batch: list[dict]) -> dict[str, Any]:
        images = torch.stack([sample["image"] for sample in batch])
        height, width = images.shape[-2:]
        block = np.empty((len(FIELDS), len(batch), 1, height, width), dtype=np.float32)
        for i, sample in enumerate(batch):
            out = DBTargets(*block[:, i, 0])
            polygons = sample.get("polygons")
            if polygons is None:
                block[:, i].fill(0)
                continue
            make_db_targets(polygons, height, width, *self.params, ignore=sample.get("ignore"), out=out)
        maps = torch.from_numpy(block)
        return {
            "images": images,
            **{key: maps[k] for k, key in enumerate(FIELDS)},
            "meta": [{key: value for key, value in sample.items() if key != "image"} for sample in batch],
        }
